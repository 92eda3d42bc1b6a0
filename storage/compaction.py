"""Compaction: what to merge, and the one commit that swaps it in.

Ingestion leaves many small segments, and late or out-of-order events leave
segments whose time ranges overlap.  Compaction turns them, per partition,
into segments of about the target size (1M rows / 128 MB) that do not
overlap, across hour boundaries, after the models of InfluxDB 3 (level 0 as
ingested, merged into non-overlapping levels) and Husky (size-tiered while a
window is written to, then merged for locality once it has settled):

* Rows are grouped by **window** (``storage.windows``: a UTC day, or an hour
  for short retention and for dense days of tables sorted by another column
  first).  No output crosses a window, so retention still drops whole
  segments.  An input that crosses windows is cut along them.
* While a window is being written to, its small segments are merged by size
  tier (each tier within a factor ``tier_ratio``, once it has ``min_inputs``
  members), so data is rewritten a logarithmic number of times.
* Once a window is settled (nobody wrote to it for ``settle_seconds``, or
  ``full``), every small segment in it is merged, together with every segment
  whose time range overlaps another's (for tables sorted by time first), into
  one sorted stream cut by size: the result does not overlap.

A task is one merge: its inputs, streamed through one k-way merge, routed to
one output segment per window and size, and swapped in by one commit with
``epoch=None``: it rebases over concurrent appends, and if a segment it
merges was removed meanwhile it raises CommitConflict, leaving the data as it
was and its written output to vacuum.
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
from storage.windows import (
    DEFAULT_HOUR_ROWS,
    NULL_WINDOW,
    Windows,
    crosses,
    time_leading,
    window_members,
    windows_for,
)

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
    max_inputs: int = 256  # fan-in of one merge (the rest waits for the next round)
    settle_seconds: float = 600.0  # a window untouched this long has all its small segments merged
    memory_rows: int = 256 * 1024  # input rows one merge may hold in memory at once
    hour_rows: int = DEFAULT_HOUR_ROWS  # see storage.windows: when a day is cut by hour

    def is_small(self, entry: SegmentEntry) -> bool:
        return (entry.rows < self.target_rows * self.small_fraction
                and entry.bytes < self.target_bytes * self.small_fraction)


@dataclass(frozen=True)
class CompactionTask:
    """Segments of one partition to merge, and the windows their outputs are cut by."""

    partition: int
    bucket: str  # the windows it covers, for progress reports ("2026-11-01" or "2026-11-01..2026-11-30")
    inputs: tuple[SegmentEntry, ...]
    windows: Windows = Windows()

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
                    now: float | None = None, full: bool = False,
                    meta: TableMeta | None = None) -> list[CompactionTask]:
    """The merges worth doing in one partition now (``full``: every window counts as settled).

    ``meta``: the table (its sort key and retention choose the windows); by
    default a table sorted by ``timestamp`` alone, kept forever.
    """
    now = time.time() if now is None else now
    meta = meta if meta is not None else TableMeta(namespace="_", name="_")
    segments = list(state.segments.values())
    windows = windows_for(meta, segments, policy.hour_rows, policy.target_rows)
    ordered = time_leading(meta)
    chosen: dict[int, set[str]] = {}  # window -> ids of segments merged for it
    tier_groups: list[tuple[int, list[SegmentEntry]]] = []
    for window, members in sorted(window_members(windows, segments).items()):
        cut = [e for e in members if crosses(windows, e)]
        small = [e for e in members if policy.is_small(e) and not crosses(windows, e)]
        settled = full or now - max(e.created_at for e in members) >= policy.settle_seconds
        if settled:
            picked = {e.id for e in cut + small}
            if ordered:
                picked |= _overlapping(windows, window, members)
            if len(picked) >= 2 or cut:
                chosen[window] = picked
            continue
        if cut:
            chosen[window] = {e.id for e in cut}
        for tier in _size_tiers(small, policy.tier_ratio):
            for group in _groups(tier, policy):
                if len(group) >= policy.min_inputs:
                    tier_groups.append((window, group))
    tasks = [CompactionTask(state.partition, windows.folder(w), tuple(g), windows) for w, g in tier_groups]
    tasks.extend(_linked_tasks(state, windows, chosen, policy))
    return tasks


def _overlapping(windows: Windows, window: int, members: list[SegmentEntry]) -> set[str]:
    """Ids of the segments whose time ranges, within ``window``, overlap another's."""
    if window == NULL_WINDOW:
        return set()
    lo, hi = window, windows.end(window) - 1
    spans = sorted((max(e.min_time, lo), min(e.max_time, hi), e.id) for e in members if e.min_time is not None)
    found: set[str] = set()
    group: list[str] = []
    reach = 0
    for start, stop, segment_id in spans:
        if group and start < reach:  # starts strictly before the group's range ends: they overlap
            group.append(segment_id)
            reach = max(reach, stop)
            continue
        if len(group) > 1:
            found.update(group)
        group, reach = [segment_id], stop
    if len(group) > 1:
        found.update(group)
    return found


def _linked_tasks(state: PartitionState, windows: Windows, chosen: dict[int, set[str]],
                  policy: CompactionPolicy) -> list[CompactionTask]:
    """One task per set of windows joined by the segments that cross them (each merged once)."""
    parent = {w: w for w in chosen}

    def root(w: int) -> int:
        while parent[w] != w:
            parent[w] = parent[parent[w]]
            w = parent[w]
        return w

    owner: dict[str, int] = {}
    for window, ids in chosen.items():
        for segment_id in ids:
            if segment_id in owner:
                parent[root(window)] = root(owner[segment_id])
            else:
                owner[segment_id] = window
    groups: dict[int, list[int]] = {}
    for window in chosen:
        groups.setdefault(root(window), []).append(window)
    tasks = []
    for members in groups.values():
        ids = set().union(*(chosen[w] for w in members))
        inputs = sorted((state.segments[i] for i in ids), key=lambda e: (e.min_time if e.min_time is not None
                                                                         else NULL_WINDOW, e.id))
        first, last = windows.folder(min(members)), windows.folder(max(members))
        label = first if first == last else f"{first}..{last}"
        for i in range(0, len(inputs), policy.max_inputs):
            tasks.append(CompactionTask(state.partition, label, tuple(inputs[i:i + policy.max_inputs]), windows))
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
        windows=task.windows,
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
        tasks = plan_compaction(state, policy, now, full, meta)
        if not tasks:
            break
        for i, task in enumerate(tasks):
            if progress is not None:
                progress.planned(len(tasks) if i == 0 else 0, f"partition {partition}, {task.bucket}")
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
