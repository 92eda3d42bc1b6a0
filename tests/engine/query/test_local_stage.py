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


def test_a_large_stage_run_here_uses_a_thread_per_core_with_the_same_answers(db, monkeypatch):
    """Above LOCAL_SPLIT_ROWS a stage run here splits: a plain stage into fragments, an aggregate's read into threads."""
    from engine.query import scheduler

    db.create_table("events", partitions=2)
    for batch in range(4):  # several segments per partition
        db.ingest("events", pa.table({
            "timestamp": pa.array([BASE_MICROS + batch * 1000 + i for i in range(500)], pa.timestamp("us", "UTC")),
            "service": (["api", "db", "web", "", "api"] * 100),
            "ms": [float((i * 7 + batch) % 97) for i in range(500)]}), batch_id=f"b{batch}")
    queries = [
        "SELECT count(*) FROM events WHERE ms > 10",
        "SELECT service, count(*) AS n, sum(ms) AS total, count(DISTINCT ms) AS d FROM events "
        "WHERE service <> '' GROUP BY service ORDER BY service",
        "SELECT timestamp, service, ms FROM events WHERE ms > 90 ORDER BY ms DESC, timestamp LIMIT 7",
        "SELECT service, ms FROM events WHERE ms = 3 ORDER BY timestamp",
    ]
    db.queries.local_bytes = 8 << 20
    whole = [db.sql(query) for query in queries]
    assert "worker driver: fragments=1 " in db.explain(queries[2], analyze=True)
    monkeypatch.setattr(scheduler, "LOCAL_SPLIT_ROWS", 0)
    for query, expected in zip(queries, whole):
        assert db.sql(query).equals(expected), query
    assert "worker driver: fragments=2 " in db.explain(queries[2], analyze=True)
    aggregate = db.explain(queries[1], analyze=True)
    assert "worker driver: fragments=1 " in aggregate and "rows_read=2000 " in aggregate  # the threads' reads, summed
