"""ORDER BY a column ... LIMIT k read best segments first, pruned by statistics, with DuckDB's answers."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_fragment, run_locally
from planner.fragments import Fragment, stage_plan, stage_scan
from planner.logical import Gather, TableSource
from planner.planning import plan_query
from storage.catalog import Catalog
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.schema import conform, unify
from storage.segment import write_segment
from storage.snapshot import load_snapshot
from tests.engine.query.local_runs import assert_runs_like
from tests.event_data import duckdb_over, load_events
from tests.result_compare import assert_same

EVENT_QUERIES = [
    "SELECT timestamp, host, latency_ms FROM events ORDER BY latency_ms DESC, timestamp LIMIT 7",
    "SELECT timestamp, host, latency_ms FROM events ORDER BY latency_ms, timestamp LIMIT 5 OFFSET 3",
    "SELECT timestamp, bytes FROM events WHERE service = 'api' ORDER BY bytes DESC, timestamp LIMIT 12",
    'SELECT timestamp, "http.status_code" FROM events ORDER BY "http.status_code" DESC, timestamp, host LIMIT 30',
    "SELECT timestamp, latency_ms FROM events ORDER BY latency_ms DESC NULLS FIRST, timestamp LIMIT 5",
    "SELECT timestamp, url, bytes FROM events WHERE bytes < 200 ORDER BY bytes, timestamp LIMIT 400",
    "SELECT timestamp, latency_ms FROM events WHERE latency_ms > 1e9 ORDER BY latency_ms DESC LIMIT 3",
]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """The shared event day (latency widens from integer to float, NULLs everywhere) with DuckDB over its rows."""
    store = ObjectStore(str(tmp_path_factory.mktemp("topk") / "wh"))
    meta, rows = load_events(store, hours=8, partitions=2, rows_per_segment=120)
    oracle = duckdb_over(events=rows)
    return store, meta, oracle


@pytest.mark.parametrize("query", EVENT_QUERIES)
def test_topk_over_many_segments_matches_duckdb(events, query):
    store, meta, oracle = events
    snapshot = load_snapshot(store, meta)
    source = TableSource(meta, snapshot.schema, snapshot.segments)
    assert_runs_like(query, store, source, oracle.sql(query).to_arrow_table(), fragments=(1, 3))


def _table(tmp_path, parts: list[pa.Table], row_group_size: int | None = None):
    """A table of one segment per part (committed), its source, and all its rows under the unified schema."""
    store = ObjectStore(str(tmp_path / "wh"))
    meta = Catalog(store).create_table("default", "t", time_column="timestamp", partitions=1)
    log = PartitionLog(store, meta.path, 0)
    state = log.load()
    options = {} if row_group_size is None else {"row_group_size": row_group_size}
    for part in parts:
        entry = write_segment(store, meta.path, part, partition=0, time_column="timestamp", **options)
        state = log.commit(state, epoch=None, added=[entry])
    snapshot = load_snapshot(store, meta)
    schema = unify(p.schema for p in parts)
    return store, TableSource(meta, snapshot.schema, snapshot.segments), pa.concat_tables([conform(p, schema) for p in parts])


def _times(start: int, rows: int) -> pa.Array:
    base = int(dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    return pa.array(base + (start + np.arange(rows)) * 1_000_000, pa.timestamp("us", tz="UTC"))


def test_only_segments_that_can_hold_a_top_row_are_read(tmp_path):
    """One segment holds the largest values: the others' statistics rule them out once k values are known."""
    rng = np.random.default_rng(3)
    parts = [pa.table({"timestamp": _times(i * 1000, 1000),
                       "score": pa.array(rng.normal(100.0 if i == 5 else 0.0, 1.0, 1000)),
                       "wide": pa.array([f"payload-{i}-{n:05d}" for n in range(1000)])})
             for i in range(10)]
    store, source, rows = _table(tmp_path, parts, row_group_size=250)
    query = "SELECT wide, score FROM t ORDER BY score DESC LIMIT 10"
    planned = plan_query(query, lambda name: source)
    gather = next(n for n in planned.optimized.walk() if isinstance(n, Gather))
    scan = stage_scan(gather.input)
    reader = SegmentReader(store)
    _, stats = run_fragment(Fragment("q", 1, 0, stage_plan(gather), tuple(scan.segments)), reader)
    expected = duckdb.sql(query.replace("FROM t", "FROM rows")).to_arrow_table()
    assert_same(run_locally(planned.optimized, reader), expected, ordered=True, query=query)
    assert stats["rows_read"] <= 2000  # the best segment's key, then its row groups that reach the 10th value
    assert stats["segments"] <= 3


@pytest.mark.parametrize("query", [
    "SELECT timestamp, score FROM t ORDER BY score DESC, timestamp LIMIT 8",
    "SELECT timestamp, score FROM t ORDER BY score, timestamp LIMIT 8",
    "SELECT timestamp, day FROM t ORDER BY day DESC, timestamp LIMIT 6",
    "SELECT timestamp, seen FROM t ORDER BY seen, timestamp LIMIT 6",
    "SELECT timestamp, score FROM t WHERE score IS NOT NULL OR day IS NULL ORDER BY score DESC, timestamp LIMIT 4",
])
def test_nulls_missing_columns_and_ties_keep_duckdbs_answer(tmp_path, query):
    """Fewer non-NULL keys than k, a column some segments lack, all-NULL row groups and ties across segments."""
    day = dt.date(2026, 11, 2)
    first = pa.table({"timestamp": _times(0, 4), "day": pa.array([day, None, day, day])})
    second = pa.table({"timestamp": _times(10, 6), "day": pa.array([None] * 6, pa.date32()),
                       "score": pa.array([None, 3, 3, None, 1, 3], pa.int64()),
                       "seen": pa.array(_times(100, 6).to_pylist()[::-1], pa.timestamp("us", tz="UTC"))})
    third = pa.table({"timestamp": _times(20, 5), "day": pa.array([day - dt.timedelta(days=i) for i in range(5)]),
                      "score": pa.array([3, 2, None, 3, 0], pa.int64()),
                      "seen": pa.array(_times(103, 5))})
    store, source, rows = _table(tmp_path, [first, second, third], row_group_size=2)
    planned = plan_query(query, lambda name: source)
    got = run_locally(planned.optimized, SegmentReader(store))
    assert_same(got, duckdb.sql(query.replace("FROM t", "FROM rows")).to_arrow_table(), ordered=True, query=query)
