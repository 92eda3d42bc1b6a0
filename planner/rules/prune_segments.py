"""Skip segments that cannot hold a matching row, using manifest statistics.

First the time range: a segment whose [min_time, max_time] misses the
scan's time range is dropped.  Then column min/max/null counts: a segment
is dropped when some conjunct of the filter (``=``, IN, ranges, BETWEEN,
IS [NOT] NULL, or an OR of these) cannot hold for any value in its bounds.
A column the segment lacks is NULL throughout, so comparisons on it fail.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from sqlglot import exp

from planner.context import PlanContext
from planner.expressions import ExpressionCompiler
from planner.logical import Plan, Pruning, Scan, TableSource
from planner.predicates import Bound, bound, conjuncts
from planner.rules.extract_time_range import micros_of
from storage.segment import SegmentEntry


def prune_segments(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(prune_segments(child, context) for child in plan.inputs))
    if not isinstance(plan, Scan) or plan.segments is not None:
        return plan
    segments = plan.source.segments
    total = len(segments)
    manifest = manifest_of(plan.source)
    kept = np.arange(total)
    if plan.time_range is not None:
        kept = manifest.in_time_range(*plan.time_range)
    by_time = total - len(kept)
    if plan.filter is not None and len(kept):
        compiler = ExpressionCompiler(plan.source.schema, context.now)
        time_column = plan.source.meta.time_column if plan.time_range is not None else None
        tests = [t for t in (_test(node, compiler) for node in conjuncts(plan.filter))
                 if t is not None and not _decided_by_time_range(t, time_column)]
        for test in tests:
            kept = kept[manifest.may_match(test, kept)]
    by_stats = total - by_time - len(kept)
    chosen = segments if len(kept) == total else tuple(segments[i] for i in kept)
    return dataclasses.replace(plan, segments=chosen, pruning=Pruning(total, by_time, by_stats))


def in_time_range(source: TableSource, low: int | None, high: int | None) -> tuple[SegmentEntry, ...]:
    """The segments of ``source`` whose [min_time, max_time] meets [low, high] (inclusive; None is open)."""
    return tuple(source.segments[i] for i in manifest_of(source).in_time_range(low, high))


class _Manifest:
    """A snapshot's segment statistics as arrays, built once per snapshot (per column when first tested).

    Pruning then costs array operations over the segments, not a Python
    call per segment and per conjunct.
    """

    def __init__(self, segments: tuple[SegmentEntry, ...]) -> None:
        self.segments = segments
        self.rows = np.array([s.rows for s in segments], dtype=np.int64)
        self.known = np.array([s.min_time is not None and s.max_time is not None for s in segments], dtype=bool)
        self.low = np.array([s.min_time if s.min_time is not None else 0 for s in segments], dtype=np.int64)
        self.high = np.array([s.max_time if s.max_time is not None else 0 for s in segments], dtype=np.int64)
        # a segment without times is kept when it has rows and a min time
        self.unknown_kept = (self.rows > 0) & np.array([s.min_time is not None for s in segments], dtype=bool)
        self._columns: dict[str, tuple] = {}

    def in_time_range(self, low: int | None, high: int | None) -> np.ndarray:
        """Indices of the segments that meet [low, high]."""
        overlap = np.ones(len(self.segments), dtype=bool)
        if low is not None:
            overlap &= self.high >= low
        if high is not None:
            overlap &= self.low <= high
        if low is None and high is None:
            return np.arange(len(self.segments))
        return np.flatnonzero(np.where(self.known, overlap, self.unknown_kept))

    def column(self, name: str) -> tuple:
        """(present, has stats, null counts, has bounds, mins, maxes) of column ``name`` in every segment."""
        found = self._columns.get(name)
        if found is None:
            stats = [s.columns.get(name) if name in s.schema.names else None for s in self.segments]
            present = np.array([name in s.schema.names for s in self.segments], dtype=bool)
            known = np.array([c is not None for c in stats], dtype=bool)
            nulls = np.array([c.null_count if c is not None else 0 for c in stats], dtype=np.int64)
            bounded = np.array([c is not None and c.min is not None and c.max is not None for c in stats], dtype=bool)
            lows = np.empty(len(stats), dtype=object)
            highs = np.empty(len(stats), dtype=object)
            lows[:] = [c.min if c is not None else None for c in stats]
            highs[:] = [c.max if c is not None else None for c in stats]
            found = self._columns[name] = (present, known, nulls, bounded, lows, highs)
        return found

    def may_match(self, test, kept: np.ndarray) -> np.ndarray:
        """For each segment index in ``kept``, False only when no row of it can satisfy ``test``."""
        if isinstance(test, tuple):  # ("or", tests)
            keep = np.zeros(len(kept), dtype=bool)
            for inner in test[1]:
                keep |= self.may_match(inner, kept)
            return keep
        present, known, nulls, bounded, lows, highs = (a[kept] for a in self.column(test.column))
        rows = self.rows[kept]
        if test.op == "null":
            return ~present | ~known | (nulls > 0)
        if test.op == "not_null":
            return present & (~known | (nulls < rows))
        decided = present & known & (nulls < rows) & bounded  # the ones the bounds decide
        keep = present & (~known | ((nulls < rows) & ~bounded))
        where = np.flatnonzero(decided)
        if len(where):
            keep[where] = self._compare(test, lows[where], highs[where], kept[where])
        return keep

    def _compare(self, test: Bound, lo: np.ndarray, hi: np.ndarray, indices: np.ndarray) -> np.ndarray:
        values = test.values
        if any(v is None for v in values) and test.op != "in":
            return np.zeros(len(lo), dtype=bool)
        try:
            if test.op == "eq":
                return np.asarray((lo <= values[0]) & (hi >= values[0]), dtype=bool)
            if test.op == "gt":
                return np.asarray(hi > values[0], dtype=bool)
            if test.op == "gte":
                return np.asarray(hi >= values[0], dtype=bool)
            if test.op == "lt":
                return np.asarray(lo < values[0], dtype=bool)
            if test.op == "lte":
                return np.asarray(lo <= values[0], dtype=bool)
            if test.op == "between":
                return np.asarray((hi >= values[0]) & (lo <= values[1]), dtype=bool)
            if test.op == "in":
                keep = np.zeros(len(lo), dtype=bool)
                for value in values:
                    if value is not None:
                        keep |= np.asarray((lo <= value) & (hi >= value), dtype=bool)
                return keep
        except TypeError:  # bounds and constant not comparable in Python: decide segment by segment
            return np.array([may_match(test, self.segments[i]) for i in indices], dtype=bool)
        return np.ones(len(lo), dtype=bool)


_MANIFESTS: weakref.WeakKeyDictionary[TableSource, _Manifest] = weakref.WeakKeyDictionary()


def manifest_of(source: TableSource) -> _Manifest:
    """The statistics arrays of a snapshot's segments (built once per snapshot, kept while it lives)."""
    found = _MANIFESTS.get(source)
    if found is None or found.segments is not source.segments:
        found = _MANIFESTS[source] = _Manifest(source.segments)
    return found


def _decided_by_time_range(test, time_column: str | None) -> bool:
    """A comparison on the time column: the time range already pruned by it (with the same bounds)."""
    return (isinstance(test, Bound) and test.column == time_column
            and test.op in ("eq", "gt", "gte", "lt", "lte", "between")
            and all(micros_of(v) is not None for v in test.values))


def _test(node: exp.Expression, compiler: ExpressionCompiler):
    """A Bound, or ("or", [tests]) for a disjunction of bounds; None if unusable."""
    if isinstance(node, exp.Paren):
        return _test(node.this, compiler)
    if isinstance(node, exp.Or):
        left, right = _test(node.this, compiler), _test(node.expression, compiler)
        if left is None or right is None:
            return None
        return ("or", [left, right])
    return bound(node, compiler)


def may_match(test: Bound, segment: SegmentEntry) -> bool:
    """False only when no row of ``segment`` can satisfy ``test``."""
    stats = segment.columns.get(test.column)
    if test.column not in segment.schema.names:
        return test.op == "null"
    if stats is None:
        return True
    if test.op == "null":
        return stats.null_count > 0
    if test.op == "not_null":
        return stats.null_count < segment.rows
    if stats.null_count >= segment.rows:
        return False  # only NULLs: no comparison holds
    lo, hi = stats.min, stats.max
    if lo is None or hi is None:
        return True
    try:
        values = test.values
        if any(v is None for v in values) and test.op != "in":
            return False
        if test.op == "eq":
            return lo <= values[0] <= hi
        if test.op == "gt":
            return hi > values[0]
        if test.op == "gte":
            return hi >= values[0]
        if test.op == "lt":
            return lo < values[0]
        if test.op == "lte":
            return lo <= values[0]
        if test.op == "between":
            return hi >= values[0] and lo <= values[1]
        if test.op == "in":
            return any(v is not None and lo <= v <= hi for v in values)
    except TypeError:  # bounds and constant not comparable in Python: keep the segment
        return True
    return True
