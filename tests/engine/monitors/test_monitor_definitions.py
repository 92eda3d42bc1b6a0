"""Monitor definitions without Ray: validation messages, the slot grid, the versioned log, the state machine."""

from __future__ import annotations

import json

import pytest

from engine.monitors.compile import shared_sql, windowed_sql
from engine.monitors.definition import MonitorSpec, build_spec, mute_of, spread_offset
from engine.monitors.service import plan_slots
from engine.monitors.state import (
    ALERT, ERROR, NO_DATA, OK, PENDING, WARN, GroupState, MonitorState, SlotOutcome, apply_slot,
)
from storage.errors import InvalidMonitor, MonitorExists, MonitorNotFound
from storage.monitor_log import MonitorLog
from storage.objectstore import ObjectStore

QUERY = "SELECT svc, avg(latency) AS v FROM ev GROUP BY svc"


def spec(**overrides) -> MonitorSpec:
    arguments = dict(window="5m", every="1m", critical=10.0)
    arguments.update(overrides)
    built = build_spec(arguments.pop("name", "m"), arguments.pop("query", QUERY), **arguments)
    return MonitorSpec.from_record({**built.to_record(), "table": "ev", "time_column": "timestamp",
                                    "group_columns": ["svc"], "value_column": "v"})


@pytest.mark.parametrize("overrides, words", [
    (dict(window="5 parsecs"), "window='5 parsecs'"),
    (dict(every=0), "every=0"),
    (dict(delay=-3), "delay=-3"),
    (dict(critical=None), "critical= or warning="),
    (dict(critical=5.0, warning=7.0), "warning=7 is on the wrong side of critical=5"),
    (dict(critical=5.0, critical_recovery=6.0), "critical_recovery=6 is on the wrong side"),
    (dict(comparator="<", critical=5.0, critical_recovery=4.0), "must be above"),
    (dict(warning_recovery=1.0), "warning_recovery=1 is given without warning="),
    (dict(notify=["sms:+4412345"]), "scheme 'sms'"),
    (dict(notify=["webhook:ftp://x"]), "http:// or https://"),
    (dict(comparator="=="), "comparator='=='"),
    (dict(no_data={"after": "10m", "action": "panic"}), "no_data['action']='panic'"),
    (dict(no_data={"wait": "10m"}), "no_data="),
    (dict(name="bad name"), "monitor name 'bad name'"),
    (dict(critical="high"), "critical='high' is not a number"),
])
def test_bad_definitions_are_refused_naming_the_argument(overrides, words):
    with pytest.raises(InvalidMonitor) as refused:
        spec(**overrides)
    assert words in str(refused.value)


def test_slot_grid_spreads_monitors_and_evaluates_before_the_delay():
    monitor = spec(every="1m", delay="30s", window="5m")
    assert 0 <= monitor.offset < 60 and monitor.offset == spec(every="1m", delay="30s").offset  # stable
    # monitors reading the same rows over the same window are due together (one query); other shapes spread
    assert len({spec(name=f"m{i}", critical=float(i)).offset for i in range(50)}) == 1
    assert len({spec(window=f"{i}m").offset for i in range(1, 51)}) > 20
    assert len({build_spec(f"m{i}", QUERY, window="5m", every="1m", critical=1.0).offset for i in range(50)}) > 20  # unchecked
    slot = monitor.slot_at(1_800_000_123.5)
    assert (slot - monitor.offset) % 60 == 0 and slot <= 1_800_000_123.5 < slot + 60
    assert monitor.window_of(slot) == (slot - 330, slot - 30)
    assert monitor.slots_between(slot - 180, slot) == [slot - 120, slot - 60, slot]


def test_shapes_defined_one_after_another_get_offsets_spread_over_the_period_and_keep_them():
    """Hashed offsets bunch up (here up to 4 shapes on one second); chosen at definition, shapes spread evenly, a
    monitor of a known shape takes that shape's offset, and a stored offset is what the slot grid uses."""
    from dataclasses import replace

    shapes = [spec(name=f"s{i}", window=f"{i + 1}m", delay=f"{i % 3}s") for i in range(36)]
    hashed = [int(s.offset) for s in shapes]
    assert max(hashed.count(o) for o in hashed) >= 2  # what hashing alone does
    defined: list[MonitorSpec] = []
    for shape in shapes:
        defined.append(replace(shape, slot_offset=spread_offset(shape, [d.to_record() for d in defined])))
    offsets = sorted(int(d.offset) for d in defined)
    assert len(set(offsets)) == 36  # one shape per second at most
    assert max(sum(1 for o in offsets if (o - start) % 60 < 5) for start in range(60)) <= 4  # none crowded
    assert defined[0].offset == shapes[0].offset  # the first falls where hashing put it
    records = [d.to_record() for d in defined]
    twin = spec(name="twin", window="7m", delay="0s", critical=99.0)  # the shape of s6
    assert spread_offset(twin, records) == defined[6].offset
    stored = MonitorSpec.from_record(records[5])
    assert stored.offset == defined[5].offset and (stored.slot_at(1_800_000_000.0) - stored.offset) % 60 == 0
    # a period of a day against minute shapes: its seconds meet theirs modulo 60
    daily = spread_offset(spec(name="daily", window="1h", every="1d"), records)
    assert 0 <= daily < 86_400 and int(daily) % 60 not in offsets


def test_missed_slots_are_caught_up_within_the_bound_and_older_ones_skipped_with_the_reason():
    monitor = spec(every="1m", catch_up="10m")
    now = 1_800_003_600.0
    last = monitor.slot_at(now) - 30 * 60
    due, skipped, reason = plan_slots(monitor, last, now, started=now - 1)
    assert len(due) == 10 and all(now - s <= 600 for s in due)
    assert len(skipped) == 20 and all(now - s > 600 for s in skipped)
    assert "not running" in reason
    _, _, busy = plan_slots(monitor, last, now, started=now - 3600)
    assert "busy" in busy
    assert plan_slots(monitor, None, now, started=now) == ([monitor.slot_at(now)], [], "")


def test_definitions_are_versioned_and_shared_between_sessions():
    root = "memory://monitor-log-test"
    one, two = MonitorLog(ObjectStore(root), "ns"), MonitorLog(ObjectStore(root), "ns")
    created = one.create("m", spec().to_record())
    assert created["version"] == 1
    with pytest.raises(MonitorExists):
        two.create("m", spec().to_record())
    updated = two.update("m", lambda r: {**r, "critical": 20.0})
    assert updated["version"] == 2 and one.get("m")["critical"] == 20.0
    one.drop("m")
    with pytest.raises(MonitorNotFound, match="does not exist"):
        two.get("m")
    assert two.definitions() == {}


def outcome(slot: float, value: float | None = None, error: str | None = None, svc: str = "a") -> SlotOutcome:
    values = None if error else ({} if value is None else {f'{{"svc":"{svc}"}}': value})
    return SlotOutcome("m", slot, values, error, slot)


def run(monitor: MonitorSpec, steps: list[SlotOutcome]) -> list[tuple[str, str, int]]:
    state, seen = MonitorState(), []
    for step in steps:
        state, transitions = apply_slot(monitor, state, step)
        seen += [(t.from_state, t.to_state, t.seq) for t in transitions]
    return seen


def test_hysteresis_keeps_an_alert_until_the_recovery_threshold():
    monitor = spec(critical=10.0, critical_recovery=8.0, warning=5.0, warning_recovery=4.0)
    values = [1, 11, 9, 8.5, 7, 4.5, 3]
    assert run(monitor, [outcome(60.0 * i, v) for i, v in enumerate(values)]) == [
        (OK, ALERT, 1), (ALERT, WARN, 2), (WARN, OK, 3)]


def test_pending_holds_a_breach_before_alerting():
    monitor = spec(critical=10.0, pending="2m")
    assert run(monitor, [outcome(60.0 * i, v) for i, v in enumerate([1, 20, 20, 20, 1])]) == [
        (OK, PENDING, 1), (PENDING, ALERT, 2), (ALERT, OK, 3)]
    assert run(monitor, [outcome(60.0 * i, v) for i, v in enumerate([1, 20, 1, 20])]) == [
        (OK, PENDING, 1), (PENDING, OK, 2), (OK, PENDING, 3)]


def test_no_data_error_and_expiry():
    monitor = spec(no_data={"after": "3m", "action": "alert"})
    steps = [outcome(0, 1.0), outcome(60, None), outcome(120, None), outcome(180, None), outcome(240, 2.0),
             outcome(300, error="boom"), outcome(360, 2.0)]
    assert run(monitor, steps) == [(OK, NO_DATA, 1), (NO_DATA, OK, 2), (OK, ERROR, 3), (ERROR, OK, 4)]
    state, _ = apply_slot(monitor, MonitorState(), outcome(0, 1.0))
    state, _ = apply_slot(spec(), state, outcome(86_400.0, 1.0, svc="b"))
    assert list(state.groups) == ['{"svc":"b"}']  # unseen for 24 h: dropped


def test_states_read_back_as_committed_whatever_their_groups_hold():
    """States are committed by column (uniform columns as one value, numbers packed): reading one back gives the
    same groups, and a state machine fed read-back states moves as one that kept them."""
    monitor = spec(critical=10.0, pending="2m", no_data={"after": "2m", "action": "alert"})
    rows = [{"a": 1.0, "b": 20.0, "c": 3.0}, {"a": 20.0, "b": 20.0}, {"a": 20.0, "b": 1.0}, {"a": 0.5},
            {}, {"a": 2.0 ** 0.5, "c": -1e300}]
    steps = [SlotOutcome("m", 60.0 * (i + 1), {f'{{"svc":"{g}"}}': v for g, v in row.items()}, None, 0.0)
             for i, row in enumerate(rows)]
    kept = read_back = MonitorState()
    for step in steps:
        kept, made = apply_slot(monitor, kept, step)
        read_back, again = apply_slot(monitor, MonitorState.from_json(json.loads(json.dumps(read_back.to_json()))),
                                      step)
        assert made == again and read_back == kept
    assert {g.state for g in kept.groups.values()} == {OK, NO_DATA}
    older = {"slot": 60.0, "version": 1, "groups": {'{"svc":"a"}': ["ALERT", 12.5, 0.0, 60.0, 1, None]}}
    assert MonitorState.from_json(older).groups == {'{"svc":"a"}': GroupState(ALERT, 12.5, 0.0, 60.0, 1, None)}


def test_a_slot_is_applied_once_and_muted_groups_do_not_notify():
    monitor = spec(critical=10.0)
    state, made = apply_slot(monitor, MonitorState(), outcome(60, 20.0))
    again, twice = apply_slot(monitor, state, outcome(60, 1.0))
    assert made and not twice and again is state
    muted = MonitorSpec.from_record({**monitor.to_record(), "mutes": [mute_of("1h", {"svc": "a"}, now=0).__dict__]})
    _, quiet = apply_slot(muted, MonitorState(), outcome(60, 20.0))
    assert quiet[0].to_state == ALERT and quiet[0].muted and not quiet[0].notify


def test_shared_sql_turns_each_where_into_aggregate_filters():
    one = spec(name="a", query="SELECT svc, count(*) FILTER (WHERE status >= 500) * 100.0 / count(*) AS e "
                                "FROM ev GROUP BY svc")
    two = spec(name="b", query="SELECT svc, avg(latency) AS v FROM ev WHERE note = 'x' GROUP BY svc")
    text = shared_sql([one, two], 0.0, 60.0)
    assert "FILTER" not in text.upper()
    assert "COUNT_IF(status >= 500)" in text.upper().replace('"', "") or "COUNT_IF" in text.upper()
    assert "CASE WHEN note = 'x' THEN latency END" in text
    assert "WHERE" in windowed_sql(one, 0.0, 60.0) and "FILTER" not in windowed_sql(one, 0.0, 60.0).upper()
