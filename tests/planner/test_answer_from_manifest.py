"""count(*) and min/max of the time column or an integer column answered from the manifest: as DuckDB, no read."""

from __future__ import annotations

import pytest

from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_locally
from tests.event_data import duckdb_over, load_events
from planner.logical import Memory, Scan, TableSource
from planner.planning import plan_query
from tests.result_compare import assert_same
from storage.objectstore import ObjectStore
from storage.snapshot import load_snapshot

ANSWERED = [
    "SELECT count(*) FROM events",
    "SELECT min(timestamp) AS lo, max(timestamp) AS hi, count(timestamp) AS n FROM events",
    "SELECT count(*) AS n, max(timestamp) AS hi FROM events WHERE timestamp >= TIMESTAMP '2026-11-02 01:00:00' "
    "AND timestamp < TIMESTAMP '2026-11-02 03:00:00'",
    "SELECT count(*) FROM events WHERE timestamp BETWEEN TIMESTAMP '2026-11-02 01:00:00' AND TIMESTAMP '2026-11-02 09:00:00'",
    "SELECT count(*) AS n, min(timestamp) AS lo FROM events WHERE timestamp >= TIMESTAMP '2027-01-01 00:00:00'",
    "SELECT count(*) * 2 AS twice FROM events",
    "SELECT max(latency_ms) FROM events",  # an integer in every segment of these four hours: exact bounds
    'SELECT min("http.status_code") AS lo, max(bytes) AS hi, count(bytes) AS n, count(*) AS c FROM events',
    "SELECT min(bytes) AS lo, max(timestamp) AS hi FROM events WHERE timestamp >= TIMESTAMP '2026-11-02 01:00:00'",
]
SCANNED = [
    "SELECT count(*) FROM events WHERE timestamp >= TIMESTAMP '2026-11-02 01:30:00'",  # cuts a segment
    "SELECT count(*) FROM events WHERE latency_ms > 100",
    "SELECT service, count(*) FROM events GROUP BY service",
    "SELECT max(service) FROM events",  # string bounds are not trusted
    "SELECT count(DISTINCT bytes) FROM events",
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    store = ObjectStore(str(tmp_path_factory.mktemp("manifest") / "warehouse"))
    meta, rows = load_events(store, hours=4, partitions=2, rows_per_segment=200)
    snapshot = load_snapshot(store, meta)
    source = TableSource(meta, snapshot.schema, snapshot.segments, dict(snapshot.versions))
    oracle = duckdb_over(events=rows)
    return store, source, oracle


@pytest.mark.parametrize("query", ANSWERED)
def test_answered_from_the_manifest(table, query):
    store, source, oracle = table
    planned = plan_query(query, lambda name: source)
    nodes = list(planned.optimized.walk())
    assert any(isinstance(n, Memory) and n.name.startswith("manifest of") for n in nodes)
    assert not any(isinstance(n, Scan) for n in nodes)
    assert_same(run_locally(planned.optimized, SegmentReader(store)), oracle.sql(query).to_arrow_table(),
                ordered=False, query=query)


@pytest.mark.parametrize("query", SCANNED)
def test_other_shapes_still_scan(table, query):
    store, source, oracle = table
    planned = plan_query(query, lambda name: source)
    assert any(isinstance(n, Scan) for n in planned.optimized.walk())
    assert_same(run_locally(planned.optimized, SegmentReader(store), fragments=2), oracle.sql(query).to_arrow_table(),
                ordered=False, query=query)
