"""Monitor definitions of a namespace, versioned in the warehouse.

The definitions live in one commit log, ``<namespace>/_monitors/_log/0/``,
written with the same put-if-absent protocol as a table partition (it *is* a
:class:`~storage.log.PartitionLog` whose ``offsets`` map a monitor's name to
its current definition record, or to ``None`` once dropped).  Every change
(create, update, mute, drop) is one new version; a writer that loses the race
for a version reloads, checks its precondition again on the newer state and
retries, so two sessions can never both create the same monitor, and every
session and node reads the same definitions.  Checkpoints every
``CHECKPOINT_INTERVAL`` versions keep opening the log cheap.

Records are plain JSON dicts; what they mean is the engine's business.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from storage.errors import CommitConflict, MonitorExists, MonitorNotFound
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore

MONITORS_FOLDER = "_monitors"
MAX_ATTEMPTS = 100


class MonitorLog:
    """Reads and changes the monitor definitions of one namespace."""

    def __init__(self, store: ObjectStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self.log = PartitionLog(store, f"{namespace}/{MONITORS_FOLDER}", 0)
        self._state: PartitionState | None = None

    def state(self, refresh: bool = True) -> PartitionState:
        if self._state is None or refresh:
            self._state = self.log.load()
        return self._state

    def version(self) -> int:
        """The latest version of the definitions (-1: none ever written)."""
        commits, checkpoints = self.log.versions()
        return max(commits[-1] if commits else -1, checkpoints[-1] if checkpoints else -1)

    def definitions(self, refresh: bool = True) -> dict[str, dict[str, Any]]:
        """Every live monitor's definition record, by name."""
        return {name: record for name, record in self.state(refresh).offsets.items() if record is not None}

    def get(self, name: str) -> dict[str, Any]:
        record = self.state().offsets.get(name)
        if record is None:
            raise MonitorNotFound(self._not_found(name))
        return record

    def create(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """Add monitor ``name``; MonitorExists if it is already defined."""

        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is not None:
                raise MonitorExists(
                    f"monitor {name!r} already exists in namespace {self.namespace}; "
                    "update it with update_monitor or drop it first"
                )
            return {**record, "version": 1, "created_at": time.time(), "updated_at": time.time()}

        return self._change(name, change)

    def create_many(self, records: dict[str, dict[str, Any]]) -> None:
        """Add many monitors in one version (a bulk import); MonitorExists if any name is taken."""
        state = self.state()
        for _ in range(MAX_ATTEMPTS):
            taken = [n for n in records if state.offsets.get(n) is not None]
            if taken:
                raise MonitorExists(f"monitor(s) {', '.join(taken[:5])} already exist in namespace {self.namespace}")
            now = time.time()
            offsets = {n: {**r, "version": 1, "created_at": now, "updated_at": now} for n, r in records.items()}
            try:
                self._state = self.log.commit(state, epoch=None, offsets=offsets, kind="monitor", max_attempts=1)
                return
            except CommitConflict:
                state = self.state()
        raise CommitConflict(f"gave up after {MAX_ATTEMPTS} conflicting changes to the definitions; retry")

    def update(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Replace monitor ``name``'s record with ``change(record)``; MonitorNotFound if absent."""

        def apply(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                raise MonitorNotFound(self._not_found(name))
            new = change(dict(current))
            return {**new, "version": int(current.get("version", 0)) + 1,
                    "created_at": current.get("created_at"), "updated_at": time.time()}

        return self._change(name, apply)

    def drop(self, name: str) -> None:
        """Remove monitor ``name``; its history stays in ``_monitor_transitions``."""

        def apply(current: dict[str, Any] | None) -> None:
            if current is None:
                raise MonitorNotFound(self._not_found(name))
            return None

        self._change(name, apply)

    def _change(self, name: str, change: Callable[[dict[str, Any] | None], Any]) -> Any:
        state = self.state()
        for _ in range(MAX_ATTEMPTS):
            new = change(state.offsets.get(name))
            try:
                self._state = self.log.commit(state, epoch=None, offsets={name: new}, kind="monitor", max_attempts=1)
                return new
            except CommitConflict:  # another session changed the definitions: check again on the newer state
                state = self.state()
        raise CommitConflict(
            f"monitor {name!r}: gave up after {MAX_ATTEMPTS} conflicting changes to the definitions; retry"
        )

    def _not_found(self, name: str) -> str:
        known = sorted(self.definitions(refresh=False))
        hint = f"; monitors: {', '.join(known[:10])}" if known else "; the namespace has no monitors"
        return f"monitor {name!r} does not exist in namespace {self.namespace}{hint}"
