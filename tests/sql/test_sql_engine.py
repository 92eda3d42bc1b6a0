"""The query engine on Ray: pruning, EXPLAIN, failures, timeouts, and the errors users see."""

from __future__ import annotations

import re
import threading
import time

import pytest
import ray

import engine
from engine.query import QueryEngine
from tests.event_data import duckdb_over, load_events
from tests.result_compare import assert_same
from storage.errors import (
    ColumnNotFound, PetrelError, QueryFailed, QueryTimeout, SqlError, TableNotFound, UnsupportedSql,
)
from storage.objectstore import ObjectStore

ONE_HOUR = ("SELECT service, count(*) AS n FROM events WHERE timestamp >= TIMESTAMP '2026-11-02 13:00:00' "
            "AND timestamp < TIMESTAMP '2026-11-02 14:00:00' GROUP BY service ORDER BY service NULLS FIRST")


@pytest.fixture(scope="module")
def loaded(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("engine") / "warehouse")
    meta, rows = load_events(ObjectStore(root), hours=24, partitions=2, rows_per_segment=200)
    oracle = duckdb_over(events=rows)
    db = engine.connect(root)
    db.queries.local_bytes = 0  # these tests are about the workers: every stage goes to them, however small
    yield db, oracle, root
    db.close()


def _stage_counts(text: str) -> dict[str, int]:
    match = re.search(r"fragments=(\d+) segments_scanned=(\d+) rows_read=(\d+)", text)
    assert match, text
    return {"fragments": int(match.group(1)), "segments": int(match.group(2)), "rows": int(match.group(3))}


def test_one_hour_reads_only_that_hours_segments(loaded):
    db, oracle, _ = loaded
    text = db.explain(ONE_HOUR, analyze=True)
    assert "segments=2/48 (pruned: 46 by time, 0 by stats, 0 by limit)" in text
    counts = _stage_counts(text)
    assert counts["segments"] == 2  # one segment per partition for that hour
    assert_same(db.sql(ONE_HOUR), oracle.sql(ONE_HOUR).to_arrow_table(), ordered=True, query=ONE_HOUR)


def test_explain_analyze_in_sql_reports_stages_and_workers(loaded):
    db, _, _ = loaded
    table = db.sql("EXPLAIN ANALYZE " + ONE_HOUR)
    text = "\n".join(table.column(0).to_pylist())
    assert "Logical plan:" in text and "Distributed plan:" in text
    assert "Aggregate [partial]" in text and "Aggregate [final]" in text
    assert re.search(r"worker worker-\d+/\w+: fragments=\d+ segments=\d+ rows_read=\d+ bytes_read=\d+", text)
    assert "Total:" in text


def test_a_small_stage_runs_in_the_driver_and_starts_no_worker(loaded):
    db, oracle, root = loaded
    small = engine.connect(root)  # the default: a stage reading this little runs in the driver
    try:
        text = small.explain(ONE_HOUR, analyze=True)
        assert re.search(r"worker driver: fragments=1 segments=2 rows_read=\d+ bytes_read=[1-9]\d*", text), text
        assert small.queries._pool is None
        assert_same(small.sql(ONE_HOUR), oracle.sql(ONE_HOUR).to_arrow_table(), ordered=True, query=ONE_HOUR)
        small.queries.local_bytes = 1  # a stage over this budget goes to the workers
        assert "worker worker-" in small.explain(ONE_HOUR, analyze=True)
    finally:
        small.close()


def test_plain_explain_does_not_run(loaded):
    db, _, _ = loaded
    text = db.explain("SELECT count(*) FROM events WHERE region = 'eu-west'")
    # region appears from noon on: the twelve morning hours' segments lack it and are pruned by stats
    assert "segments=24/48 (pruned: 0 by time, 24 by stats, 0 by limit)" in text
    assert "->" not in text


def test_stats_pruning_on_equality_and_in(loaded):
    db, oracle, _ = loaded
    query = "SELECT count(*) FROM events WHERE host IN ('host-99', 'host-98')"
    text = db.explain(query, analyze=True)
    assert "segments=0/48" in text
    assert db.sql(query).column(0).to_pylist() == [0]


def test_limit_without_order_stops_early(loaded):
    db, _, _ = loaded
    text = db.explain("SELECT * FROM events LIMIT 5", analyze=True)
    assert "by limit)" in text and "segments=1/48" in text
    assert db.sql("SELECT * FROM events LIMIT 5").num_rows == 5


def test_topk_is_pushed_into_fragments(loaded):
    db, oracle, _ = loaded
    query = "SELECT timestamp, latency_ms FROM events ORDER BY latency_ms DESC NULLS LAST, timestamp LIMIT 3"
    text = db.explain(query, analyze=True)
    assert text.count("[top 3]") == 2  # in every fragment and after the gather
    assert_same(db.sql(query), oracle.sql(query).to_arrow_table(), ordered=True, query=query)


@pytest.mark.parametrize("order", ["timestamp, service NULLS LAST", "timestamp DESC, service NULLS LAST"])
def test_topk_by_time_reads_segments_in_time_order_and_stops(loaded, order):
    db, oracle, _ = loaded
    query = f"SELECT timestamp, service, bytes FROM events WHERE bytes > 100 ORDER BY {order} LIMIT 7"
    text = db.explain(query, analyze=True)
    assert _stage_counts(text)["segments"] <= 8, text  # of 48: the first hour's (or last hour's) per fragment
    assert_same(db.sql(query), oracle.sql(query).to_arrow_table(), ordered=True, query=query)


def _in_background(call) -> tuple[threading.Thread, dict]:
    """``call`` started on a thread; its table (or the error it raised) lands in the dict once it ends."""
    result: dict = {}

    def run() -> None:
        try:
            result["table"] = call()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.chaos
def test_worker_killed_mid_query_is_retried(loaded):
    db, oracle, _ = loaded
    query = "SELECT service, count(*), sum(bytes) FROM events GROUP BY service"
    db.sql(query)  # the pool exists
    pool = db.queries.pool
    victim_name = pool.names[0]
    victim = pool.workers[victim_name]
    db.queries.fault_delay = 1.0
    thread, result = _in_background(lambda: db.sql(query))
    try:
        deadline = time.monotonic() + 30
        while not ray.get(victim.running.remote()):
            assert time.monotonic() < deadline, "the fragment never started"
            time.sleep(0.05)
        ray.kill(victim, no_restart=True)
        thread.join(60)
    finally:
        db.queries.fault_delay = 0.0
    assert "error" not in result, result.get("error")
    assert_same(result["table"], oracle.sql(query).to_arrow_table(), ordered=False, query=query)
    assert pool.workers[victim_name] is not victim  # replaced in the pool
    assert db.sql("SELECT count(*) FROM events").column(0).to_pylist() == [oracle.sql("SELECT count(*) FROM events").fetchall()[0][0]]


BROADCAST_JOIN = ("SELECT count(*) FROM events e JOIN (SELECT DISTINCT service FROM events WHERE host = 'host-01') s "
                  "ON e.service = s.service")


def test_fragments_with_exchange_inputs_are_not_left_running(loaded):
    db, oracle, _ = loaded
    assert "broadcast" in db.explain(BROADCAST_JOIN)
    assert_same(db.sql(BROADCAST_JOIN), oracle.sql(BROADCAST_JOIN).to_arrow_table(), ordered=False)
    pool = db.queries.pool
    assert ray.get([w.running.remote() for w in pool.workers.values()]) == [[] for _ in pool.workers]


@pytest.mark.chaos
def test_worker_dying_with_several_fragments_is_replaced_once(loaded):
    """One worker, several fragments on it: every one of them fails when it dies, one replacement serves all."""
    db, oracle, _ = loaded
    queries = QueryEngine(db.store, db.catalog, db.namespace, workers=1)
    queries.local_bytes = 0
    try:
        query = ("SELECT service, count(*), sum(bytes) FROM events WHERE timestamp < TIMESTAMP '2026-11-02 03:00:00' "
                 "GROUP BY service")
        with pytest.raises(SqlError):
            queries.sql("SELECT service FROM events WHERE")
        assert "->" not in queries.explain(query) and queries._pool is None  # planning starts no worker
        queries.fragment_bytes = 1  # one fragment per segment
        queries.fault_delay = 1.0
        victim = queries.pool.workers["worker-0"]
        thread, result = _in_background(lambda: queries.sql(query))
        deadline = time.monotonic() + 30
        while not ray.get(victim.running.remote()):
            assert time.monotonic() < deadline, "the fragment never started"
            time.sleep(0.05)
        ray.kill(victim, no_restart=True)
        thread.join(120)
        assert "error" not in result, result.get("error")
        assert_same(result["table"], oracle.sql(query).to_arrow_table(), ordered=False, query=query)
        replacement = queries.pool.workers["worker-0"]
        assert replacement is not victim and ray.get(replacement.ping.remote())["name"].startswith("worker-0/")
    finally:
        queries.close()


def test_query_over_its_timeout_is_cancelled_and_frees_workers(loaded):
    db, _, _ = loaded
    db.sql("SELECT count(*) FROM events")
    db.queries.fault_delay = 30.0
    try:
        with pytest.raises(QueryTimeout, match="timeout"):
            db.sql("SELECT sum(bytes) FROM events", timeout=0.5)  # a scan (counts are answered from the manifest)
    finally:
        db.queries.fault_delay = 0.0
    pool = db.queries.pool
    deadline = time.monotonic() + 20
    while any(ray.get([w.running.remote() for w in pool.workers.values()])):
        assert time.monotonic() < deadline, "workers still busy with the cancelled query"
        time.sleep(0.05)
    assert db.sql("SELECT count(*) FROM events").num_rows == 1


def test_session_default_timeout(loaded):
    _, _, root = loaded
    db = engine.connect(root, timeout=0.3)
    db.queries.local_bytes = 0
    db.queries.fault_delay = 30.0
    try:
        with pytest.raises(QueryTimeout):
            db.sql("SELECT sum(bytes) FROM events")
    finally:
        db.close()


@pytest.mark.parametrize(
    "query, error, fragment",
    [
        ("SELEC count(*) FROM events", SqlError, "syntax error"),
        ("SELECT count(*) FROM events WHERE (latency_ms > 1", SqlError, "line 1"),
        ("SELECT count(*) FROM evnts", TableNotFound, "did you mean events"),
        ("SELECT servce FROM events", ColumnNotFound, "did you mean 'service'"),
        ("SELECT count(*) FROM events WHERE latncy_ms > 5", ColumnNotFound, "latency_ms"),
        ("SELECT service FROM events QUALIFY row_number() OVER (ORDER BY timestamp) = 1 ORDER BY timestamp",
         UnsupportedSql, "QUALIFY"),
        ("SELECT sum(bytes) OVER (ORDER BY bytes ROWS 5 PRECEDING EXCLUDE TIES) FROM events",
         UnsupportedSql, "EXCLUDE TIES"),
        ("SELECT sum(bytes) OVER (ORDER BY host RANGE BETWEEN 5 PRECEDING AND CURRENT ROW) FROM events",
         SqlError, "orders by a number or a time"),
        ("SELECT service, (SELECT x.host FROM events x WHERE x.service = e.service ORDER BY x.timestamp LIMIT 1) "
         "FROM events e", UnsupportedSql, "correlated scalar subquery with LIMIT"),
        ("WITH RECURSIVE r AS (SELECT 1 FROM r) SELECT * FROM r", UnsupportedSql, "recursive CTE"),
        ("SELECT levenshtein(host, 'x') FROM events", UnsupportedSql, "levenshtein"),
        ("SELECT service, count(*) FROM events", SqlError, "GROUP BY"),
        ("INSERT INTO events VALUES (1)", UnsupportedSql, "INSERT"),
        ("SELECT sum(service) FROM events", SqlError, "SUM cannot aggregate"),
        ("SELECT count(*) FROM other.events", TableNotFound, "namespace"),
        ("SELECT service FROM events ORDER BY attrs LIMIT 3", UnsupportedSql, "e.g. attrs.tier"),
        ("SELECT max(attrs) FROM events", UnsupportedSql, "MAX cannot use attrs"),
        ("SELECT DISTINCT attrs FROM events", UnsupportedSql, "DISTINCT cannot use attrs"),
        ("SELECT count(*) FROM events WHERE regexp_matches(url, '(')", SqlError, "invalid regular expression '('"),
        ("SELECT service,, host FROM events", SqlError, "unexpected ','"),
        ("SELECT sum(bytes + 9000000000000000000) FROM events", QueryFailed, "exceeds the BIGINT range"),
    ],
)
def test_bad_queries_raise_named_errors(loaded, query, error, fragment):
    db, _, _ = loaded
    with pytest.raises(error) as raised:
        db.sql(query)
    assert fragment.lower() in str(raised.value).lower()
    assert isinstance(raised.value, PetrelError)


def test_syntax_error_has_line_and_column(loaded):
    db, _, _ = loaded
    with pytest.raises(SqlError) as raised:
        db.sql("SELECT count(*)\nFROM events\nWHERE latency_ms >")
    assert raised.value.line == 3
    assert raised.value.column is not None


def test_unknown_column_has_position(loaded):
    db, _, _ = loaded
    with pytest.raises(ColumnNotFound) as raised:
        db.sql("SELECT service,\n  hots FROM events")
    assert (raised.value.line, raised.value.column) == (2, 3)
    assert "host" in str(raised.value)


def test_postgres_dialect(loaded):
    db, oracle, _ = loaded
    got = db.sql("SELECT service, COUNT(*) AS n FROM events WHERE service ~ '^a' GROUP BY service ORDER BY service",
                 dialect="postgres")
    expected = oracle.sql("SELECT service, count(*) AS n FROM events WHERE regexp_matches(service, '^a') "
                          "GROUP BY service ORDER BY service").to_arrow_table()
    assert_same(got, expected, ordered=True)


def test_new_commits_are_seen_by_the_next_query(loaded, tmp_path):
    from tests.event_data import hour_of_events
    import numpy as np

    from storage.log import PartitionLog
    from storage.segment import write_segment

    root = str(tmp_path / "warehouse")
    store = ObjectStore(root)
    meta, rows = load_events(store, hours=2, partitions=1, rows_per_segment=50)
    db = engine.connect(root)
    try:
        assert db.sql("SELECT count(*) FROM events").column(0).to_pylist() == [rows.num_rows]
        extra = hour_of_events(np.random.default_rng(3), 5, 40)
        entry = write_segment(store, meta.path, extra, partition=0, time_column="timestamp", sort_key=meta.full_sort_key)
        log = PartitionLog(store, meta.path, 0)
        log.commit(log.load(), epoch=None, added=[entry])
        assert db.sql("SELECT count(*) FROM events").column(0).to_pylist() == [rows.num_rows + 40]
    finally:
        db.close()
