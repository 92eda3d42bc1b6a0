"""Compaction windows: the coarse time cuts that compacted segments never cross.

Compaction writes segments sized by data (about ``target_rows`` rows), not by
the clock, but it never lets one segment hold rows of two windows, so that
retention can still drop whole segments and a time filter still prunes.

The rule:

* A window is a UTC **day**.
* A table sorted by time first that keeps its rows long (no retention, or
  one at least ten times the span) joins sparse days into **spans** of
  :data:`SPAN_DAYS` days (aligned to the epoch; 28 days first, else 7) while
  the span holds at most ``target_rows`` rows of the partition: a month of a
  small tenant is then a few segments, not one per day, and a query opens a
  few files instead of dozens.  A span that fills past ``target_rows`` falls
  back to weeks or days, and the segments already written across it are cut
  again by the next compaction (each row rewritten once more, at most).
* A table whose retention is shorter than :data:`HOURLY_RETENTION_SECONDS`
  (a week) is cut by **hour**: a day-wide segment would be kept up to a day
  past a period of a few days, and an hour-wide one at most an hour.
* A day is also cut by hour when the table's sort key does not start with
  its time column and the day holds at least ``hour_rows`` rows per hour on
  average (per partition).  Such segments are sorted by another column
  first, so their time ranges span the whole window; an hour cut keeps time
  pruning once each hour has enough rows to be worth a file of its own.
  Below that, the per-file cost outweighs the pruning and a day is one cut.

A table sorted by time first needs no hour cut: compaction merges a window
into one time-sorted stream and cuts it by size, so its segments never
overlap in time and prune as well as hourly ones.  Rows without a time go to
the ``unknown`` window.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from storage.catalog import TableMeta
from storage.segment import SegmentEntry

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
HOURLY_RETENTION_SECONDS = 7 * 86400
DEFAULT_HOUR_ROWS = 1_000
DEFAULT_TARGET_ROWS = 1_000_000
SPAN_DAYS = (28, 7)  # the spans sparse days are joined into, widest first (7 divides 28: weeks nest in them)
SPAN_RETENTION_FACTOR = 10  # a span is used only if the retention is at least this many spans long
UNKNOWN = "unknown"
NULL_WINDOW = np.iinfo(np.int64).max  # the window of rows without a time: sorts after every real one
_MAX_SPREAD_DAYS = 3660  # a segment spread over more days than this (a bad time) is counted once


@dataclass(frozen=True)
class Windows:
    """Which days of one partition are cut by hour; maps instants to window starts."""

    hourly_days: frozenset[int] = frozenset()
    all_hourly: bool = False
    spans: tuple[tuple[int, frozenset[int]], ...] = ()  # (span days, indices day // span joined), widest first

    def is_hourly(self, day: int) -> bool:
        return self.all_hourly or day in self.hourly_days

    def span(self, day: int) -> int:
        """How many days the window holding ``day`` spans (1 unless sparse days are joined)."""
        for days, joined in self.spans:
            if day // days in joined:
                return days
        return 1

    def start(self, micros: int | None) -> int:
        """The start (microseconds) of the window of an instant; NULL_WINDOW for None."""
        if micros is None:
            return NULL_WINDOW
        day = micros // DAY_US
        if self.is_hourly(day):
            return micros // HOUR_US * HOUR_US
        days = self.span(day)
        return day // days * days * DAY_US

    def end(self, start: int) -> int:
        """The first instant after the window that starts at ``start``."""
        if start == NULL_WINDOW:
            return NULL_WINDOW
        day = start // DAY_US
        return start + (HOUR_US if self.is_hourly(day) else self.span(day) * DAY_US)

    def starts(self, micros: np.ndarray) -> np.ndarray:
        """The window start of every instant of an int64 array (no nulls)."""
        days = micros // DAY_US
        hours = micros // HOUR_US * HOUR_US
        if self.all_hourly:
            return hours
        out = days * DAY_US
        taken = np.zeros(len(days), dtype=bool)
        for span, joined in self.spans:
            inside = ~taken & np.isin(days // span, np.fromiter(joined, np.int64, len(joined)))
            out = np.where(inside, days // span * span * DAY_US, out)
            taken |= inside
        if not self.hourly_days:
            return out
        hourly = np.isin(days, np.fromiter(self.hourly_days, np.int64, len(self.hourly_days)))
        return np.where(hourly, hours, out)

    def folder(self, start: int) -> str:
        """The ``data/<folder>`` name of a window."""
        if start == NULL_WINDOW:
            return UNKNOWN
        if self.is_hourly(start // DAY_US):
            return time.strftime("%Y-%m-%dT%H", time.gmtime(start // 1_000_000))
        day = time.strftime("%Y-%m-%d", time.gmtime(start // 1_000_000))
        days = self.span(start // DAY_US)
        return day if days == 1 else f"{day}+{days}d"


def time_leading(meta: TableMeta) -> bool:
    """Whether the table's segments are sorted by time first (then they never overlap after compaction)."""
    return meta.full_sort_key[0] == meta.time_column


def windows_for(meta: TableMeta, segments: Iterable[SegmentEntry], hour_rows: int = DEFAULT_HOUR_ROWS,
                target_rows: int = DEFAULT_TARGET_ROWS) -> Windows:
    """The windows of one partition of ``meta`` holding ``segments`` (see the module's rule)."""
    if meta.retention is not None and meta.retention < HOURLY_RETENTION_SECONDS:
        return Windows(all_hourly=True)
    rows = day_rows(segments)
    if time_leading(meta):
        return Windows(spans=_joined_spans(meta, rows, target_rows))
    return Windows(hourly_days=frozenset(day for day, n in rows.items() if n >= 24 * hour_rows))


def _joined_spans(meta: TableMeta, rows: dict[int, float], target_rows: int) -> tuple[tuple[int, frozenset[int]], ...]:
    """For each span length the retention allows (widest first), the spans whose days hold at most ``target_rows``."""
    spans = []
    taken: set[int] = set()  # days already in a wider span
    for days in SPAN_DAYS:
        if meta.retention is not None and meta.retention < SPAN_RETENTION_FACTOR * days * 86400:
            continue
        totals: dict[int, float] = {}
        for day, n in rows.items():
            if day not in taken:
                totals[day // days] = totals.get(day // days, 0.0) + n
        joined = frozenset(index for index, n in totals.items() if n <= target_rows)
        taken.update(day for day in rows if day // days in joined)
        if joined:
            spans.append((days, joined))
    return tuple(spans)


def day_rows(segments: Iterable[SegmentEntry]) -> dict[int, float]:
    """Rows per UTC day, spreading a segment that spans days evenly over its time range."""
    rows: dict[int, float] = {}
    for entry in segments:
        if entry.min_time is None or entry.max_time is None:
            continue
        first, last = entry.min_time // DAY_US, entry.max_time // DAY_US
        if first == last or last - first > _MAX_SPREAD_DAYS:
            rows[first] = rows.get(first, 0.0) + entry.rows
            continue
        span = max(entry.max_time - entry.min_time, 1)
        for day in range(first, last + 1):
            lo, hi = max(entry.min_time, day * DAY_US), min(entry.max_time, (day + 1) * DAY_US)
            rows[day] = rows.get(day, 0.0) + entry.rows * max(hi - lo, 0) / span
    return rows


def window_members(windows: Windows, segments: Iterable[SegmentEntry]) -> dict[int, list[SegmentEntry]]:
    """Each window holding an end of some segment, with every segment that has rows in it.

    A window no segment starts or ends in is covered only by segments that
    cross it; it needs no planning of its own (their rows land there when
    they are cut), so a bad far-future time never makes millions of windows.
    """
    segments = list(segments)
    spans = {e.id: (windows.start(e.min_time), windows.start(e.max_time)) for e in segments}
    ends = sorted({w for span in spans.values() for w in span})
    members: dict[int, list[SegmentEntry]] = {w: [] for w in ends}
    for entry in segments:
        first, last = spans[entry.id]
        for w in ends[bisect.bisect_left(ends, first): bisect.bisect_right(ends, last)]:
            members[w].append(entry)
    return members


def crosses(windows: Windows, entry: SegmentEntry) -> bool:
    """Whether a segment holds rows of more than one window (it must be cut)."""
    return windows.start(entry.min_time) != windows.start(entry.max_time)
