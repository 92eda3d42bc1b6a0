"""Snapshots: one consistent view of a whole table for a query.

A snapshot pins a version of every partition's log.  It lists the live
segments with their statistics and the table's schema (the declared schema,
then the union of every segment's schema under the widening rules).  Files
a snapshot refers to are never deleted before the vacuum grace period, so a
query holding it never loses a file under it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from storage.catalog import TableMeta
from storage.finished import FinishedSources
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.schema import unify
from storage.segment import SegmentEntry


@dataclass(frozen=True)
class Snapshot:
    """A table as of one version per partition."""

    meta: TableMeta
    versions: dict[int, int]
    segments: tuple[SegmentEntry, ...]
    schema: pa.Schema
    offsets: dict[int, dict[str, Any]]
    batch_ids: dict[int, dict[str, int]]  # per partition: recent batch id -> the version that committed it
    finished: dict[int, FinishedSources] = field(default_factory=dict)  # per partition: sources read to their end

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.segments)


def load_partitions(
    store: ObjectStore, meta: TableMeta, versions: dict[int, int] | None = None
) -> list[PartitionState]:
    """The state of every partition of ``meta``, read in parallel."""

    def load(partition: int) -> PartitionState:
        version = None if versions is None else versions.get(partition)
        return PartitionLog(store, meta.path, partition).load(version)

    if meta.partitions == 1:
        return [load(0)]
    with ThreadPoolExecutor(max_workers=min(16, meta.partitions)) as pool:
        return list(pool.map(load, range(meta.partitions)))


def load_snapshot(store: ObjectStore, meta: TableMeta, versions: dict[int, int] | None = None) -> Snapshot:
    """Read the latest (or the given) version of every partition into one snapshot."""
    return assemble(meta, load_partitions(store, meta, versions))


def assemble(meta: TableMeta, states: list[PartitionState]) -> Snapshot:
    """The snapshot made of one state per partition."""
    segments = sorted(
        (s for state in states for s in state.segments.values()),
        key=lambda s: (s.min_time if s.min_time is not None else -1, s.id),
    )
    schemas = ([meta.schema] if meta.schema is not None else []) + [
        st.schema for st in states if st.schema is not None
    ]
    schema = unify(schemas) if schemas else pa.schema([])
    return Snapshot(
        meta=meta,
        versions={st.partition: st.version for st in states},
        segments=tuple(segments),
        schema=schema,
        offsets={st.partition: st.offsets for st in states},
        batch_ids={st.partition: st.batch_ids for st in states},
        finished={st.partition: st.finished for st in states},
    )


class LiveSnapshot:
    """A table's latest snapshot, kept by a reader and refreshed by reading only the commits made since.

    A refresh costs one read per partition when nothing changed (the next
    commit's file is absent), and reads only the new commits otherwise, so
    it does not grow with the number of segments or commits the table has.
    Every ``verify_seconds`` the partitions' logs are listed as well, so a
    reader idle long enough for vacuum to remove the commit it would read
    next loads afresh instead of staying behind.
    """

    def __init__(self, store: ObjectStore, meta: TableMeta, verify_seconds: float = 30.0) -> None:
        self.store = store
        self.meta = meta
        self.verify_seconds = verify_seconds
        self._logs = [PartitionLog(store, meta.path, p) for p in range(meta.partitions)]
        self._lock = threading.Lock()
        self._states = load_partitions(store, meta)
        self._verified = time.monotonic()
        self.snapshot = assemble(meta, self._states)

    def refresh(self) -> Snapshot:
        """The latest snapshot (the same object as before when no partition moved)."""
        with self._lock:
            states = [log.load_after(state) for log, state in zip(self._logs, self._states)]
            if time.monotonic() - self._verified > self.verify_seconds:
                states = [self._verified_state(log, state) for log, state in zip(self._logs, states)]
                self._verified = time.monotonic()
            if any(new is not old for new, old in zip(states, self._states)):
                self._states = states
                self.snapshot = assemble(self.meta, states)
            return self.snapshot

    @staticmethod
    def _verified_state(log: PartitionLog, state: PartitionState) -> PartitionState:
        commits, checkpoints = log.versions()
        latest = max(commits[-1] if commits else -1, checkpoints[-1] if checkpoints else -1)
        return state if latest <= state.version else log.load()
