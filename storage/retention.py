"""Retention: whole segments whose newest event is older than the table keeps.

A table's retention period (``TableMeta.retention``, seconds) is enforced by
dropping every segment whose ``max_time`` is before ``now - retention``, in
one commit per partition.  A segment that still holds one event inside the
period stays whole; compacted segments never cross a compaction window
(``storage.windows``: a day, or an hour for retention under a week), so data
is kept at most about one window past its period.  Dropped files are deleted
later by vacuum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from storage.catalog import TableMeta
from storage.errors import CommitConflict
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry

_ATTEMPTS = 10


@dataclass
class RetentionReport:
    """What one retention pass dropped."""

    segments: int = 0
    rows: int = 0
    bytes: int = 0
    commits: int = 0

    def __add__(self, other: RetentionReport) -> RetentionReport:
        return RetentionReport(self.segments + other.segments, self.rows + other.rows,
                               self.bytes + other.bytes, self.commits + other.commits)


def retention_cutoff(meta: TableMeta, now: float | None = None) -> int | None:
    """The instant (microseconds, UTC) before which events are past retention; None if kept forever."""
    if meta.retention is None:
        return None
    now = time.time() if now is None else now
    return int((now - meta.retention) * 1_000_000)


def expired_segments(state: PartitionState, cutoff: int) -> list[SegmentEntry]:
    """The live segments of a partition whose every event is before ``cutoff``."""
    return [e for e in state.segments.values() if e.max_time is not None and e.max_time < cutoff]


def apply_retention(store: ObjectStore, meta: TableMeta, now: float | None = None) -> RetentionReport:
    """Drop the table's segments past its retention period, one commit per partition."""
    report = RetentionReport()
    cutoff = retention_cutoff(meta, now)
    if cutoff is None:
        return report
    for partition in range(meta.partitions):
        log = PartitionLog(store, meta.path, partition)
        for _ in range(_ATTEMPTS):
            state = log.load()
            doomed = expired_segments(state, cutoff)
            if not doomed:
                break
            try:
                log.commit(state, epoch=None, removed=[e.id for e in doomed], kind="retention")
            except CommitConflict:  # a compaction swapped some of them meanwhile: look again
                continue
            report += RetentionReport(len(doomed), sum(e.rows for e in doomed), sum(e.bytes for e in doomed), 1)
            break
    return report
