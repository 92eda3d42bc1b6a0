"""The state machine of a monitor's groups: what one slot's values change.

Each (monitor, group) is in one of OK, WARN, ALERT, NO_DATA, PENDING and
ERROR.  :func:`apply_slot` takes a monitor's state and the outcome of one
slot (the value of every group seen in the window, or the error the query
raised) and returns the new state and the transitions, each with the next
sequence number of its group.  It is pure (unless told it may move the
state's own groups, as the state processor, which owns its parsed states,
does): the processor commits its result, and a backtest runs the very same
function over past slots.

Rules:
- severity with hysteresis: a group in ALERT stays there while its value
  still breaches ``critical_recovery`` (likewise WARN and
  ``warning_recovery``);
- ``pending``: a breach must hold that long before WARN/ALERT; meanwhile the
  group is PENDING;
- no data: a known group missing from a window (or with a NULL value) for
  ``no_data_after`` seconds goes to NO_DATA (action 'alert'), OK ('ok') or
  stays as it is ('keep'); a group unseen for 24 h is dropped;
- a query that fails puts every known group (or the whole monitor, group
  ``{}``) in ERROR until an evaluation succeeds again.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.monitors.definition import GROUP_EXPIRY, MonitorSpec

OK, WARN, ALERT, NO_DATA, PENDING, ERROR = "OK", "WARN", "ALERT", "NO_DATA", "PENDING", "ERROR"
STATES = (OK, WARN, ALERT, NO_DATA, PENDING, ERROR)
NOTIFYING = frozenset({WARN, ALERT, NO_DATA, ERROR})
WHOLE_MONITOR = "{}"


def group_key(group: dict[str, Any]) -> str:
    """The canonical text of a group (``{"service": "payments"}``), its identity in state and history."""
    return json.dumps(group, sort_keys=True, default=str, separators=(",", ":"))


@dataclass(slots=True)  # one per group of every monitor
class GroupState:
    """Where one group of one monitor stands."""

    state: str = OK
    value: float | None = None
    since: float = 0.0
    last_seen: float = 0.0
    seq: int = 0
    breach_since: float | None = None


@dataclass
class MonitorState:
    """A monitor's committed state: the last slot applied, its groups, and the slots it skipped."""

    slot: float | None = None
    version: int = 0
    evaluated_at: float | None = None
    groups: dict[str, GroupState] = field(default_factory=dict)
    skipped: int = 0
    last_skip: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "version": self.version, "evaluated_at": self.evaluated_at,
                "columns": _group_columns(self.groups), "skipped": self.skipped, "last_skip": self.last_skip}

    @classmethod
    def from_json(cls, record: dict[str, Any] | None) -> MonitorState:
        if not record:
            return cls()
        if "columns" in record:
            groups = _groups_of(record["columns"])
        else:  # written before states were kept by column
            groups = {k: GroupState(*v) for k, v in (record.get("groups") or {}).items()}
        return cls(slot=record.get("slot"), version=int(record.get("version") or 0),
                   evaluated_at=record.get("evaluated_at"), groups=groups,
                   skipped=int(record.get("skipped") or 0), last_skip=record.get("last_skip"))


# A monitor's groups are committed by column: every slot commits the state of every group of every monitor it
# applies, so the encoding decides much of what a state processor costs.  A column whose groups all agree (most
# groups are OK since the same slot, seen at this one) is one value; other numbers are packed as float64 in
# base64 (NULL as NaN: values are never NaN, see evaluate._number), which costs a twentieth of writing each
# number as JSON text.
_FLOAT_COLUMNS = ("value", "since", "last_seen", "breach_since")


def _group_columns(groups: dict[str, GroupState]) -> dict[str, Any]:
    states = groups.values()
    columns: dict[str, Any] = {"keys": list(groups),
                               "state": _uniform([g.state for g in states]),
                               "seq": _uniform([g.seq for g in states])}
    for name, column in zip(_FLOAT_COLUMNS, ([g.value for g in states], [g.since for g in states],
                                             [g.last_seen for g in states], [g.breach_since for g in states])):
        column = _uniform(column)
        columns[name] = column if not isinstance(column, list) else base64.b64encode(
            np.array(column, dtype="<f8").tobytes()).decode("ascii")
    return columns


def _groups_of(columns: dict[str, Any]) -> dict[str, GroupState]:
    keys = columns["keys"]

    def column(name: str) -> list[Any]:
        value = columns[name]
        if isinstance(value, list):
            return value
        if name in _FLOAT_COLUMNS and isinstance(value, str):
            return [None if x != x else x for x in np.frombuffer(base64.b64decode(value), "<f8").tolist()]
        return [value] * len(keys)

    return {key: GroupState(*fields) for key, *fields in zip(
        keys, column("state"), column("value"), column("since"), column("last_seen"), column("seq"),
        column("breach_since"))}


def _uniform(values: list[Any]) -> Any:
    """The one value every item of ``values`` has (None if empty), or ``values`` if they differ."""
    if not values:
        return None
    first = values[0]
    return first if values.count(first) == len(values) else values


@dataclass(frozen=True)
class SlotOutcome:
    """What evaluating one monitor at one slot gave: values by group key, or the query's error.

    Values are keyed by :func:`group_key` alone: the group itself is read
    back from its key when a transition needs it (for mutes), which keeps
    the hand-off to the state processor small.
    """

    monitor: str
    slot: float
    values: dict[str, float | None] | None = None
    error: str | None = None
    evaluated_at: float = 0.0


@dataclass(frozen=True)
class Transition:
    """A group's change of state at a slot; ``seq`` counts its group's transitions from 1."""

    monitor: str
    group: str
    seq: int
    slot: float
    from_state: str
    to_state: str
    value: float | None
    notify: bool
    muted: bool
    reason: str
    version: int

    @property
    def key(self) -> str:
        """The dedup key (monitor, group, seq), sent as the ``Idempotency-Key`` of every delivery."""
        return f"{self.monitor}/{self.group}/{self.seq}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


def _severity(spec: MonitorSpec, value: float, current: str) -> str:
    critical = spec.breaches(value, spec.critical) or (
        current == ALERT and spec.critical_recovery is not None and spec.breaches(value, spec.critical_recovery))
    if critical:
        return ALERT
    warning = spec.breaches(value, spec.warning) or (
        current in (ALERT, WARN) and spec.warning_recovery is not None and spec.breaches(value, spec.warning_recovery))
    return WARN if warning else OK


def _reason(spec: MonitorSpec, target: str, value: float | None) -> str:
    if target == ALERT:
        return f"value {value:g} {spec.comparator} critical {spec.critical:g}"
    if target == WARN:
        return f"value {value:g} {spec.comparator} warning {spec.warning:g}"
    if target == PENDING:
        return f"breach for less than pending {spec.pending:g} s (value {value:g})"
    if target == OK:
        return "recovered" if value is not None else "no data: action ok"
    return target.lower()


def apply_slot(spec: MonitorSpec, state: MonitorState, outcome: SlotOutcome,
               in_place: bool = False) -> tuple[MonitorState, list[Transition]]:
    """The monitor's state after ``outcome``, and the transitions it made (nothing if the slot is not newer).

    ``in_place``: the new state takes ``state``'s groups and changes them
    (no copy of every group at every slot); ``state`` is then stale.
    """
    slot = outcome.slot
    if state.slot is not None and slot <= state.slot:
        return state, []  # the idempotency key (monitor, slot): a slot is applied once
    groups = state.groups if in_place else {
        k: GroupState(g.state, g.value, g.since, g.last_seen, g.seq, g.breach_since) for k, g in state.groups.items()}
    transitions: list[Transition] = []

    def move(key: str, current: GroupState, target: str, value: float | None, reason: str) -> None:
        if target == current.state:
            return
        current.seq += 1
        muted = bool(spec.mutes) and spec.muted(json.loads(key), slot)
        notify = target in NOTIFYING or (target == OK and current.state in NOTIFYING)
        transitions.append(Transition(spec.name, key, current.seq, slot, current.state, target, value,
                                      notify and not muted, muted, reason, spec.version))
        current.state = target
        current.since = slot

    if outcome.error is not None:
        if not groups:
            groups[WHOLE_MONITOR] = GroupState(since=slot, last_seen=slot)
        for key, current in groups.items():
            move(key, current, ERROR, current.value, f"query failed: {outcome.error}"[:500])
    else:
        values = outcome.values or {}
        for key, value in values.items():
            if value is None:
                continue
            current = groups.setdefault(key, GroupState(since=slot, last_seen=slot))
            current.last_seen, current.value = slot, float(value)
            base = current.state if current.state in (ALERT, WARN) else OK
            target = _severity(spec, current.value, base)
            if target == OK:
                current.breach_since = None
            elif base == OK and spec.pending > 0:
                current.breach_since = slot if current.breach_since is None else current.breach_since
                if slot - current.breach_since < spec.pending:
                    target = PENDING
            if target != current.state:  # (a reason is text: made only for a move)
                move(key, current, target, current.value, _reason(spec, target, current.value))
        for key in list(groups):
            if values.get(key) is not None:
                continue
            current = groups[key]
            unseen = slot - current.last_seen
            if unseen >= GROUP_EXPIRY:
                del groups[key]
                continue
            if spec.no_data_after is None or unseen < spec.no_data_after or spec.no_data_action == "keep":
                if current.state == ERROR:  # the query works again; the group simply has no data yet
                    move(key, current, OK, None, "query succeeded again")
                continue
            current.breach_since = None
            target = NO_DATA if spec.no_data_action == "alert" else OK
            move(key, current, target, None, f"no data for {unseen:g} s")
    return MonitorState(slot=slot, version=spec.version, evaluated_at=outcome.evaluated_at, groups=groups,
                        skipped=state.skipped, last_skip=state.last_skip), transitions


def record_skip(state: MonitorState, slots: list[float], reason: str) -> MonitorState:
    """``state`` having skipped ``slots`` (never evaluated) for ``reason``; the skip is counted and kept."""
    if not slots:
        return state
    last = max(slots)
    return MonitorState(slot=max(last, state.slot or last), version=state.version, evaluated_at=state.evaluated_at,
                        groups=state.groups, skipped=state.skipped + len(slots),
                        last_skip={"slots": len(slots), "first": min(slots), "last": last, "reason": reason})
