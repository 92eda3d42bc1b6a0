"""Vacuum: deferred deletion of everything no snapshot can still read.

Removed segments, uploads no commit refers to (a crashed or fenced writer's),
temporary files of crashed local writes, commit files folded into a
checkpoint, and dropped tables are deleted only once they have been
unreferenced for longer than the grace period, so a query holding an older
snapshot never loses a file under it.

An orphan (a file under ``data/`` that is neither live nor tombstoned) might
also be an upload whose commit is about to land, so it gets a grace of at
least :data:`ORPHAN_MIN_SECONDS` whatever ``older_than`` says; only an
explicit ``orphans_older_than`` goes lower (tests, or an operator who knows no
writer is running).  A commit re-uploads any segment it adds that is half that
old (``storage.log.STALE_UPLOAD_SECONDS``), so vacuum never deletes an upload
whose commit lands later.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from typing import Any

from storage.catalog import Catalog, TableMeta, parse_duration
from storage.errors import PetrelError
from storage.log import ORPHAN_MIN_SECONDS, TOMBSTONE_SECONDS, PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.snapshot import load_partitions

DEFAULT_GRACE_SECONDS = 3600.0
_TEMPORARY_PREFIX = ".tmp-"


@dataclass
class VacuumReport:
    """What one vacuum deleted."""

    segments: int = 0
    orphans: int = 0
    log_files: int = 0
    tables: int = 0
    bytes: int = 0
    temporary: int = 0

    def __add__(self, other: VacuumReport) -> VacuumReport:
        return VacuumReport(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class _Cutoffs:
    """Files unreferenced since before ``removed`` (tombstoned) or ``orphan`` (the rest) go."""

    removed: float
    orphan: float


def _cutoffs(older_than: Any, orphans_older_than: Any, now: float | None) -> _Cutoffs:
    grace = parse_duration(older_than)
    if grace > TOMBSTONE_SECONDS:
        raise PetrelError(
            f"vacuum older_than={older_than!r} is longer than the {TOMBSTONE_SECONDS / 86400:g} days for which "
            "the log remembers when a segment was removed; pass at most that"
        )
    orphan_grace = max(grace, ORPHAN_MIN_SECONDS) if orphans_older_than is None else parse_duration(orphans_older_than)
    now = now if now is not None else time.time()
    return _Cutoffs(removed=now - grace, orphan=now - orphan_grace)


def vacuum_table(store: ObjectStore, meta: TableMeta, older_than: Any = DEFAULT_GRACE_SECONDS,
                 now: float | None = None, *, orphans_older_than: Any = None) -> VacuumReport:
    """Delete the table's files that have been unreferenced for longer than ``older_than``.

    Orphans and temporary files wait at least ``max(older_than,
    ORPHAN_MIN_SECONDS)`` unless ``orphans_older_than`` is given; PetrelError
    if ``older_than`` exceeds TOMBSTONE_SECONDS.
    """
    return _vacuum_table(store, meta, _cutoffs(older_than, orphans_older_than, now))


def _vacuum_table(store: ObjectStore, meta: TableMeta, cutoffs: _Cutoffs) -> VacuumReport:
    report = VacuumReport()
    # List before reading the logs: a file uploaded after this listing is not
    # considered, and one listed but committed since is seen as live below.
    files = store.list(f"{meta.path}/data", recursive=True, include_temporary=True)
    states = load_partitions(store, meta)
    live = {f"{meta.path}/{s.path}" for st in states for s in st.segments.values()}
    removed_at = {f"{meta.path}/{p}": t for st in states for p, t in st.tombstones.items()}
    for info in files:
        if info.path in live:
            continue
        if info.path in removed_at:
            if removed_at[info.path] < cutoffs.removed:
                _delete(store, info.path, info.size, report, "segments")
        elif info.mtime < cutoffs.orphan:
            kind = "temporary" if _is_temporary(info.path) else "orphans"
            _delete(store, info.path, info.size, report, kind)
    for state in states:
        log = PartitionLog(store, meta.path, state.partition)
        report.log_files += _fold_log(store, log, state, cutoffs.removed)
        for info in store.list(log.prefix, include_temporary=True):
            if _is_temporary(info.path) and info.mtime < cutoffs.orphan:
                _delete(store, info.path, info.size, report, "temporary")
    return report


def _is_temporary(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(_TEMPORARY_PREFIX)


def _delete(store: ObjectStore, path: str, size: int, report: VacuumReport, kind: str) -> None:
    store.delete(path)
    report.bytes += size
    setattr(report, kind, getattr(report, kind) + 1)


def _fold_log(store: ObjectStore, log: PartitionLog, state: PartitionState, cutoff: float) -> int:
    """Checkpoint the latest state, then delete commits and checkpoints it supersedes.

    Commits are deleted in ascending version order, stopping at the first one
    still inside the grace period, so the folded commits are always a prefix
    of the log: PartitionLog relies on it to tell a commit written after a
    fold (a ghost) from a real one by whether its predecessor still exists.
    """
    if state.version < 0:
        return 0
    commits, checkpoints = log.versions()
    if state.version not in checkpoints:
        log.write_checkpoint(state)
        checkpoints.append(state.version)
    keep_from = max(checkpoints)
    deleted = 0
    mtimes = {info.path: info.mtime for info in store.list(log.prefix)}
    for v in sorted(v for v in commits if v <= keep_from):
        path = log.commit_path(v)
        if mtimes.get(path, cutoff) >= cutoff:
            break
        store.delete(path)
        deleted += 1
    for v in checkpoints:
        path = log.checkpoint_path(v)
        if v < keep_from and mtimes.get(path, cutoff) < cutoff:
            store.delete(path)
            deleted += 1
    return deleted


def vacuum(store: ObjectStore, namespace: str, table: str | None = None,
           older_than: Any = DEFAULT_GRACE_SECONDS, now: float | None = None, *,
           orphans_older_than: Any = None) -> VacuumReport:
    """Vacuum one table, or every table of ``namespace`` and its dropped tables (see :func:`vacuum_table`)."""
    catalog = Catalog(store)
    cutoffs = _cutoffs(older_than, orphans_older_than, now)
    report = VacuumReport()
    names = [table] if table is not None else catalog.tables(namespace)
    for name in names:
        report += _vacuum_table(store, catalog.table(namespace, name), cutoffs)
    if table is None:
        for name, dropped_at in catalog.dropped_tables(namespace):
            if dropped_at < cutoffs.removed:
                _delete_dropped_table(store, f"{namespace}/{name}")
                report.tables += 1
    return report


def _delete_dropped_table(store: ObjectStore, path: str) -> None:
    """Delete a dropped table's files: ``_table.json`` first, the ``_dropped.json`` tombstone last.

    A crash part way leaves the tombstone in place, so the table stays
    dropped (never resurrected half-deleted) and the next vacuum finishes.
    """
    tombstone = f"{path}/_dropped.json"
    store.delete(f"{path}/_table.json")
    for folder in store.list_dirs(path):
        store.delete(f"{path}/{folder}")
    for info in store.list(path, include_temporary=True):
        if info.path != tombstone:
            store.delete(info.path)
    store.delete(tombstone)
    if store.protocol == "file":  # local disk keeps empty folders; a new table of the name may be in one
        try:
            os.rmdir(store.full(path))
        except OSError:
            pass
