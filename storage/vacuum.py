"""Vacuum: deferred deletion of everything no snapshot can still read.

Removed segments, uploads no commit refers to (a crashed or fenced writer's),
commit files folded into a checkpoint, and dropped tables are deleted only
once they have been unreferenced for longer than the grace period, so a query
holding an older snapshot never loses a file under it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from storage.catalog import Catalog, TableMeta, parse_duration
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.snapshot import load_partitions

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass
class VacuumReport:
    """What one vacuum deleted."""

    segments: int = 0
    orphans: int = 0
    log_files: int = 0
    tables: int = 0
    bytes: int = 0

    def __add__(self, other: VacuumReport) -> VacuumReport:
        return VacuumReport(*(getattr(self, f) + getattr(other, f) for f in ("segments", "orphans", "log_files", "tables", "bytes")))


def vacuum_table(store: ObjectStore, meta: TableMeta, older_than: Any = DEFAULT_GRACE_SECONDS,
                 now: float | None = None) -> VacuumReport:
    """Delete the table's files that have been unreferenced for longer than ``older_than``."""
    cutoff = (now if now is not None else time.time()) - parse_duration(older_than)
    report = VacuumReport()
    # List before reading the logs: a file uploaded after this listing is not
    # considered, and one listed but committed since is seen as live below.
    files = store.list(f"{meta.path}/data", recursive=True)
    states = load_partitions(store, meta)
    live = {f"{meta.path}/{s.path}" for st in states for s in st.segments.values()}
    removed_at = {f"{meta.path}/{p}": t for st in states for p, t in st.tombstones.items()}
    for info in files:
        if info.path in live:
            continue
        unreferenced_since = removed_at.get(info.path, info.mtime)
        if unreferenced_since < cutoff:
            store.delete(info.path)
            report.bytes += info.size
            if info.path in removed_at:
                report.segments += 1
            else:
                report.orphans += 1
    for state in states:
        report.log_files += _fold_log(store, PartitionLog(store, meta.path, state.partition), state, cutoff)
    return report


def _fold_log(store: ObjectStore, log: PartitionLog, state, cutoff: float) -> int:
    """Checkpoint the latest state, then delete commits and checkpoints it supersedes."""
    if state.version < 0:
        return 0
    commits, checkpoints = log.versions()
    if state.version not in checkpoints:
        log.write_checkpoint(state)
        checkpoints.append(state.version)
    if not checkpoints:
        return 0
    keep_from = max(checkpoints)
    deleted = 0
    mtimes = {info.path: info.mtime for info in store.list(log.prefix)}
    doomed = [log.commit_path(v) for v in commits if v <= keep_from] + [
        log.checkpoint_path(v) for v in checkpoints if v < keep_from
    ]
    for path in doomed:
        if mtimes.get(path, cutoff) < cutoff:
            store.delete(path)
            deleted += 1
    return deleted


def vacuum(store: ObjectStore, namespace: str, table: str | None = None,
           older_than: Any = DEFAULT_GRACE_SECONDS, now: float | None = None) -> VacuumReport:
    """Vacuum one table, or every table of ``namespace`` and its dropped tables."""
    catalog = Catalog(store)
    now = now if now is not None else time.time()
    cutoff = now - parse_duration(older_than)
    report = VacuumReport()
    names = [table] if table is not None else catalog.tables(namespace)
    for name in names:
        report += vacuum_table(store, catalog.table(namespace, name), older_than, now)
    if table is None:
        for name, dropped_at in catalog.dropped_tables(namespace):
            if dropped_at < cutoff:
                store.delete(f"{namespace}/{name}")
                report.tables += 1
    return report
