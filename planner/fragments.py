"""Fragments: the units of work a distributed plan sends to workers.

A fragment is one stage's plan (everything below an exchange) plus the
segments it reads.  Segments go to workers by rendezvous hashing — each
segment prefers the worker with the highest hash of (worker, segment), so
the same segment lands on the same worker query after query and its
footer and pages stay in that worker's cache — with a bounded load, so no
worker gets much more than its share of bytes.  Each worker's segments
are then packed into a few fragments of balanced size.

A fragment carries its segments as :class:`SegmentFile` (where the file is
and how big), not as full manifest entries: pruning by the manifest's
statistics is done on the driver, and a worker reads a segment's own
Parquet footer, so the per-column statistics of every segment (most of an
entry's size on a wide table) would only cost pickling on each call.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from dataclasses import dataclass

from planner.logical import Gather, Plan, Scan, TableSource
from storage.errors import QueryFailed
from storage.segment import SegmentEntry

TARGET_FRAGMENT_BYTES = 128 * 1024 * 1024
LOAD_SLACK = 1.05


@dataclass(frozen=True)
class SegmentFile:
    """What a worker needs of a segment: its file, its size, its time range (no column statistics, no schema)."""

    id: str
    path: str
    partition: int
    rows: int
    bytes: int
    min_time: int | None
    max_time: int | None

    @classmethod
    def of(cls, segment: SegmentEntry | SegmentFile) -> SegmentFile:
        if isinstance(segment, SegmentFile):
            return segment
        return cls(segment.id, segment.path, segment.partition, segment.rows, segment.bytes, segment.min_time,
                   segment.max_time)


@dataclass(frozen=True)
class Fragment:
    """One unit of work, as pure data: stage ``stage``'s ``plan`` over ``segments``, for query ``query_id``.

    What a fragment needs only at run time (its deadline, the rows of the
    exchanges it reads) the engine attaches when it sends the fragment.
    """

    query_id: str
    stage: int
    index: int
    plan: Plan
    segments: tuple[SegmentEntry | SegmentFile, ...]
    partition: tuple | None = None  # (keys, buckets): hash-partition the output for a shuffle

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.segments)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)


def score(worker: str, segment_id: str) -> int:
    """The rendezvous weight of ``segment_id`` on ``worker``."""
    digest = hashlib.blake2b(f"{worker}/{segment_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preference(segment_id: str, workers: list[str]) -> list[str]:
    """Workers in the order ``segment_id`` prefers them."""
    return list(_preference(segment_id, tuple(workers)))


@functools.lru_cache(maxsize=1 << 18)
def _preference(segment_id: str, workers: tuple[str, ...]) -> tuple[str, ...]:
    """Kept per segment and pool: segments never change, so each is hashed once, not once per query."""
    return tuple(sorted(workers, key=lambda w: score(w, segment_id), reverse=True))


def assign(segments: tuple[SegmentEntry, ...], workers: list[str]) -> dict[str, list[SegmentEntry]]:
    """Segments per worker: rendezvous order, each worker capped near its fair share of bytes."""
    if not workers:
        raise QueryFailed("no workers to assign segments to; the worker pool is empty")
    total = sum(max(s.bytes, 1) for s in segments)
    largest = max((max(s.bytes, 1) for s in segments), default=1)
    capacity = max(total / len(workers) * LOAD_SLACK, largest)
    load = {w: 0 for w in workers}
    placed: dict[str, list[SegmentEntry]] = {w: [] for w in workers}
    pool = tuple(workers)
    for segment in sorted(segments, key=lambda s: (-s.bytes, s.id)):
        size = max(segment.bytes, 1)
        ranked = _preference(segment.id, pool)
        target = next((w for w in ranked if load[w] + size <= capacity), None)
        if target is None:
            target = min(workers, key=lambda w: load[w])
        load[target] += size
        placed[target].append(segment)
    return placed


def pack(segments: list[SegmentEntry], target_bytes: int = TARGET_FRAGMENT_BYTES, max_parts: int | None = None) -> list[tuple[SegmentEntry, ...]]:
    """Segments packed into fragments of about ``target_bytes`` each (largest first)."""
    if not segments:
        return []
    total = sum(s.bytes for s in segments)
    parts = max(1, math.ceil(total / target_bytes))
    parts = min(parts, len(segments), max_parts or len(segments))
    bins: list[list[SegmentEntry]] = [[] for _ in range(parts)]
    sizes = [0] * parts
    for segment in sorted(segments, key=lambda s: (-s.bytes, s.id)):
        smallest = sizes.index(min(sizes))
        bins[smallest].append(segment)
        sizes[smallest] += segment.bytes
    return [tuple(sorted(b, key=lambda s: (s.min_time or 0, s.id))) for b in bins if b]


def split_stage(
    query_id: str,
    stage: int,
    plan: Plan,
    segments: tuple[SegmentEntry, ...],
    workers: list[str],
    target_bytes: int = TARGET_FRAGMENT_BYTES,
    partition: tuple | None = None,
) -> list[tuple[str, Fragment]]:
    """A stage over ``segments`` as fragments, each with the worker it should run on."""
    fragments: list[tuple[str, Fragment]] = []
    for worker, assigned in assign(segments, workers).items():
        for group in pack(assigned, target_bytes):
            files = tuple(SegmentFile.of(s) for s in group)
            fragments.append((worker, Fragment(query_id, stage, len(fragments), plan, files, partition)))
    return fragments


def bucket_fragments(
    query_id: str, stage: int, plan: Plan, buckets: int, workers: list[str], partition: tuple | None = None,
) -> list[tuple[str, Fragment]]:
    """A stage over shuffled rows as one fragment per bucket, dealt round robin over ``workers``."""
    return [(workers[bucket % len(workers)], Fragment(query_id, stage, bucket, plan, (), partition))
            for bucket in range(buckets)]


def stage_plan(gather: Gather) -> Plan:
    """The plan below ``gather``, with its scan stripped of the snapshot's segment list.

    Every fragment carries its own segments; the rest of the table's
    manifest need not travel with each one.
    """

    from planner.logical import Broadcast, Shuffle

    def strip(plan: Plan) -> Plan:
        if isinstance(plan, (Gather, Broadcast, Shuffle)):
            return dataclasses.replace(plan, input=_leaf())
        if isinstance(plan, Scan):
            light = TableSource(plan.source.meta, plan.source.schema)
            return dataclasses.replace(plan, source=light, segments=())
        return plan.with_inputs(*(strip(child) for child in plan.inputs))

    return strip(gather.input)


def stage_scan(plan: Plan) -> Scan | None:
    """The scan a stage's fragments split (None for stages over constants or shuffled rows).

    Scans below another exchange belong to that exchange's own stage.
    """
    from planner.logical import Broadcast, Shuffle

    if isinstance(plan, Scan):
        return plan
    if isinstance(plan, (Gather, Broadcast, Shuffle)):
        return None
    for child in plan.inputs:
        found = stage_scan(child)
        if found is not None:
            return found
    return None


def _leaf() -> Plan:
    """What stands for an exchange's input inside a stage plan: its rows arrive by key instead."""
    from planner.logical import Values

    return Values((), ())
