"""ORDER BY the time column LIMIT k reads sort keys first and the wide columns only at the top rows; same answer as DuckDB."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.query.execution.scan import ScanStats, SegmentReader
from planner.logical import TableSource
from storage.catalog import Catalog
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.schema import conform, unify
from storage.segment import write_segment
from storage.snapshot import load_snapshot
from tests.engine.query.local_runs import assert_runs_like
from tests.event_data import duckdb_over

BASE = 1_793_491_200_000_000


def _rows(rng: np.random.Generator, first_id: int, count: int, start: int, spread: int, extra: bool) -> pa.Table:
    columns = {
        "ts": pa.array(BASE + start + rng.integers(0, spread, count) // 1000 * 1000, pa.timestamp("us", "UTC")),
        "id": pa.array(np.arange(first_id, first_id + count)),
        "kind": pa.array(rng.choice(["", "a", "b"], count).tolist()),
        "payload": pa.array([f"row-{first_id + i}-" * 6 for i in range(count)]),
        "n": pa.array(rng.integers(-50, 50, count)),
    }
    if extra:  # a column added later: older segments lack it
        columns["late"] = pa.array(rng.integers(0, 9, count)).cast(pa.int32())
    return pa.table(columns)


def _load(store: ObjectStore) -> tuple[TableSource, pa.Table]:
    """Two partitions of segments with several row groups each: overlapping time ranges, ties on the time,
    one segment sorted by another key (as a monitor's history is), one without the newest column."""
    meta = Catalog(store).create_table("default", "hits", time_column="ts", partitions=2)
    rng = np.random.default_rng(3)
    logs = {p: PartitionLog(store, meta.path, p) for p in range(2)}
    states = {p: log.load() for p, log in logs.items()}
    tables = []
    layout = [  # partition, rows, start, spread (micros), sort key, has the late column
        (0, 400, 0, 60_000_000, meta.full_sort_key, False),
        (0, 300, 30_000_000, 60_000_000, meta.full_sort_key, True),
        (1, 350, 0, 5_000_000, ("kind", "id"), True),  # not sorted by time
        (1, 250, 90_000_000, 60_000_000, meta.full_sort_key, True),
    ]
    first_id = 0
    for partition, count, start, spread, sort_key, extra in layout:
        table = _rows(rng, first_id, count, start, spread, extra)
        first_id += count
        entry = write_segment(store, meta.path, table, partition=partition, time_column="ts", sort_key=sort_key,
                              row_group_size=64)
        states[partition] = logs[partition].commit(states[partition], epoch=None, added=[entry])
        tables.append(table)
    schema = unify(t.schema for t in tables)
    snapshot = load_snapshot(store, meta)
    return TableSource(meta, snapshot.schema, snapshot.segments), pa.concat_tables([conform(t, schema) for t in tables])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    store = ObjectStore(str(tmp_path_factory.mktemp("time-topk") / "wh"))
    source, rows = _load(store)
    oracle = duckdb_over(hits=rows)
    return store, source, oracle


@pytest.mark.parametrize("query", [
    "SELECT * FROM hits ORDER BY ts, id LIMIT 7",
    "SELECT * FROM hits ORDER BY ts DESC, id LIMIT 5",
    "SELECT id, payload, late FROM hits WHERE kind <> '' ORDER BY ts, id LIMIT 9",
    "SELECT payload, n + 1 AS m, ts FROM hits WHERE n > 10 ORDER BY ts DESC, id DESC LIMIT 6",
    "SELECT id, kind FROM hits ORDER BY ts, kind, id LIMIT 4 OFFSET 30",
    "SELECT id FROM hits ORDER BY ts, id LIMIT 1000",
    "SELECT id, ts FROM hits WHERE n > 1000 ORDER BY ts, id LIMIT 3",
    "SELECT id, ts FROM hits ORDER BY ts NULLS FIRST, id LIMIT 3",
])
def test_time_ordered_topk_matches_duckdb(loaded, query):
    store, source, oracle = loaded
    assert_runs_like(query, store, source, oracle.sql(query).to_arrow_table(), fragments=(1, 2))


def test_rows_at_positions_decode_only_the_prefix_of_their_row_group(loaded):
    store, source, _ = loaded
    segment = next(s for s in source.segments if s.rows == 400)
    reader = SegmentReader(store)
    stats = ScanStats()
    got = reader.read_positions("default/hits", source.schema, segment, ["id", "payload", "late"],
                                pa.array([70, 3, 66]), stats)
    whole = reader.read("default/hits", source.schema, [segment], ["id", "payload", "late"])
    assert got.equals(whole.take(pa.array([70, 3, 66])))
    assert got.column("late").null_count == 3  # the segment predates the column
    assert stats.rows_read == 4 + 7  # rows 0-3 of the first group, rows 64-70 of the second
    groups = reader.row_groups("default/hits", segment, "ts")
    assert [g.rows for g in groups] == [64] * 6 + [16] and groups[1].first == 64
    times = pc.min_max(whole.column("ts") if "ts" in whole.column_names else reader.read(
        "default/hits", source.schema, [segment], ["ts"]).column("ts"))
    assert groups[0].min_time == times["min"].value and groups[-1].max_time == times["max"].value


def test_a_wide_time_ordered_topk_runs_in_the_driver(db):
    db.create_table("wide", time_column="ts", partitions=1)
    rng = np.random.default_rng(5)
    db.ingest("wide", _rows(rng, 0, 3000, 0, 600_000_000, True), batch_id="one")
    query = "SELECT * FROM wide ORDER BY ts, id LIMIT 5"
    db.queries.local_bytes = 0
    on_workers = db.sql(query)
    db.queries.local_bytes = db.table_stats("wide").bytes // 2  # over the 2 key columns' share of 6, under all 6
    assert "worker driver" in db.explain(query, analyze=True)
    assert db.sql(query).equals(on_workers)
    assert "worker driver" not in db.explain("SELECT * FROM wide ORDER BY n LIMIT 5", analyze=True)
