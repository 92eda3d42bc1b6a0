"""Maintenance actors: compaction, and the loop that keeps tables in shape.

They run beside the ingest actors, never inside them: compaction commits with
``epoch=None`` (never fenced, never fencing an owner) and rebases over the
owners' appends, so ingestion is not blocked while a bucket is merged.  Both
actors take no CPU slot, so they never keep ingestion or queries from being
scheduled.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from storage.catalog import Catalog
from storage.compaction import CompactionPolicy, CompactionProgress, CompactionReport, compact_table
from storage.objectstore import ObjectStore
from storage.retention import RetentionReport, apply_retention
from storage.vacuum import DEFAULT_GRACE_SECONDS, VacuumReport, vacuum

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 60.0
DEFAULT_VACUUM_INTERVAL_SECONDS = 900.0


@ray.remote(num_cpus=0, max_concurrency=8)
class CompactionActor:
    """Compacts the tables of one namespace on request; one run per table at a time."""

    def __init__(self, store: ObjectStore, namespace: str, policy: CompactionPolicy | None = None) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.namespace = namespace
        self.policy = policy or CompactionPolicy()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._jobs: dict[str, CompactionProgress] = {}
        self._hold = threading.Event()  # never set: a paused merge waits here until the actor dies

    def compact(self, table: str, *, full: bool = False, job: str | None = None,
                policy: CompactionPolicy | None = None, pause_before_commit: bool = False) -> CompactionReport:
        """Compact ``table`` (``full``: merge every small segment now, not only full size tiers).

        ``pause_before_commit`` is for fault injection: the actor writes its merged
        segments, reports stage ``"written"`` and never commits them.
        """
        progress = CompactionProgress()
        if job is not None:
            self._jobs[job] = progress
        with self._guard:
            lock = self._locks.setdefault(table, threading.Lock())
        with lock:
            meta = self.catalog.table(self.namespace, table)
            before_commit = None
            if pause_before_commit:
                def before_commit(task, outputs):
                    progress.written = [o.path for o in outputs]
                    progress.stage = "written"
                    self._hold.wait()
            return compact_table(self.store, meta, policy or self.policy, full=full, progress=progress,
                                 before_commit=before_commit)

    def progress(self, job: str) -> dict[str, Any] | None:
        """The counters of job ``job`` (None until it has started)."""
        progress = self._jobs.get(job)
        if progress is None:
            return None
        return asdict(progress)

    def forget(self, job: str) -> None:
        self._jobs.pop(job, None)


@dataclass
class MaintenanceStatus:
    """What the background loop has done so far, and its last error per table."""

    ticks: int = 0
    compaction: CompactionReport = field(default_factory=CompactionReport)
    retention: RetentionReport = field(default_factory=RetentionReport)
    vacuum: VacuumReport = field(default_factory=VacuumReport)
    errors: dict[str, str] = field(default_factory=dict)
    last_tick: float | None = None


@ray.remote(num_cpus=0, max_concurrency=2)
class MaintenanceLoop:
    """Every ``interval`` seconds: compaction, then retention, of each table in the
    namespace; every ``vacuum_interval`` seconds, vacuum after the grace period."""

    def __init__(self, store: ObjectStore, namespace: str, *, policy: CompactionPolicy | None = None,
                 interval: float = DEFAULT_INTERVAL_SECONDS,
                 vacuum_interval: float = DEFAULT_VACUUM_INTERVAL_SECONDS,
                 grace: Any = DEFAULT_GRACE_SECONDS) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.namespace = namespace
        self.policy = policy
        self._compactor = None
        self._compactor_lock = threading.Lock()
        self.interval = interval
        self.vacuum_interval = vacuum_interval
        self.grace = grace
        self.status_ = MaintenanceStatus()
        self._last_vacuum = time.monotonic()
        self._stop = threading.Event()
        self._ticking = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="petrel-maintenance", daemon=True)
        self._thread.start()

    def compactor(self) -> Any:
        """The compaction actor this loop uses (started on first need; it shares the loop's fate)."""
        with self._compactor_lock:
            if self._compactor is None:
                self._compactor = CompactionActor.remote(self.store, self.namespace, self.policy)
            return self._compactor

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self, vacuum_now: bool = False) -> MaintenanceStatus:
        """One round over every table of the namespace (also callable on demand)."""
        with self._ticking:
            return self._tick(vacuum_now)

    def _tick(self, vacuum_now: bool) -> MaintenanceStatus:
        status = self.status_
        for table in self.catalog.tables(self.namespace):
            if self._stop.is_set():
                break
            try:
                status.compaction += ray.get(self.compactor().compact.remote(table))
                status.retention += apply_retention(self.store, self.catalog.table(self.namespace, table))
                status.errors.pop(table, None)
            except Exception as exc:  # keep going with the other tables; the error is reported
                log.warning("maintenance of %s.%s failed: %s", self.namespace, table, exc)
                status.errors[table] = f"{type(exc).__name__}: {exc}"
        if vacuum_now or time.monotonic() - self._last_vacuum >= self.vacuum_interval:
            self._last_vacuum = time.monotonic()
            try:
                status.vacuum += vacuum(self.store, self.namespace, older_than=self.grace)
            except Exception as exc:
                log.warning("vacuum of namespace %s failed: %s", self.namespace, exc)
                status.errors["<vacuum>"] = f"{type(exc).__name__}: {exc}"
        status.ticks += 1
        status.last_tick = time.time()
        return status

    def status(self) -> MaintenanceStatus:
        return self.status_

    def stop(self) -> None:
        """Finish the current round and stop; the actor can then be killed."""
        self._stop.set()
        self._thread.join(timeout=5.0)
