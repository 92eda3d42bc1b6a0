"""The monitor methods of a session (mixed into :class:`engine.session.Session`).

Everything here is reachable as ``db.create_monitor(...)``, ``db.monitors()``
and so on; the CLI and the HTTP service call the same methods.  A session
provides ``store``, ``catalog``, ``namespace`` and ``sql``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from typing import Any

import pyarrow as pa

from engine.monitors.compile import check_query
from engine.monitors.definition import DEFAULT_CATCH_UP, MonitorSpec, build_spec, mute_of, spread_offset
from engine.monitors.history import DEFAULT_SHARDS, TRANSITIONS_TABLE, ShardLog, ensure_table, shard_of
from storage.errors import InvalidMonitor, TableNotFound
from storage.monitor_log import MonitorLog

STATE_SCHEMA = pa.schema([
    ("group", pa.string()),
    ("state", pa.string()),
    ("value", pa.float64()),
    ("since", pa.timestamp("us", tz="UTC")),
    ("last_evaluated", pa.timestamp("us", tz="UTC")),
    ("seq", pa.int64()),
])


def spec_arguments(spec: MonitorSpec) -> dict[str, Any]:
    """The keyword arguments of ``create_monitor`` that define ``spec`` (for updates)."""
    return dict(
        query=spec.query, window=spec.window, every=spec.every, delay=spec.delay,
        critical=spec.critical, warning=spec.warning, critical_recovery=spec.critical_recovery,
        warning_recovery=spec.warning_recovery, comparator=spec.comparator, pending=spec.pending,
        no_data=None if spec.no_data_after is None else {"after": spec.no_data_after, "action": spec.no_data_action},
        renotify=spec.renotify, notify=list(spec.notify), catch_up=spec.catch_up,
    )


def _seconds(value: Any, argument: str) -> float:
    """Epoch seconds of a datetime, ISO text or number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidMonitor(f"{argument}={value!r} is not an ISO time like '2026-11-02T14:00:00'") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    raise InvalidMonitor(f"{argument}={value!r} is not a time; give a datetime, ISO text or epoch seconds")


def _absolute_files(spec: MonitorSpec) -> MonitorSpec:
    """File sinks with absolute paths: actors run in other working directories."""
    targets = tuple(f"file:{os.path.abspath(t[5:])}" if t.startswith("file:") else t for t in spec.notify)
    return replace(spec, notify=targets)


class MonitorMethods:
    """Session methods for monitors: definitions, state, history, backtests and the service."""

    store: Any
    catalog: Any
    namespace: str

    @property
    def monitor_log(self) -> MonitorLog:
        log = self.__dict__.get("_monitor_log")
        if log is None:
            log = self.__dict__["_monitor_log"] = MonitorLog(self.store, self.namespace)
        return log

    def _checked(self, spec: MonitorSpec) -> MonitorSpec:
        def table_meta(name: str) -> Any:
            if name.startswith("_monitor"):
                raise TableNotFound(f"table {name} is monitor history; a monitor watches event tables")
            return self.catalog.table(self.namespace, name)

        return _absolute_files(check_query(spec, table_meta, self.sql))

    # -- definitions -------------------------------------------------------------------------
    def create_monitor(
        self,
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
        notify: list[str] | str | None = None,
        catch_up: Any = DEFAULT_CATCH_UP,
    ) -> MonitorSpec:
        """Define a monitor: ``query`` (group columns first, the value last) over ``[slot - delay - window, slot - delay)``.

        Refused with InvalidMonitor (naming the argument or clause) when it
        cannot work; MonitorExists if the name is taken.
        """
        spec = self._checked(build_spec(
            name, query, window=window, every=every, delay=delay, critical=critical, warning=warning,
            critical_recovery=critical_recovery, warning_recovery=warning_recovery, comparator=comparator,
            pending=pending, no_data=no_data, renotify=renotify, notify=notify, catch_up=catch_up))
        ensure_table(self.catalog, self.namespace)
        spec = replace(spec, slot_offset=spread_offset(spec, self.monitor_log.definitions().values()))
        return MonitorSpec.from_record(self.monitor_log.create(name, spec.to_record()))

    def monitors(self) -> list[MonitorSpec]:
        """Every monitor of the namespace, by name."""
        return [MonitorSpec.from_record(r) for _, r in sorted(self.monitor_log.definitions().items())]

    def monitor(self, name: str) -> MonitorSpec:
        """One monitor's current definition; MonitorNotFound if there is none."""
        return MonitorSpec.from_record(self.monitor_log.get(name))

    def update_monitor(self, name: str, **changes: Any) -> MonitorSpec:
        """Change some of a monitor's arguments (same names as create_monitor); checked like a new one."""
        current = self.monitor(name)
        arguments = spec_arguments(current)
        unknown = set(changes) - set(arguments)
        if unknown:
            raise InvalidMonitor(f"update_monitor got unknown argument(s) {', '.join(sorted(unknown))}; "
                                 f"change any of {', '.join(arguments)}")
        arguments.update(changes)
        query = arguments.pop("query")
        spec = self._checked(build_spec(name, query, **arguments))
        same = spec.shape == current.shape and spec.every == current.every  # its slots stay where they were
        spec = replace(spec, slot_offset=current.offset if same else spread_offset(
            spec, self.monitor_log.definitions().values()))
        record = self.monitor_log.update(
            name, lambda old: {**spec.to_record(), "mutes": old.get("mutes") or []})
        return MonitorSpec.from_record(record)

    def drop_monitor(self, name: str) -> None:
        """Remove a monitor; its transitions stay queryable in ``_monitor_transitions``."""
        self.monitor_log.drop(name)

    def mute_monitor(self, name: str, until: Any = None, groups: dict[str, Any] | None = None) -> MonitorSpec:
        """Stop notifying (the monitor still evaluates and transitions) until ``until`` ('2h', a datetime; None: until unmuted), for all groups or those matching ``groups``."""
        mute = mute_of(until, groups)

        def change(record: dict[str, Any]) -> dict[str, Any]:
            spec = MonitorSpec.from_record(record)
            return spec.with_mutes(spec.mutes + (mute,)).to_record()

        return MonitorSpec.from_record(self.monitor_log.update(name, change))

    def unmute_monitor(self, name: str, groups: dict[str, Any] | None = None) -> MonitorSpec:
        """Lift the mutes of a monitor (only those for exactly ``groups``, if given)."""

        def change(record: dict[str, Any]) -> dict[str, Any]:
            spec = MonitorSpec.from_record(record)
            kept = tuple(m for m in spec.mutes if groups is not None and (m.groups or None) != groups)
            return spec.with_mutes(kept).to_record()

        return MonitorSpec.from_record(self.monitor_log.update(name, change))

    # -- state and history --------------------------------------------------------------------
    def monitor_state(self, name: str) -> pa.Table:
        """Where each group of a monitor stands: group, state, value, since, last_evaluated, seq."""
        self.monitor(name)
        try:
            meta = self.catalog.table(self.namespace, TRANSITIONS_TABLE)
        except TableNotFound:
            return STATE_SCHEMA.empty_table()
        shard = ShardLog(self.store, meta, shard_of(name, meta.partitions))
        shard.load()
        state = shard.monitor_state(name)
        rows = [(key, g.state, g.value, int(g.since * 1e6), int((state.slot or g.last_seen) * 1e6), g.seq)
                for key, g in sorted(state.groups.items())]
        return pa.Table.from_pylist([dict(zip(STATE_SCHEMA.names, row)) for row in rows], schema=STATE_SCHEMA)

    def backtest_monitor(self, spec_or_name: MonitorSpec | str | dict[str, Any], start: Any, end: Any) -> pa.Table:
        """The transitions a monitor would have made over ``[start, end)`` of stored data (nothing is committed)."""
        from engine.monitors.backtest import backtest

        if isinstance(spec_or_name, str):
            spec = self.monitor(spec_or_name)
        elif isinstance(spec_or_name, dict):
            arguments = dict(spec_or_name)
            name, query = arguments.pop("name", "backtest"), arguments.pop("query", None)
            spec = self._checked(build_spec(name, query, **arguments))
        else:
            spec = spec_or_name
        return backtest(self.store, self.namespace, spec, _seconds(start, "start"), _seconds(end, "end"))

    def run_monitors(self, duration: float | None = None, shards: int | None = None, **options: Any) -> dict[str, Any]:
        """Run the monitor service in the foreground (until ``duration`` seconds pass or Ctrl-C); returns its stats.

        ``shards`` (schedulers, each with its state processor and notifier)
        is fixed when the namespace's monitor history is created, by the
        first ``create_monitor`` (one shard) or ``run_monitors``; asking for
        another number later is refused rather than ignored.
        """
        from engine.monitors.service import MonitorService

        meta = ensure_table(self.catalog, self.namespace, shards or DEFAULT_SHARDS)
        if shards is not None and meta.partitions != shards:
            raise InvalidMonitor(
                f"shards={shards}: the monitor history of namespace {self.namespace!r} was created with "
                f"{meta.partitions} shard(s), and that number is fixed; run with shards={meta.partitions} (or "
                "without shards), or, in a new namespace, call run_monitors(shards=...) before defining any monitor"
            )
        service = MonitorService(self.store, self.namespace, meta, **options)
        return service.run(duration)
