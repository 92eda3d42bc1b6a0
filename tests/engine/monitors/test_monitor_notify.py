"""The notifier without Ray: at-least-once delivery from the outbox, dedup keys, retries, renotify, fencing."""

from __future__ import annotations

import json

import pytest

from engine.monitors.definition import MonitorSpec, build_spec, mute_of
from engine.monitors.history import ShardLog, ensure_table
from engine.monitors.notify import Notifier
from engine.monitors.state import SlotOutcome
from tests.engine.monitors.monitor_fixtures import Receiver
from storage.catalog import Catalog
from storage.errors import Fenced
from storage.objectstore import ObjectStore


@pytest.fixture
def shard(tmp_path):
    store = ObjectStore(str(tmp_path / "warehouse"))
    meta = ensure_table(Catalog(store), "ns")
    log = ShardLog(store, meta, 0)
    log.claim()
    return store, meta, log


def monitor(targets: list[str], **extra) -> MonitorSpec:
    built = build_spec("m", "SELECT svc, avg(v) AS v FROM ev GROUP BY svc", window="1m", every="1m",
                       critical=10.0, notify=targets, **extra)
    return MonitorSpec.from_record({**built.to_record(), "group_columns": ["svc"], "version": 1})


def flapping(log: ShardLog, spec: MonitorSpec, slots: int) -> list[str]:
    """Commit ``slots`` slots whose groups alternate between ALERT and OK; returns the notifying keys."""
    keys = []
    for k in range(slots):
        value = 20.0 if k % 2 else 1.0
        outcome = SlotOutcome("m", 60.0 * (k + 1), {f'{{"svc":"{s}"}}': value for s in "ab"}, None, 0.0)
        keys += [t.key for t in log.apply({"m": spec}, [outcome]) if t.notify]
    return keys


def test_every_transition_is_delivered_in_order_with_its_key(shard, tmp_path):
    store, meta, log = shard
    receiver = Receiver()
    sink_file = tmp_path / "alerts.jsonl"
    try:
        keys = flapping(log, monitor([f"webhook:{receiver.url}", f"file:{sink_file}"]), 6)
        notifier = Notifier(store, "ns", meta.path, 0)
        assert notifier.step() == len(keys) == 10
        assert [k for k, _ in receiver.received] == keys
        assert all(body["key"] == key for key, body in receiver.received)
        lines = [json.loads(line) for line in sink_file.read_text().splitlines()]
        assert [line["key"] for line in lines] == keys and lines[0]["to"] == "ALERT"
        assert notifier.step() == 0  # progress is committed: nothing is sent twice by a healthy notifier
    finally:
        receiver.close()


def test_commits_folded_away_by_vacuum_are_passed_over_and_later_ones_delivered(shard):
    """The notifier reads the next commit without listing the log; a gap vacuum left is found by a listing."""
    store, meta, log = shard
    receiver = Receiver()
    try:
        spec = monitor([f"webhook:{receiver.url}"])
        flapping(log, spec, 4)
        log.log.write_checkpoint(log.state)
        for version in range(1, log.state.version + 1):  # vacuum: the commits below the checkpoint are gone
            store.delete(log.log.commit_path(version))
        notifier = Notifier(store, "ns", meta.path, 0)
        assert notifier.step() == 0 and notifier.watermark == log.state.version
        later = SlotOutcome("m", 600.0, {'{"svc":"a"}': 1.0}, None, 0.0)  # a recovers
        keys = [t.key for t in log.apply({"m": spec}, [later]) if t.notify]
        assert notifier.step() == 1 and [k for k, _ in receiver.received] == keys
    finally:
        receiver.close()


def test_failing_receiver_gets_everything_at_least_once_with_the_same_keys(shard):
    store, meta, log = shard
    receiver = Receiver(fail_every=3, stall_every=5, stall_seconds=0.6)
    try:
        keys = flapping(log, monitor([f"webhook:{receiver.url}"]), 8)
        notifier = Notifier(store, "ns", meta.path, 0)
        notifier.sinks.client.timeout = 0.3
        for _ in range(100):
            notifier.step()
            notifier.retry_at = 0.0
            if notifier.watermark == log.state.version:
                break
        assert set(receiver.acknowledged) == set(keys)
        assert notifier.stats.failures > 0 and len(receiver.received) > len(keys)  # retried, same keys
        assert {key for key, _ in receiver.received} == set(keys)
    finally:
        receiver.close()


def test_a_notifier_killed_before_committing_delivers_again_and_the_old_one_is_fenced(shard):
    store, meta, log = shard
    receiver = Receiver()
    try:
        keys = flapping(log, monitor([f"webhook:{receiver.url}"]), 4)
        crashed = Notifier(store, "ns", meta.path, 0)
        crashed.log.commit = lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed before the commit"))
        with pytest.raises(SystemExit):
            crashed.step()
        assert [k for k, _ in receiver.received] == keys
        replacement = Notifier(store, "ns", meta.path, 0)
        assert replacement.step() == len(keys)
        assert [k for k, _ in receiver.received] == keys + keys  # at least once: duplicates carry the same keys
        del crashed.log.commit
        crashed.alerting, crashed.watermark = {}, -1
        flapping_more = flapping(log, monitor([f"webhook:{receiver.url}"]), 2)
        assert flapping_more == []  # those slots were already applied: nothing new
        with pytest.raises(Fenced):
            crashed.step()
    finally:
        receiver.close()


def test_renotify_while_alerting_and_mutes_silence(shard):
    store, meta, log = shard
    receiver = Receiver()
    try:
        spec = monitor([f"webhook:{receiver.url}"], renotify="10m")
        flapping(log, spec, 2)  # OK, then ALERT for a and b
        now = [1000.0]
        notifier = Notifier(store, "ns", meta.path, 0, clock=lambda: now[0])
        notifier.step(lambda name: (), lambda name: spec.renotify)
        now[0] += 601
        notifier.step(lambda name: (mute_of(None, {"svc": "b"}),), lambda name: spec.renotify)
        assert [k for k, _ in receiver.received] == ['m/{"svc":"a"}/1', 'm/{"svc":"b"}/1', 'm/{"svc":"a"}/1/r1']
        muted = MonitorSpec.from_record({**spec.to_record(), "mutes": [mute_of(None, None).__dict__]})
        outcome = SlotOutcome("m", 600.0, {'{"svc":"a"}': 1.0}, None, 0.0)
        made = log.apply({"m": muted}, [outcome])
        assert [(t.to_state, t.muted, t.notify) for t in made] == [("OK", True, False)]
        notifier.step()
        assert len(receiver.received) == 3
    finally:
        receiver.close()
