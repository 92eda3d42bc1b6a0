"""Compaction: what to merge, and the one commit that swaps it in.

Streaming ingestion leaves many small segments: one per partition, per time
bucket, per flush.  Compaction merges the small segments of one partition and
one hourly bucket into sorted segments of about the target size.  It is
size-tiered: small segments are grouped by size (each group within a factor
``tier_ratio``), and a group is merged only once it has ``min_inputs``
members, so data is rewritten a logarithmic number of times, not on every
flush.  A bucket nobody has written to for ``settle_seconds`` (an hour that is
over, or a late-arriving bucket) has all its small segments merged.

The swap is one commit with ``epoch=None``: it rebases over concurrent
appends, and if a segment it merges was removed meanwhile it raises
CommitConflict, leaving the data as it was and its written output to vacuum.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Callable

from storage.catalog import TableMeta
from storage.errors import CommitConflict
from storage.log import PartitionLog, PartitionState
from storage.merge import MergeStats, merge_segments
from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry, bucket_of
from storage.snapshot import load_partitions

MAX_ROUNDS = 8
_PROGRESS_LOCK = threading.Lock()


@dataclass(frozen=True)
class CompactionPolicy:
    """When segments count as small, when they are merged, and how big the result is."""

    target_rows: int = 1_000_000
    target_bytes: int = 128 * 1024 * 1024
    small_fraction: float = 0.5  # below this share of both targets a segment is small
    min_inputs: int = 4  # a size tier waits until it has this many segments
    tier_ratio: float = 4.0  # segments whose sizes are within this factor form one tier
    max_inputs: int = 64  # fan-in of one merge
    settle_seconds: float = 600.0  # a bucket untouched this long has all its small segments merged
    memory_rows: int = 256 * 1024  # input rows one merge may hold in memory at once

    def is_small(self, entry: SegmentEntry) -> bool:
        return (entry.rows < self.target_rows * self.small_fraction
                and entry.bytes < self.target_bytes * self.small_fraction)


@dataclass(frozen=True)
class CompactionTask:
    """Segments of one partition and one time bucket to merge into one or a few."""

    partition: int
    bucket: str
    inputs: tuple[SegmentEntry, ...]

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.inputs)

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.inputs)


@dataclass
class CompactionReport:
    """What a compaction run did."""

    tasks: int = 0
    removed: int = 0  # segments merged away
    added: int = 0  # segments written and committed
    rows: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    conflicts: int = 0  # merges given up because an input was already removed
    peak_rows: int = 0  # most rows one merge held in memory
    seconds: float = 0.0

    def __add__(self, other: CompactionReport) -> CompactionReport:
        merged = CompactionReport(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})
        merged.peak_rows = max(self.peak_rows, other.peak_rows)
        return merged


@dataclass
class CompactionProgress:
    """A running compaction's counters, for a progress bar."""

    tasks_planned: int = 0
    tasks_done: int = 0
    rows_done: int = 0
    stage: str = "planning"
    report: CompactionReport = field(default_factory=CompactionReport)
    written: list[str] = field(default_factory=list)  # outputs of the merge awaiting its commit

    def planned(self, tasks: int, stage: str) -> None:
        with _PROGRESS_LOCK:
            self.tasks_planned += tasks
            self.stage = stage

    def done(self, report: CompactionReport) -> None:
        with _PROGRESS_LOCK:
            self.tasks_done += 1
            self.rows_done += report.rows
            self.report += report


def bucket_folder(entry: SegmentEntry) -> str:
    """The time bucket a segment was written under (its ``data/<bucket>/`` folder)."""
    parts = entry.path.split("/")
    if len(parts) >= 3 and parts[0] == "data":
        return parts[1]
    return bucket_of(entry.min_time) if entry.min_time is not None else "unknown"


def plan_compaction(state: PartitionState, policy: CompactionPolicy = CompactionPolicy(),
                    now: float | None = None, full: bool = False) -> list[CompactionTask]:
    """The merges worth doing in one partition now (``full``: every bucket counts as settled)."""
    now = time.time() if now is None else now
    buckets: dict[str, list[SegmentEntry]] = {}
    for entry in state.segments.values():
        buckets.setdefault(bucket_folder(entry), []).append(entry)
    tasks = []
    for bucket, entries in sorted(buckets.items()):
        small = [e for e in entries if policy.is_small(e)]
        if len(small) < 2:
            continue
        settled = full or now - max(e.created_at for e in entries) >= policy.settle_seconds
        tiers = [small] if settled else _size_tiers(small, policy.tier_ratio)
        least = 2 if settled else policy.min_inputs
        for tier in tiers:
            for group in _groups(tier, policy):
                if len(group) >= least:
                    tasks.append(CompactionTask(state.partition, bucket, tuple(group)))
    return tasks


def _size_tiers(entries: list[SegmentEntry], ratio: float) -> list[list[SegmentEntry]]:
    """Segments grouped by size: each tier spans at most a factor ``ratio``."""
    tiers: list[list[SegmentEntry]] = []
    for entry in sorted(entries, key=lambda e: (e.bytes, e.id)):
        if tiers and entry.bytes <= max(tiers[-1][0].bytes, 1) * ratio:
            tiers[-1].append(entry)
        else:
            tiers.append([entry])
    return tiers


def _groups(tier: list[SegmentEntry], policy: CompactionPolicy) -> list[list[SegmentEntry]]:
    """A tier cut into merges of at most the target size and ``max_inputs`` segments."""
    groups: list[list[SegmentEntry]] = [[]]
    rows = size = 0
    for entry in sorted(tier, key=lambda e: (e.min_time if e.min_time is not None else -1, e.id)):
        full = len(groups[-1]) >= policy.max_inputs or (
            groups[-1] and (rows + entry.rows > policy.target_rows or size + entry.bytes > policy.target_bytes))
        if full:
            groups.append([])
            rows = size = 0
        groups[-1].append(entry)
        rows += entry.rows
        size += entry.bytes
    return groups


def rows_per_segment(task: CompactionTask, policy: CompactionPolicy) -> int:
    """Output rows per segment so that a segment stays near both targets."""
    bytes_per_row = task.bytes / max(task.rows, 1)
    return max(1, min(policy.target_rows, int(policy.target_bytes / max(bytes_per_row, 1e-9))))


BeforeCommit = Callable[[CompactionTask, list[SegmentEntry]], None]


def run_task(store: ObjectStore, meta: TableMeta, state: PartitionState, task: CompactionTask,
             policy: CompactionPolicy = CompactionPolicy(),
             before_commit: BeforeCommit | None = None) -> tuple[PartitionState, CompactionReport]:
    """Merge one task's inputs and commit the swap; CommitConflict if an input is gone."""
    stats = MergeStats()
    outputs = merge_segments(
        store, meta.path, task.inputs, sort_key=meta.full_sort_key, time_column=meta.time_column,
        rows_per_segment=rows_per_segment(task, policy), memory_rows=policy.memory_rows, stats=stats,
    )
    if before_commit is not None:
        before_commit(task, outputs)
    log = PartitionLog(store, meta.path, task.partition)
    new_state = log.commit(state, epoch=None, removed=[e.id for e in task.inputs], added=outputs, kind="compact")
    return new_state, CompactionReport(
        tasks=1, removed=len(task.inputs), added=len(outputs), rows=stats.rows, bytes_read=task.bytes,
        bytes_written=stats.bytes_written, peak_rows=stats.peak_rows,
    )


def compact_partition(store: ObjectStore, meta: TableMeta, partition: int,
                      policy: CompactionPolicy = CompactionPolicy(), *, full: bool = False,
                      now: float | None = None, progress: CompactionProgress | None = None,
                      before_commit: BeforeCommit | None = None) -> CompactionReport:
    """Compact one partition until its plan is empty (a few rounds at most)."""
    report = CompactionReport()
    started = time.monotonic()
    log = PartitionLog(store, meta.path, partition)
    for _ in range(MAX_ROUNDS):
        state = log.load()
        tasks = plan_compaction(state, policy, now, full)
        if not tasks:
            break
        for i, task in enumerate(tasks):
            if progress is not None:
                progress.planned(len(tasks) if i == 0 else 0, f"partition {partition}, bucket {task.bucket}")
            try:
                state, done = run_task(store, meta, state, task, policy, before_commit)
            except CommitConflict:
                done = CompactionReport(conflicts=1)
                state = log.load()
            report += done
            if progress is not None:
                progress.done(done)
        if report.conflicts and not report.added:
            break  # someone else is compacting this partition; let them
    report.seconds = time.monotonic() - started
    return report


def compact_table(store: ObjectStore, meta: TableMeta, policy: CompactionPolicy = CompactionPolicy(), *,
                  full: bool = False, now: float | None = None, progress: CompactionProgress | None = None,
                  before_commit: BeforeCommit | None = None, threads: int = 4) -> CompactionReport:
    """Compact every partition of a table (partitions in parallel threads)."""
    started = time.monotonic()

    def one(partition: int) -> CompactionReport:
        return compact_partition(store, meta, partition, policy, full=full, now=now, progress=progress,
                                 before_commit=before_commit)

    if meta.partitions == 1 or threads <= 1:
        reports = [one(p) for p in range(meta.partitions)]
    else:
        with ThreadPoolExecutor(max_workers=min(threads, meta.partitions)) as pool:
            reports = list(pool.map(one, range(meta.partitions)))
    total = CompactionReport()
    for r in reports:
        total += r
    total.seconds = time.monotonic() - started
    if progress is not None:
        progress.stage = "done"
    return total


@dataclass(frozen=True)
class TableStats:
    """The shape of a table's storage, for deciding (and checking) maintenance."""

    table: str
    partitions: int
    segments: int
    rows: int
    bytes: int
    small_segments: int
    buckets: int
    oldest_event: int | None  # microseconds since the epoch, UTC
    newest_event: int | None
    last_compaction: float | None  # seconds since the epoch, of the newest live compacted segment
    versions: dict[int, int]

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def table_stats(store: ObjectStore, meta: TableMeta, policy: CompactionPolicy = CompactionPolicy()) -> TableStats:
    """Segments, rows, bytes, small segments, event time range and last compaction of a table."""
    states = load_partitions(store, meta)
    entries = [e for st in states for e in st.segments.values()]
    mins = [e.min_time for e in entries if e.min_time is not None]
    maxs = [e.max_time for e in entries if e.max_time is not None]
    compacted = [e.created_at for e in entries if e.level > 0]
    return TableStats(
        table=f"{meta.namespace}.{meta.name}",
        partitions=meta.partitions,
        segments=len(entries),
        rows=sum(e.rows for e in entries),
        bytes=sum(e.bytes for e in entries),
        small_segments=sum(1 for e in entries if policy.is_small(e)),
        buckets=len({(e.partition, bucket_folder(e)) for e in entries}),
        oldest_event=min(mins) if mins else None,
        newest_event=max(maxs) if maxs else None,
        last_compaction=max(compacted) if compacted else None,
        versions={st.partition: st.version for st in states},
    )
