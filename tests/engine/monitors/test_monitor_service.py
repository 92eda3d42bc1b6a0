"""The monitor service on real Ray actors: live alerts to a loopback webhook, catch-up after an outage, SIGKILLs."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict

import pytest
import ray

from engine.monitors.history import ShardLog, ensure_table, shard_of
from engine.monitors.service import (
    HANDOFF_SLOTS, MonitorService, _hand_off_parts, call, evaluation_shards, lateness_bucket, lateness_percentile,
)
from tests.engine.monitors.monitor_fixtures import EVENTS_SCHEMA, LiveFeed, Receiver, applied_slots

QUERY = "SELECT svc, avg(latency) AS v FROM {table} GROUP BY svc"


def settle(service: MonitorService, meta, store, timeout: float = 60.0) -> None:
    """Stop the schedulers, then wait until every notifier has delivered up to its shard's latest commit and no
    commit is still coming (a step handed to a processor before its scheduler stopped lands first)."""
    for scheduler in service.schedulers:
        ray.kill(scheduler, no_restart=True)
    deadline = time.monotonic() + timeout
    before = None
    while time.monotonic() < deadline:
        notifiers = [call(n.stats) for n in service.notifiers]
        latest = [ShardLog(store, meta, s).load().version for s in range(meta.partitions)]
        if latest == before and all(n["watermark"] >= v for n, v in zip(notifiers, latest)):
            return
        before = latest
        time.sleep(0.5)
    raise AssertionError(f"notifiers did not catch up: {[call(n.stats) for n in service.notifiers]}")


def check_history(db, store, meta, receiver: Receiver, monitors: list[str]) -> dict[str, list[float]]:
    """The invariants: contiguous sequences, every notifying transition acknowledged, keys stable, slots applied once."""
    names = ", ".join(f"'{name}'" for name in monitors)
    rows = db.sql('SELECT monitor, "group", seq, key, notify FROM _monitor_transitions '
                  f"WHERE monitor IN ({names})").to_pylist()
    sequences = defaultdict(list)
    for row in rows:
        sequences[(row["monitor"], row["group"])].append(row["seq"])
    assert sequences, "no transitions were committed"
    for group, seqs in sequences.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), (group, sorted(seqs))  # no gap, no repeat
    keys = {row["key"] for row in rows if row["notify"]}
    assert keys and keys <= set(receiver.acknowledged)  # every transition delivered at least once
    assert {key for key, _ in receiver.received} <= keys  # duplicates carry the key of their transition
    assert all(body["key"] == key for key, body in receiver.received)
    applied = [key for key in applied_slots(store, meta) if key.rsplit("@", 1)[0] in monitors]
    assert len(applied) == len(set(applied))  # no slot applied twice
    slots = defaultdict(list)
    for key in applied:
        name, slot = key.rsplit("@", 1)
        slots[name].append(float(slot))
    assert set(slots) == set(monitors)
    return slots


@pytest.fixture
def live(db, request):
    table = f"live_{request.node.name[-12:].replace('[', '_').replace(']', '_')}"
    db.create_table(table, schema=EVENTS_SCHEMA)
    feed = LiveFeed(db, table)
    receiver = Receiver(fail_every=4, stall_every=7, stall_seconds=1.5)
    yield table, receiver
    feed.stop()
    receiver.close()


@pytest.mark.slow
def test_live_alerts_reach_the_webhook_and_missed_slots_are_caught_up_or_skipped(db, live):
    table, receiver = live
    meta = ensure_table(db.catalog, db.namespace)
    for name in ("live-avg", "live-max"):
        query = QUERY.format(table=table).replace("avg(", "max(") if name == "live-max" else QUERY.format(table=table)
        db.create_monitor(name, query, window="2s", every="1s", critical=5.0, catch_up="3s",
                          notify=f"webhook:{receiver.url}")
    first = db.run_monitors(duration=8, tick=0.1, timeout=0.5)  # the foreground service, stopped after 8 s
    assert first["schedulers"][0]["evaluations"] > 0 and not first["schedulers"][0]["errors"]
    time.sleep(6)  # an outage longer than the catch-up bound
    service = MonitorService(db.store, db.namespace, meta, tick=0.1, timeout=0.5).start()
    try:
        time.sleep(6)
        stats = service.stats()
        settle(service, meta, db.store)
    finally:
        service.stop()
    slots = check_history(db, db.store, meta, receiver, ["live-avg", "live-max"])
    assert stats["schedulers"][0]["evaluations"] > 0 and stats["schedulers"][0]["queries"] <= stats["schedulers"][0]["evaluations"]
    # where a scheduler's time went, as the benchmark records it
    assert all(isinstance(stats["schedulers"][0][key], list) for key in ("slow_windows", "slow_parts"))
    assert stats["schedulers"][0]["work_seconds"]["window"] > 0 and len(stats["schedulers"][0]["gc"]["counts"]) == 3
    assert stats["schedulers"][0]["cache"]["entries"]  # the partial cache's contents by kind
    # and the segments windows covered and read, with the tails among them
    covered, read, tails_covered, tails_read = stats["schedulers"][0]["cache"]["segments"]
    assert covered >= read > 0 and covered >= tails_covered >= tails_read >= 0
    log = ShardLog(db.store, meta, 0)
    log.load()
    for name, applied in slots.items():
        state = log.monitor_state(name)
        assert state.skipped >= 3 and "not running" in state.last_skip["reason"]
        gaps = [b - a for a, b in zip(applied, applied[1:])]
        assert all(g == 1.0 for g in gaps if g < 5)  # caught up slot by slot ...
        assert sum(g - 1 for g in gaps) == state.skipped  # ... and every slot not evaluated was recorded as skipped
    for name in ("live-avg", "live-max"):
        db.drop_monitor(name)


@pytest.mark.slow
@pytest.mark.chaos
def test_sigkill_of_scheduler_processor_and_notifier_loses_and_repeats_nothing(db, live):
    table, receiver = live
    meta = ensure_table(db.catalog, db.namespace)
    names = [f"chaos-{i}" for i in range(3)]
    for index, name in enumerate(names):
        db.create_monitor(name, QUERY.format(table=table), window="2s", every="1s", critical=5.0 + index,
                          notify=f"webhook:{receiver.url}")
    rng = random.Random(7)
    service = MonitorService(db.store, db.namespace, meta, tick=0.1, timeout=0.5).start()
    kills = []
    try:
        for _ in range(4):
            time.sleep(rng.uniform(1.5, 3.5))
            kind = rng.choice(["schedulers", "processors", "notifiers"])
            actor = getattr(service, kind)[0]
            pid = call(actor.pid)
            os.kill(pid, signal.SIGKILL)
            kills.append(kind)
        time.sleep(6)  # let the restarted actors catch up
        settle(service, meta, db.store)
    finally:
        service.stop()
    slots = check_history(db, db.store, meta, receiver, names)
    for name, applied in slots.items():
        assert applied == sorted(applied)
        assert all(b - a == 1.0 for a, b in zip(applied, applied[1:])), name  # every slot, none skipped
    for name in names:
        db.drop_monitor(name)


def test_schedulers_split_monitors_by_scan_and_spread_a_scan_too_large_for_one():
    def record(table: str, groups: tuple[str, ...]) -> dict:
        return {"table": table, "group_columns": list(groups)}

    records = {f"a-{i}": record("a", ("svc",)) for i in range(30)}
    records |= {f"b-{i}": record("b", ("svc",)) for i in range(20)}
    records |= {f"c-{i}": record("a", ("svc", "host")) for i in range(10)}
    records["b-aliased"] = {**record("b", ("service",)), "group_sql": ["svc"]}  # reads what b's read
    owners = evaluation_shards(records, 2)
    by_scan = defaultdict(set)
    for name, shard in owners.items():
        by_scan[name.split("-")[0]].add(shard)
    assert all(len(shards) == 1 for shards in by_scan.values())  # a scan is evaluated by one scheduler
    assert by_scan["a"] != by_scan["b"] == by_scan["c"]  # largest first, each to the least loaded: 30 and 31
    assert owners == evaluation_shards(dict(reversed(records.items())), 2)  # whatever order they are listed in
    records |= {f"d-{i}": record("d", ()) for i in range(100)}  # more than half of them: split by name
    owners = evaluation_shards(records, 2)
    assert {owners[f"d-{i}"] for i in range(100)} == {0, 1}
    assert evaluation_shards(records, 1) == dict.fromkeys(records, 0)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_step_hands_off_whole_slots_in_parts_oldest_first():
    due = [(name, slot) for slot, count in ((60.0, 700), (61.0, 700), (62.0, 1500), (63.0, 10))
           for name in range(count)]
    parts = _hand_off_parts(due)
    assert [len(p) for p in parts] == [1400, 1500, 10] and sum(parts, []) == due  # 60+61 reach the size
    assert all(len({slot for _, slot in p[-1:]} & {slot for _, slot in n[:1]}) == 0 for p, n in zip(parts, parts[1:]))
    assert _hand_off_parts([("m", 60.0)] * (HANDOFF_SLOTS * 3)) == [[("m", 60.0)] * (HANDOFF_SLOTS * 3)]
    assert _hand_off_parts([]) == []


def test_lateness_is_counted_in_buckets_that_give_percentiles_within_two_percent():
    rng = random.Random(7)
    samples = [rng.lognormvariate(0.5, 1.0) for _ in range(10_000)] + [0.0, 1e-6]
    counts: dict[int, int] = defaultdict(int)
    for seconds in samples:
        counts[lateness_bucket(seconds)] += 1
    ordered = sorted(samples)
    for fraction in (0.5, 0.9, 0.99):
        exact = ordered[int(fraction * len(ordered)) - 1]
        assert lateness_percentile(counts, fraction) == pytest.approx(exact, rel=0.02)
    assert lateness_percentile({}, 0.5) is None


def test_two_schedulers_split_the_scans_and_commit_to_each_monitors_shard_through_sigkills(ray_session, tmp_path):
    import engine

    db = engine.connect(str(tmp_path / "warehouse"), maintenance=False)
    meta = ensure_table(db.catalog, db.namespace, 2)
    receiver = Receiver(fail_every=5)
    tables = ["left_feed", "right_feed"]
    feeds = []
    for table in tables:
        db.create_table(table, schema=EVENTS_SCHEMA)
        feeds.append(LiveFeed(db, table))
    names = []
    for table in tables:
        for index, aggregate in enumerate(("avg", "max", "min")):
            names.append(f"{table}-{aggregate}")
            db.create_monitor(names[-1], QUERY.format(table=table).replace("avg(", f"{aggregate}("), window="2s",
                              every="1s", critical=5.0 + index, notify=f"webhook:{receiver.url}")
    owners = evaluation_shards(db.monitor_log.definitions(), 2)
    assert {owners[f"{t}-avg"] for t in tables} == {0, 1}  # each scheduler evaluates one table's monitors
    assert {shard_of(name, 2) for name in names} == {0, 1}  # whose states live in both shards
    service = MonitorService(db.store, db.namespace, meta, tick=0.1, timeout=0.5).start()
    rng = random.Random(11)
    try:
        for _ in range(4):
            time.sleep(rng.uniform(1.5, 3.0))
            actor = getattr(service, rng.choice(["schedulers", "processors", "notifiers"]))[rng.randrange(2)]
            os.kill(call(actor.pid), signal.SIGKILL)
        time.sleep(6)
        stats = service.stats()
        settle(service, meta, db.store)
    finally:
        service.stop()
        for feed in feeds:
            feed.stop()
        receiver.close()
    assert [s["monitors"] for s in stats["schedulers"]] == [3, 3]
    slots = check_history(db, db.store, meta, receiver, names)
    for name, applied in slots.items():
        assert all(b - a == 1.0 for a, b in zip(applied, applied[1:])), name  # every slot, once, none skipped
    db.close()
