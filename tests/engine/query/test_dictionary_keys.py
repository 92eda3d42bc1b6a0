"""Group keys read dictionary-encoded as stored: the same groups as DuckDB's, plain strings out."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.query.execution import aggregate
from engine.query.execution.memory import MemoryBudget
from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_locally
from planner.logical import AggCall, TableSource
from planner.planning import plan_query
from storage.objectstore import ObjectStore
from storage.segment import write_segment
from storage.snapshot import load_snapshot
from tests.event_data import load_events
from tests.result_compare import assert_same

QUERIES = [
    'SELECT "http.method", "http.status_code", count(*) FROM events GROUP BY 1, 2',
    "SELECT service, median(latency_ms), stddev(bytes) FROM events GROUP BY service",
    "SELECT user_id, count(*) AS n FROM events WHERE user_id IS NOT NULL GROUP BY user_id HAVING count(*) > 3",
    "SELECT region, service, avg(latency_ms), max(latency_ms) FROM events GROUP BY region, service",
    "SELECT service, count(*) FROM events WHERE service LIKE '%a%' GROUP BY service",
    "SELECT service, count(DISTINCT service), min(host) FROM events GROUP BY service",
    "SELECT service, upper(service) AS u, count(*) FROM events GROUP BY service, u",
    "SELECT DISTINCT host, \"http.method\" FROM events WHERE host < 'host-05'",
    "SELECT attrs.tier, count(*) FROM events GROUP BY 1",
]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """The shared event day (``region`` only in later segments, NULL keys) with DuckDB over its rows."""
    store = ObjectStore(str(tmp_path_factory.mktemp("dictionary") / "wh"))
    meta, rows = load_events(store, hours=16, partitions=2, rows_per_segment=150)
    oracle = duckdb.connect()
    oracle.execute("SET TimeZone = 'UTC'")
    oracle.register("events", rows)
    return store, meta, oracle


@pytest.mark.parametrize("query", QUERIES)
def test_grouping_on_dictionary_keys_matches_duckdb(events, query):
    store, meta, oracle = events
    snapshot = load_snapshot(store, meta)
    source = TableSource(meta, snapshot.schema, snapshot.segments)
    planned = plan_query(query, lambda name: source)
    for fragments in (1, 3):
        got = run_locally(planned.optimized, SegmentReader(store), fragments=fragments)
        for field in got.schema:
            assert not pa.types.is_dictionary(field.type), query
        assert_same(got, oracle.sql(query).to_arrow_table(), ordered=False, query=query)


def _segments(store: ObjectStore) -> tuple[list, pa.Schema]:
    rng = np.random.default_rng(4)
    first = pa.table({"timestamp": pa.array(np.arange(5000), pa.timestamp("us", tz="UTC")),
                      "s": pa.array(np.array(["a", "b", None], dtype=object)[rng.integers(0, 3, 5000)].tolist(),
                                    pa.string())})
    second = pa.table({"timestamp": pa.array(np.arange(5000, 5600), pa.timestamp("us", tz="UTC")),
                       "s": pa.array(np.array(["c", "b"])[rng.integers(0, 2, 600)])})
    segments = [write_segment(store, "ns/t", t, partition=0, time_column="timestamp", row_group_size=1000)
                for t in (first, second)]
    return segments, pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("s", pa.string())])


@pytest.mark.parametrize("bounded", [False, True])
def test_the_reader_returns_keys_as_stored_and_partial_states_decode_them(bounded):
    store = ObjectStore(f"memory://dictionary-reader-{bounded}")
    segments, schema = _segments(store)
    reader = SegmentReader(store)
    options = {}
    if bounded:
        budget = MemoryBudget(1 << 30)
        options = {"charge": lambda n: budget.charge(n, "a scan")}
    plain = reader.read("ns/t", schema, segments, {"k": pc.field("s")}, pc.field("s") != "c", **options)
    encoded = reader.read("ns/t", schema, segments, {"k": pc.field("s")}, pc.field("s") != "c", **options,
                          dictionary=frozenset({"s"}))
    assert pa.types.is_dictionary(encoded.schema.field("k").type)
    assert encoded.column("k").cast(pa.string()).to_pylist() == plain.column("k").to_pylist()
    calls = (AggCall("n", "count_star"),)
    states = aggregate.partial(encoded, ("k",), calls)
    assert states.schema.field("k").type == pa.string()
    expected = duckdb.sql("SELECT k, count(*) AS n FROM plain GROUP BY k").to_arrow_table()
    assert_same(aggregate.final(states, ("k",), calls), expected, ordered=False)


def test_a_filter_without_a_dictionary_kernel_reads_the_key_plain():
    store = ObjectStore("memory://dictionary-reader-like")
    segments, schema = _segments(store)
    got = SegmentReader(store).read("ns/t", schema, segments, {"k": pc.field("s")},
                                    pc.match_substring(pc.field("s"), "b"), dictionary=frozenset({"s"}))
    assert got.schema.field("k").type == pa.string() and set(got.column("k").to_pylist()) == {"b"}


def test_a_key_some_segment_stores_plain_is_read_plain():
    """Hashing plain strings into a dictionary would cost more than reading them plain."""
    store = ObjectStore("memory://dictionary-reader-plain")
    segments, schema = _segments(store)
    unique = pa.table({"timestamp": pa.array(np.arange(6000, 9000), pa.timestamp("us", tz="UTC")),
                       "s": pa.array([f"value-{i}" for i in range(3000)])})
    segments.append(write_segment(store, "ns/t", unique, partition=0, time_column="timestamp", dictionary=[]))
    got = SegmentReader(store).read("ns/t", schema, segments, {"k": pc.field("s")}, dictionary=frozenset({"s"}))
    assert got.schema.field("k").type == pa.string() and got.num_rows == 8600
