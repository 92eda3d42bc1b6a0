"""Monitors through the session: refused definitions, CRUD and mutes, backtests, shared scans, atomic slot commits."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.monitors.definition import build_spec
from engine.monitors.evaluate import Evaluator
from engine.monitors.history import TRANSITIONS_TABLE, ShardLog, ensure_table, read_outbox
from engine.monitors.queries import LocalQueries
from engine.monitors.state import ALERT, OK
from tests.engine.monitors.monitor_fixtures import BASE, EVENTS_SCHEMA, minute_of_events
from storage.errors import InvalidMonitor, MonitorNotFound, PetrelError

ERRORS = 'SELECT svc, count(*) FILTER (WHERE status >= 500) * 100.0 / count(*) AS error_pct FROM ev GROUP BY svc'


@pytest.mark.parametrize("query, words", [
    ("SELECT svc, max(note) AS worst FROM ev GROUP BY svc", "value column 'worst' is string, not a number"),
    ("SELECT a.svc, count(*) FROM ev a JOIN ev b ON a.svc = b.svc GROUP BY a.svc", "JOIN clause"),
    ("SELECT svc, count(*) FROM (SELECT * FROM ev) GROUP BY svc", "exactly one warehouse table"),
    ("SELECT svc, count(*) FROM nowhere GROUP BY svc", "FROM nowhere"),
    ("SELECT svc, avg(nope) FROM ev GROUP BY svc", "nope"),
    ("SELECT svc, count(*) FROM ev WHERE timestamp > TIMESTAMP '2026-01-01' GROUP BY svc", "time column"),
    ("SELECT svc, count(*) FROM ev GROUP BY svc ORDER BY 2 LIMIT 3", "ORDER BY clause"),
    ("SELECT svc, status FROM ev", "GROUP BY columns (none)"),
    ("SELECT status * 2 AS doubled FROM ev", "value column 'doubled' is not an aggregate"),
    ("SELECT svc, count(*) FROM ev GROUP BY svc, status", "GROUP BY columns (svc, status)"),
    ("SELECT svc, count(* FROM ev GROUP BY svc", "does not parse"),
    ("DELETE FROM ev", "one SELECT"),
])
def test_create_refuses_bad_queries_naming_the_clause(db, query, words):
    with pytest.raises(InvalidMonitor) as refused:
        db.create_monitor("bad", query, window="1m", every="1m", critical=1.0)
    assert words in str(refused.value)
    with pytest.raises(MonitorNotFound):
        db.monitor("bad")


def test_definitions_crud_and_mutes(db):
    created = db.create_monitor("crud", ERRORS, window="5m", every="1m", critical=10.0, notify="file:alerts.jsonl")
    assert created.version == 1 and created.group_columns == ("svc",) and created.value_column == "error_pct"
    assert created.notify[0].startswith("file:/")  # made absolute: actors run elsewhere
    assert "crud" in [m.name for m in db.monitors()]
    with pytest.raises(InvalidMonitor, match="critical_recovery=30"):
        db.update_monitor("crud", critical_recovery=30.0)
    updated = db.update_monitor("crud", critical=20.0, critical_recovery=15.0)
    assert (updated.version, updated.critical, updated.window) == (2, 20.0, 300.0)
    assert updated.offset == created.offset  # its slots stay where they were
    # offsets are chosen at definition: a monitor of the same shape shares its slots, another shape is due apart
    twin = db.create_monitor("crud-twin", ERRORS.replace("error_pct", "pct"), window="5m", every="1m", critical=1.0)
    other = db.create_monitor("crud-other", ERRORS, window="7m", every="1m", critical=1.0)
    assert twin.offset == created.offset != other.offset and twin.slot_offset is not None
    aliased = db.create_monitor("crud-aliased", ERRORS.replace("SELECT svc,", "SELECT svc AS service,"), window="5m",
                                every="1m", critical=1.0)  # reads what the others read: due with them
    assert aliased.group_columns == ("service",) and aliased.group_sql == ("svc",) and aliased.offset == created.offset
    db.drop_monitor("crud-aliased")
    moved = db.update_monitor("crud-twin", window="7m")  # now of the other's shape: due with it
    assert moved.offset == other.offset
    db.drop_monitor("crud-twin")
    db.drop_monitor("crud-other")
    muted = db.mute_monitor("crud", until="2h", groups={"svc": "payments"})
    assert muted.muted({"svc": "payments"}, muted.mutes[0].until - 1) and not muted.muted({"svc": "search"}, 0)
    assert db.update_monitor("crud", warning=5.0).mutes == muted.mutes  # an update keeps the mutes
    assert db.unmute_monitor("crud").mutes == ()
    db.drop_monitor("crud")
    with pytest.raises(MonitorNotFound):
        db.drop_monitor("crud")


def test_a_shard_count_other_than_the_history_has_is_refused_not_ignored(db):
    db.create_monitor("one", ERRORS, window="5m", every="1m", critical=10.0)  # the history: one shard
    with pytest.raises(InvalidMonitor, match=r"shards=2: .* created with 1 shard\(s\).* run with shards=1"):
        db.run_monitors(duration=0, shards=2)


def test_backtest_replays_the_incident(db):
    transitions = db.backtest_monitor(
        dict(name="incident", query=ERRORS, window="1m", every="1m", critical=10.0, critical_recovery=5.0),
        BASE, BASE + 600)
    rows = transitions.to_pylist()
    assert [(r["group"], r["seq"], r["from_state"], r["to_state"]) for r in rows] == [
        ('{"svc":"payments"}', 1, OK, ALERT), ('{"svc":"payments"}', 2, ALERT, OK)]
    alert, recovery = rows
    assert BASE + 180 < alert["slot"].timestamp() <= BASE + 240 and alert["value"] > 10
    assert BASE + 360 < recovery["slot"].timestamp() <= BASE + 420


def test_shared_scan_gives_each_monitor_its_own_values(db):
    queries = [ERRORS,
               "SELECT svc, avg(latency) AS v FROM ev WHERE status < 500 GROUP BY svc",
               "SELECT svc, count(*) AS n FROM ev WHERE svc = 'search' GROUP BY svc",
               "SELECT svc, max(latency) FILTER (WHERE status >= 500) AS m FROM ev GROUP BY svc"]
    specs = [db._checked(build_spec(f"shared{i}", q, window="2m", every="1m", critical=1.0))
             for i, q in enumerate(queries)]
    queries_run = LocalQueries(db.store, db.namespace)
    due = [(spec, BASE + 60 * k) for spec in specs for k in (2, 4, 7)]
    shared, alone = Evaluator(queries_run.sql), Evaluator(queries_run.sql, share=False)
    together = {(o.monitor, o.slot): o.values for o in shared.evaluate(due)}
    separately = {(o.monitor, o.slot): o.values for o in alone.evaluate(due)}
    # per slot: one shared scan, and a rollup for each WHERE's columns (status, svc)
    assert shared.stats.queries == 3 * 3 and alone.stats.queries == 12
    assert together.keys() == separately.keys()
    for key, values in together.items():
        assert values.keys() == separately[key].keys(), key
        for group, value in values.items():
            other = separately[key][group]
            assert (value is None and other is None) or value == pytest.approx(other), (key, group)
    assert list(together[("shared2", BASE + 120)]) == ['{"svc":"search"}']  # the WHERE decides which groups exist


def test_a_slot_commit_is_atomic_idempotent_and_queryable(db):
    spec = db.create_monitor("atomic", ERRORS, window="1m", every="1m", critical=10.0, notify="file:x.jsonl")
    meta = ensure_table(db.catalog, db.namespace)
    log = ShardLog(db.store, meta, 0)
    log.claim()
    evaluator = Evaluator(LocalQueries(db.store, db.namespace).sql)
    slots = [BASE + 60 * k + spec.offset for k in range(1, 9)]
    outcomes = evaluator.evaluate([(spec, s) for s in slots])
    made = log.apply({"atomic": spec}, outcomes[:5])
    version = log.state.version
    assert [(t.seq, t.to_state) for t in made] == [(1, ALERT)]
    assert log.apply({"atomic": spec}, outcomes[:5]) == [] and log.state.version == version  # applied once
    made += log.apply({"atomic": spec}, outcomes)  # only the slots not yet applied
    assert [(t.seq, t.to_state) for t in made] == [(1, ALERT), (2, OK)]
    outbox = [entry for v in range(log.state.version + 1) for entry in read_outbox(log.log, v)]
    assert [e["key"] for e in outbox] == ['atomic/{"svc":"payments"}/1', 'atomic/{"svc":"payments"}/2']
    history = db.sql(f"SELECT seq, to_state, key FROM {TRANSITIONS_TABLE} WHERE monitor = 'atomic' ORDER BY seq")
    assert history.column("to_state").to_pylist() == [ALERT, OK]
    state = db.monitor_state("atomic").to_pylist()
    assert {(r["group"], r["state"], r["seq"]) for r in state} == {('{"svc":"payments"}', OK, 2), ('{"svc":"search"}', OK, 0)}
    other = ShardLog(db.store, meta, 0)
    other.load()
    other.claim()  # a newer processor fences this one
    with pytest.raises(PetrelError):
        log.apply({"atomic": spec}, evaluator.evaluate([(spec, slots[-1] + 60)]))
    db.drop_monitor("atomic")


def test_cli_defines_lists_and_backtests(db, capsys):
    root = db.store.url
    assert main(["--warehouse", root, "monitors", "create", "cli-errors", "--query", ERRORS, "--window", "1m",
                 "--every", "1m", "--critical", "10", "--critical-recovery", "5", "--notify", "file:a.jsonl"]) == 0
    assert main(["--warehouse", root, "monitors", "list"]) == 0
    assert "cli-errors  v1" in capsys.readouterr().out
    assert main(["--warehouse", root, "monitors", "backtest", "cli-errors", "2027-01-15T08:00:00",
                 "2027-01-15T08:10:00"]) == 0
    out = capsys.readouterr().out
    assert "ALERT" in out and "payments" in out
    assert main(["--warehouse", root, "monitors", "create", "cli-bad", "--query", ERRORS, "--window", "1m",
                 "--every", "1m", "--critical", "10", "--notify", "pager:me"]) == 1
    assert "scheme 'pager'" in capsys.readouterr().err
    assert main(["--warehouse", root, "monitors", "drop", "cli-errors"]) == 0


def test_sliding_windows_reuse_partial_aggregates_of_whole_segments(db):
    db.create_table("seg", schema=EVENTS_SCHEMA, partitions=1)
    for minute in range(8):  # one segment per minute
        db.ingest("seg", minute_of_events(BASE + minute * 60, {"payments": (20, minute % 3, 10.0 + minute),
                                                               "search": (10, 0, 5.0)}))
    specs = [db._checked(build_spec(f"slide{i}", q, window="3m", every="1m", critical=1.0)) for i, q in enumerate((
        'SELECT svc, count(*) FILTER (WHERE status >= 500) * 100.0 / count(*) AS e FROM seg GROUP BY svc',
        "SELECT svc, avg(latency) AS v FROM seg WHERE status < 500 GROUP BY svc",
        "SELECT count(*) AS n FROM seg"))]
    queries = LocalQueries(db.store, db.namespace)
    small = LocalQueries(db.store, db.namespace, cache_bytes=512)  # a cache bound that keeps a few partials
    incremental = Evaluator(queries.sql, run_window=queries.window)
    bounded = Evaluator(small.sql, run_window=small.window)
    plain = Evaluator(LocalQueries(db.store, db.namespace).sql)
    for minute in range(3, 9):
        slot = BASE + minute * 60 + 30  # windows cut the segments at both edges
        want = {o.monitor: o.values for o in plain.evaluate([(s, slot) for s in specs])}
        for evaluator in (incremental, bounded):
            got = {o.monitor: o.values for o in evaluator.evaluate([(s, slot) for s in specs])}
            assert got.keys() == want.keys()
            for name, values in got.items():
                assert {k: pytest.approx(v) for k, v in values.items()} == want[name]
        assert small.partial_bytes <= 512 or len(small.partials) == 1
    assert queries.hits + queries.block_hits > 0 and queries.hit_rate > 0.3
    assert small.partial_bytes == sum(t.get_total_buffer_size() for t in small.partials.values())
    # what the bounded cache holds and drops is counted by kind, and so are partials made again after a drop
    bounded.evaluate([(s, BASE + 3 * 60 + 30) for s in specs])  # the first windows again: their segments were dropped
    counts = small.cache.stats()
    assert sum(counts["entries"].values()) == len(small.partials)
    assert sum(counts["bytes"].values()) == small.partial_bytes
    assert counts["over"] == {"bytes": sum(counts["dropped"].values())} and counts["dropped"]["segment"] > 0
    assert counts["again"]["segment"] > 0
    assert queries.cache.stats()["dropped"] == {}


def test_demo_monitors_backtest_the_incident(db):
    from engine.render import render_table
    from engine.demo import DEMO_TABLE, generate_day
    from engine.monitors.demo import run_monitor_demo

    db.create_table(DEMO_TABLE, time_column="timestamp", partitions=1)
    db.ingest(DEMO_TABLE, generate_day(100_000))
    lines: list[str] = []
    run_monitor_demo(db, lines.append, render_table)
    text = "\n".join(lines)
    assert '{"service":"payments"}' in text and "ALERT" in text and '{"endpoint":"/api/pay"}' in text
    assert {m.name for m in db.monitors()} >= {"payments-errors", "slow-endpoints"}
