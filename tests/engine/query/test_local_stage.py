"""A stage over a few small segments may run in the coordinator, without a round trip to a worker, same answer."""

from __future__ import annotations

import pyarrow as pa

BASE_MICROS = 1_793_491_200_000_000


def test_a_small_stage_runs_here_when_the_engine_allows_it(db):
    db.create_table("events", partitions=1)
    db.ingest("events", pa.table({
        "timestamp": pa.array([BASE_MICROS + i for i in range(100)], pa.timestamp("us", "UTC")),
        "service": ["api", "db", "web", "api"] * 25, "ms": [float(i) for i in range(100)]}), batch_id="one")
    query = "SELECT service, count(*) AS n, sum(ms) AS total FROM events WHERE ms > 10 GROUP BY service ORDER BY service"
    db.queries.local_bytes = 0  # every stage on the workers
    on_workers = db.sql(query)
    assert "worker driver" not in db.explain(query, analyze=True)
    db.queries.local_bytes = 8 << 20
    assert db.sql(query).equals(on_workers)
    analyzed = db.explain(query, analyze=True)
    assert "worker driver: fragments=1 segments=1" in analyzed
    db.queries.local_bytes = 1  # the segment is larger: back to the workers
    assert "worker driver" not in db.explain(query, analyze=True)
