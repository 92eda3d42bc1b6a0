"""Snapshots: one consistent view of a whole table for a query.

A snapshot pins a version of every partition's log.  It lists the live
segments with their statistics and the table's schema (the declared schema,
then the union of every segment's schema under the widening rules).  Files
a snapshot refers to are never deleted before the vacuum grace period, so a
query holding it never loses a file under it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from storage.catalog import TableMeta
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
    states = load_partitions(store, meta, versions)
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
    )
