"""A session's maintenance: its actors, and the on-demand operations it offers.

``Maintenance`` owns one :class:`CompactionActor` (started on first use) and,
when the session runs maintenance in the background, one
:class:`MaintenanceLoop`; ``stop()`` ends both.  The Session delegates
``compact``, ``vacuum``, ``alter_table`` and ``table_stats`` here.
"""

from __future__ import annotations

import uuid
from typing import Any, TextIO

import ray

from engine.maintenance.actors import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_VACUUM_INTERVAL_SECONDS,
    CompactionActor,
    MaintenanceLoop,
    MaintenanceStatus,
)
from engine.maintenance.progress import follow
from storage.catalog import Catalog, TableMeta
from storage.compaction import CompactionPolicy, CompactionReport, TableStats, table_stats
from storage.objectstore import ObjectStore
from storage.retention import apply_retention
from storage.vacuum import DEFAULT_GRACE_SECONDS, VacuumReport, vacuum

_STOP_SECONDS = 10.0


class Maintenance:
    """Compaction, retention and vacuum for one namespace of one warehouse."""

    def __init__(self, store: ObjectStore, namespace: str, *, background: bool,
                 policy: CompactionPolicy | None = None, interval: float = DEFAULT_INTERVAL_SECONDS,
                 vacuum_interval: float = DEFAULT_VACUUM_INTERVAL_SECONDS, grace: Any = DEFAULT_GRACE_SECONDS) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.namespace = namespace
        self.policy = policy or CompactionPolicy()
        self._compactor = None
        self.loop = None
        if background:
            self.loop = MaintenanceLoop.remote(store, namespace, policy=self.policy, interval=interval,
                                               vacuum_interval=vacuum_interval, grace=grace)

    @property
    def compactor(self) -> Any:
        """The compaction actor: the background loop's when it runs, so the two never race."""
        if self._compactor is None:
            if self.loop is not None:
                self._compactor = ray.get(self.loop.compactor.remote())
            else:
                self._compactor = CompactionActor.remote(self.store, self.namespace, self.policy)
        return self._compactor

    def compact(self, table: str, *, progress: bool = True, full: bool = True,
                policy: CompactionPolicy | None = None, out: TextIO | None = None) -> CompactionReport:
        """Compact ``table`` now (``full``: every small segment of every bucket, not only full tiers)."""
        self.catalog.table(self.namespace, table)  # TableNotFound here, with suggestions
        job = uuid.uuid4().hex
        ref = self.compactor.compact.remote(table, full=full, job=job, policy=policy)
        try:
            if not progress:
                return ray.get(ref)
            return follow(ref, lambda: ray.get(self.compactor.progress.remote(job)),
                          f"compacting {self.namespace}.{table}", out=out)
        finally:
            self.compactor.forget.remote(job)

    def alter_table(self, table: str, *, retention: Any = ...) -> TableMeta:
        """Change a table's retention; segments already past the new period are dropped now."""
        meta = self.catalog.alter_table(self.namespace, table, retention=retention)
        apply_retention(self.store, meta)
        return meta

    def vacuum(self, table: str | None = None, older_than: Any = DEFAULT_GRACE_SECONDS,
               orphans_older_than: Any = None) -> VacuumReport:
        """Delete files unreferenced for longer than ``older_than`` (one table, or the namespace)."""
        return vacuum(self.store, self.namespace, table, older_than=older_than,
                      orphans_older_than=orphans_older_than)

    def table_stats(self, table: str) -> TableStats:
        return table_stats(self.store, self.catalog.table(self.namespace, table), self.policy)

    def status(self) -> MaintenanceStatus | None:
        """What the background loop has done (None when it is not running)."""
        return None if self.loop is None else ray.get(self.loop.status.remote())

    def stop(self) -> None:
        """Stop the background loop (after its current round) and end the actors.

        A merge cut short leaves only an unreferenced upload, which vacuum removes.
        """
        if not ray.is_initialized():
            self.loop = self._compactor = None
            return
        if self.loop is not None:
            try:
                ray.get(self.loop.stop.remote(), timeout=_STOP_SECONDS)
            except Exception:  # a loop that will not stop in time is killed below all the same
                pass
            ray.kill(self.loop)
            self.loop = None
        if self._compactor is not None:
            ray.kill(self._compactor)
            self._compactor = None
