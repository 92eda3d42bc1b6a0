"""The plan cache: a query asked again over unchanged tables reuses its plan, and never a stale one."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

START = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)


def _events(first: int, rows: int) -> pa.Table:
    return pa.table({
        "ts": pa.array([START + dt.timedelta(minutes=first + i) for i in range(rows)], pa.timestamp("us", tz="UTC")),
        "n": pa.array(range(first, first + rows), pa.int64()),
    })


@pytest.fixture(autouse=True)
def events(db):
    db.create_table("events", time_column="ts")
    db.ingest("events", _events(0, 10), batch_id="first")


def test_the_same_query_over_the_same_snapshot_is_planned_once(db):
    query = "SELECT sum(n) AS s FROM events WHERE n > 2"
    first = db.sql(query)
    hits = db.queries.plans.hits
    assert db.sql(query).equals(first)
    assert db.queries.plans.hits == hits + 1


def test_a_commit_makes_the_plan_stale(db):
    query = "SELECT sum(n) AS s, count(*) AS c FROM events"
    assert db.sql(query).to_pylist() == [{"s": 45, "c": 10}]
    db.ingest("events", _events(10, 5), batch_id="second")
    hits = db.queries.plans.hits
    assert db.sql(query).to_pylist() == [{"s": sum(range(15)), "c": 15}]
    assert db.queries.plans.hits == hits  # planned again, over the new snapshot


def test_queries_that_read_the_clock_or_registered_rows_are_planned_each_time(db):
    clock = "SELECT count(*) AS c FROM events WHERE ts < now()"
    db.sql(clock)
    hits = db.queries.plans.hits
    db.sql(clock)
    assert db.queries.plans.hits == hits
    db.register("extra", pa.table({"n": [1, 2]}))
    assert db.sql("SELECT sum(n) AS s FROM extra").to_pylist() == [{"s": 3}]
    db.register("extra", pa.table({"n": [5]}))
    assert db.sql("SELECT sum(n) AS s FROM extra").to_pylist() == [{"s": 5}]
    assert db.queries.plans.hits == hits


def test_a_join_with_a_registered_table_sees_the_rows_registered_last(db):
    db.register("dims", pa.table({"n": [1], "team": ["core"]}))
    query = "SELECT d.team, count(*) AS c FROM events e JOIN dims d ON e.n = d.n GROUP BY d.team"
    assert db.sql(query).to_pylist() == [{"team": "core", "c": 1}]
    db.register("dims", pa.table({"n": [2], "team": ["storage"]}))
    assert db.sql(query).to_pylist() == [{"team": "storage", "c": 1}]
