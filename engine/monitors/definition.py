"""What a monitor is: a saved query, its schedule, thresholds and sinks.

:class:`MonitorSpec` is the validated, immutable form of a definition; it
round-trips through the JSON record kept in the warehouse
(:mod:`storage.monitor_log`).  :func:`build_spec` turns the user's keyword
arguments into one, refusing bad input with :class:`InvalidMonitor` and a
message that names the argument or clause.  The checks that need the
warehouse (the query's table and column types) live in
:mod:`engine.monitors.compile`.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from storage.catalog import parse_duration, validate_name
from storage.errors import InvalidMonitor, InvalidName

COMPARATORS = (">", ">=", "<", "<=")
NO_DATA_ACTIONS = ("alert", "ok", "keep")
SINK_SCHEMES = ("webhook", "file")
DEFAULT_CATCH_UP = 600.0
GROUP_EXPIRY = 86_400.0
CROWD_SECONDS = 3  # a new shape's offset, among seconds equally far from the others', goes where fewest are this near


@dataclass(frozen=True)
class Mute:
    """Silences a monitor (or the groups matching ``groups``) until ``until`` (epoch seconds; None: forever)."""

    until: float | None = None
    groups: dict[str, Any] | None = None

    def covers(self, group: dict[str, Any], at: float) -> bool:
        if self.until is not None and at >= self.until:
            return False
        return not self.groups or all(str(group.get(k)) == str(v) for k, v in self.groups.items())


@dataclass(frozen=True)
class MonitorSpec:
    """A validated monitor definition; durations in seconds."""

    name: str
    query: str
    window: float
    every: float
    delay: float = 0.0
    critical: float | None = None
    warning: float | None = None
    critical_recovery: float | None = None
    warning_recovery: float | None = None
    comparator: str = ">"
    pending: float = 0.0
    no_data_after: float | None = None
    no_data_action: str = "keep"
    renotify: float | None = None
    notify: tuple[str, ...] = ()
    mutes: tuple[Mute, ...] = ()
    catch_up: float = DEFAULT_CATCH_UP
    # filled in from the warehouse when the query is checked (engine.monitors.compile)
    table: str = ""
    time_column: str = ""
    group_columns: tuple[str, ...] = ()
    value_column: str = ""
    version: int = 0
    created_at: float | None = None
    updated_at: float | None = None
    slot_offset: float | None = None  # chosen when it was defined (:func:`spread_offset`); None: :attr:`offset` hashes
    # the group columns as the query computes them, aliases left out (``service`` for ``service AS svc``);
    # empty in definitions from before it was kept: the group columns
    group_sql: tuple[str, ...] = ()

    # -- the slot grid -----------------------------------------------------------------
    @property
    def shape(self) -> str:
        """What its query reads and over which window (table, time and group columns, window, delay); its name
        until it is checked.  Monitors of one shape share a slot offset, so one query evaluates them all."""
        if not self.table:
            return self.name
        return _shape(self.table, self.time_column, self.group_sql or self.group_columns, self.window, self.delay)

    @functools.cached_property
    def offset(self) -> float:
        """Where in each period this monitor's slots fall: the offset chosen when it was defined, else a stable
        hash of its :attr:`shape`, modulo ``every``.

        Teams stamp monitors out of templates (one per host, customer or
        threshold): those reading the same rows over the same window are due
        at the same second, so one query evaluates them all (shared scans,
        rollups) instead of one query per second of the period.  Different
        shapes spread over the period (:func:`spread_offset`).
        """
        if self.slot_offset is not None:
            return self.slot_offset
        return _hashed(self.shape, self.every)

    def slot_at(self, now: float) -> float:
        """The latest slot at or before ``now``."""
        return math.floor((now - self.offset) / self.every) * self.every + self.offset

    def slots_between(self, start: float, end: float) -> list[float]:
        """The slots in ``(start, end]``, ascending."""
        slots = []
        slot = self.slot_at(end)
        while slot > start:
            slots.append(slot)
            slot -= self.every
        return slots[::-1]

    def window_of(self, slot: float) -> tuple[float, float]:
        """The event-time range ``[slot - delay - window, slot - delay)`` a slot evaluates."""
        end = slot - self.delay
        return end - self.window, end

    # -- thresholds ----------------------------------------------------------------------
    def breaches(self, value: float, threshold: float | None) -> bool:
        if threshold is None or value is None:
            return False
        return {">": value > threshold, ">=": value >= threshold,
                "<": value < threshold, "<=": value <= threshold}[self.comparator]

    def muted(self, group: dict[str, Any], at: float) -> bool:
        return any(m.covers(group, at) for m in self.mutes)

    # -- records -------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["notify"] = list(self.notify)
        record["group_columns"] = list(self.group_columns)
        record["group_sql"] = list(self.group_sql)
        record["mutes"] = [asdict(m) for m in self.mutes]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MonitorSpec:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in record.items() if k in known}
        values["notify"] = tuple(values.get("notify") or ())
        values["group_columns"] = tuple(values.get("group_columns") or ())
        values["group_sql"] = tuple(values.get("group_sql") or ())
        values["mutes"] = tuple(Mute(**m) for m in values.get("mutes") or ())
        return cls(**values)

    def with_mutes(self, mutes: tuple[Mute, ...], now: float | None = None) -> MonitorSpec:
        """This spec with ``mutes``, leaving out the ones already expired."""
        now = time.time() if now is None else now
        return replace(self, mutes=tuple(m for m in mutes if m.until is None or m.until > now))


def spread_offset(spec: MonitorSpec, others: Iterable[dict[str, Any]]) -> float:
    """The slot offset for ``spec`` (checked) among the definition records ``others``: that of a monitor of the
    same shape and period if there is one, else the second of the period farthest from every other shape's.

    Offsets hashed from shapes bunch up: 36 shapes hashed into a minute put
    four on one second and eight in five, and each brings its thousands of
    monitors at once.  Chosen apart, shapes are due evenly over the period.
    Two periods' slots meet where their offsets agree modulo the periods'
    greatest common divisor; that is the distance measured.  Among equally
    free seconds the hashed offset, or the one nearest it, is taken: the first
    monitor of a namespace falls where hashing put it.
    """
    every = max(1, int(spec.every))
    hashed = int(_hashed(spec.shape, spec.every))
    taken: dict[tuple[str, int], float] = {}  # (shape, period) -> offset
    for record in others:  # records, not specs: a namespace may hold a hundred thousand
        if record.get("name") == spec.name or not record.get("table"):
            continue
        shape = _shape(record["table"], record.get("time_column", ""), scan_groups(record), record["window"],
                       record.get("delay", 0.0))
        key = (shape, max(1, int(record["every"])))
        if key not in taken:
            offset = record.get("slot_offset")
            taken[key] = _hashed(shape, record["every"]) if offset is None else offset
    same = taken.get((spec.shape, every))
    if same is not None:
        return same
    if not taken:
        return float(hashed)
    step = max(1, every // 3600)  # at most 3,600 candidate seconds, for periods of hours and days
    candidates = np.arange(0, every, step)
    nearest = np.full(len(candidates), np.inf)
    crowd = np.zeros(len(candidates))  # how many shapes fall within CROWD_SECONDS (ties of nearest broken by it)
    for (_, period), offset in taken.items():
        common = math.gcd(every, period)
        apart = np.abs(candidates - offset) % common
        apart = np.minimum(apart, common - apart)
        nearest = np.minimum(nearest, apart)
        crowd += apart <= CROWD_SECONDS
    from_hash = np.abs(candidates - hashed)
    best = np.lexsort((np.minimum(from_hash, every - from_hash), crowd, -nearest))[0]
    return float(candidates[best])


def scan_groups(record: dict[str, Any]) -> tuple[str, ...]:
    """The group columns a definition record's scan computes: monitors aliasing them alike or not read the same."""
    return tuple(record.get("group_sql") or record.get("group_columns") or ())


def _shape(table: str, time_column: str, group_columns, window: float, delay: float) -> str:
    return f"{table}\n{time_column}\n{','.join(group_columns)}\n{float(window)}\n{float(delay)}"


def _hashed(shape: str, every: float) -> float:
    """A stable offset of ``shape`` in a period of ``every`` seconds (the one before offsets were chosen)."""
    return float(zlib.crc32(shape.encode()) % max(1, int(every)))


def duration(value: Any, argument: str, allow_zero: bool = True) -> float:
    """Seconds of ``value`` ('5m', 30, a timedelta), or InvalidMonitor naming ``argument``."""
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError):
        seconds = None
    if seconds is None or seconds < 0 or (seconds == 0 and not allow_zero) or math.isinf(seconds):
        least = "at least 0" if allow_zero else "more than 0"
        raise InvalidMonitor(
            f"{argument}={value!r} is not a usable duration; write it like '30s', '5m', '2h' or '1d' "
            f"(seconds also work), {least}"
        )
    return seconds


def _threshold(value: Any, argument: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise InvalidMonitor(f"{argument}={value!r} is not a number; give the threshold as an int or float")
    return float(value)


def check_sink(target: Any) -> str:
    """``target`` if it is a notify target Petrel can deliver to ('webhook:http://...', 'file:path')."""
    if not isinstance(target, str) or ":" not in target:
        raise InvalidMonitor(
            f"notify target {target!r} has no scheme; write 'webhook:http://host/path' or 'file:alerts.jsonl'"
        )
    scheme, rest = target.split(":", 1)
    if scheme not in SINK_SCHEMES:
        raise InvalidMonitor(
            f"notify target {target!r} has scheme {scheme!r}, which Petrel does not deliver to; "
            f"use one of {', '.join(s + ':' for s in SINK_SCHEMES)}"
        )
    if scheme == "webhook" and not rest.startswith(("http://", "https://")):
        raise InvalidMonitor(f"notify target {target!r}: a webhook needs an http:// or https:// URL after 'webhook:'")
    if scheme == "file" and not rest.strip():
        raise InvalidMonitor(f"notify target {target!r}: give a file path after 'file:'")
    return target


def _check_thresholds(comparator: str, critical: float | None, warning: float | None,
                      critical_recovery: float | None, warning_recovery: float | None) -> None:
    if critical is None and warning is None:
        raise InvalidMonitor("a monitor needs critical= or warning= (or both): the threshold its value is compared to")
    above = comparator in (">", ">=")
    side = "below" if above else "above"

    def wrong(recovery: float, threshold: float) -> bool:
        return recovery > threshold if above else recovery < threshold

    if critical is not None and warning is not None and wrong(warning, critical):
        raise InvalidMonitor(
            f"warning={warning:g} is on the wrong side of critical={critical:g}: with comparator "
            f"{comparator!r} the warning threshold must be {side} (or equal to) the critical one"
        )
    for name, recovery, threshold, label in (
        ("critical_recovery", critical_recovery, critical, "critical"),
        ("warning_recovery", warning_recovery, warning, "warning"),
    ):
        if recovery is None:
            continue
        if threshold is None:
            raise InvalidMonitor(f"{name}={recovery:g} is given without {label}=; set {label} or drop {name}")
        if wrong(recovery, threshold):
            raise InvalidMonitor(
                f"{name}={recovery:g} is on the wrong side of {label}={threshold:g}: with comparator "
                f"{comparator!r} a group recovers when its value falls back {side} the recovery threshold, so "
                f"{name} must be {side} (or equal to) {label}"
            )


def build_spec(
    name: str,
    query: str,
    *,
    window: Any,
    every: Any,
    delay: Any = 0,
    critical: float | None = None,
    warning: float | None = None,
    critical_recovery: float | None = None,
    warning_recovery: float | None = None,
    comparator: str = ">",
    pending: Any = 0,
    no_data: dict[str, Any] | None = None,
    renotify: Any = None,
    notify: list[str] | tuple[str, ...] | str | None = None,
    catch_up: Any = DEFAULT_CATCH_UP,
) -> MonitorSpec:
    """A :class:`MonitorSpec` from user arguments, or InvalidMonitor naming what is wrong."""
    try:
        validate_name(name, "monitor")
    except InvalidName as exc:
        raise InvalidMonitor(str(exc)) from None
    if name.startswith("_"):
        raise InvalidMonitor(f"monitor name {name!r} starts with '_', which Petrel keeps for its own records")
    if not isinstance(query, str) or not query.strip():
        raise InvalidMonitor("query= is empty; give a SELECT with the group columns first and the value last")
    if comparator not in COMPARATORS:
        raise InvalidMonitor(f"comparator={comparator!r} is not one of {', '.join(COMPARATORS)}")
    thresholds = {k: _threshold(v, k) for k, v in (
        ("critical", critical), ("warning", warning),
        ("critical_recovery", critical_recovery), ("warning_recovery", warning_recovery))}
    _check_thresholds(comparator, **thresholds)
    no_data_after, no_data_action = None, "keep"
    if no_data is not None:
        if not isinstance(no_data, dict) or set(no_data) - {"after", "action"} or "after" not in no_data:
            raise InvalidMonitor(
                f"no_data={no_data!r} is not understood; write no_data={{'after': '10m', 'action': 'alert'}} "
                f"(action: {', '.join(NO_DATA_ACTIONS)})"
            )
        no_data_after = duration(no_data["after"], "no_data['after']", allow_zero=False)
        no_data_action = no_data.get("action", "alert")
        if no_data_action not in NO_DATA_ACTIONS:
            raise InvalidMonitor(
                f"no_data['action']={no_data_action!r} is not one of {', '.join(NO_DATA_ACTIONS)}"
            )
    if isinstance(notify, str):
        notify = [notify]
    spec = MonitorSpec(
        name=name,
        query=query.strip().rstrip(";"),
        window=duration(window, "window", allow_zero=False),
        every=duration(every, "every", allow_zero=False),
        delay=duration(delay, "delay"),
        comparator=comparator,
        pending=duration(pending, "pending"),
        no_data_after=no_data_after,
        no_data_action=no_data_action,
        renotify=duration(renotify, "renotify", allow_zero=False) if renotify is not None else None,
        notify=tuple(check_sink(t) for t in (notify or ())),
        catch_up=duration(catch_up, "catch_up"),
        **thresholds,
    )
    if spec.every < 1:
        raise InvalidMonitor(f"every={every!r} is shorter than one second; slots are whole seconds apart")
    return spec


def mute_of(until: Any, groups: dict[str, Any] | None, now: float | None = None) -> Mute:
    """A mute from user arguments: ``until`` a duration from now ('2h'), an epoch time, a datetime or None."""
    now = time.time() if now is None else now
    if groups is not None and not isinstance(groups, dict):
        raise InvalidMonitor(f"groups={groups!r} is not a mapping of group column to value, like {{'service': 'payments'}}")
    if until is None:
        return Mute(None, groups)
    if hasattr(until, "timestamp"):
        return Mute(float(until.timestamp()), groups)
    return Mute(now + duration(until, "until", allow_zero=False), groups)


__all__ = ["MonitorSpec", "Mute", "build_spec", "mute_of", "duration", "check_sink", "GROUP_EXPIRY"]
