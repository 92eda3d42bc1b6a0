"""Kept plans: reused while the tables stay, planned again after a commit, never kept when they read the clock."""

from __future__ import annotations

import pyarrow as pa
import pytest

import engine

BASE_MICROS = 1_793_491_200_000_000


def _rows(first: int, count: int) -> pa.Table:
    return pa.table({"timestamp": pa.array([BASE_MICROS + i for i in range(first, first + count)],
                                           pa.timestamp("us", "UTC")),
                     "service": ["api", "db"] * (count // 2)})


@pytest.fixture
def session(ray_session, tmp_path):
    db = engine.connect(str(tmp_path / "warehouse"), maintenance=False)
    db.create_table("events", partitions=1)
    db.ingest("events", _rows(0, 10), batch_id="first")
    yield db
    db.close()


def test_a_kept_plan_serves_repeats_until_a_commit_moves_the_table(session):
    plans = session.queries.plans
    query = "SELECT service, count(*) AS n FROM events GROUP BY service ORDER BY service"
    assert session.sql(query).column("n").to_pylist() == [5, 5]
    first = session.queries.plan(query)
    assert session.sql(query).column("n").to_pylist() == [5, 5]
    assert session.queries.plan(query) is first and plans.hits >= 2
    session.ingest("events", _rows(10, 4), batch_id="second")
    assert session.sql(query).column("n").to_pylist() == [7, 7]  # the new segment is read: planned again
    assert session.queries.plan(query) is not first


def test_plans_that_read_the_clock_or_memory_tables_are_not_kept(session):
    plans = session.queries.plans
    lookups = plans.hits + plans.misses
    for _ in range(2):
        assert session.sql("SELECT count(*) AS n FROM events WHERE timestamp < now()").column("n").to_pylist() == [10]
    assert plans.hits + plans.misses == lookups  # never even looked up
    session.register("dims", pa.table({"service": ["api"], "team": ["core"]}))
    query = "SELECT d.team, count(*) AS n FROM events e JOIN dims d ON e.service = d.service GROUP BY d.team"
    assert session.sql(query).to_pylist() == [{"team": "core", "n": 5}]
    session.register("dims", pa.table({"service": ["db"], "team": ["storage"]}))
    assert session.sql(query).to_pylist() == [{"team": "storage", "n": 5}]
