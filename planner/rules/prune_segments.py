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
    if plan.time_range is not None:
        segments = in_time_range(plan.source, *plan.time_range)
    by_time = total - len(segments)
    if plan.filter is not None and segments:
        compiler = ExpressionCompiler(plan.source.schema, context.now)
        time_column = plan.source.meta.time_column if plan.time_range is not None else None
        tests = [t for t in (_test(node, compiler) for node in conjuncts(plan.filter))
                 if t is not None and not _decided_by_time_range(t, time_column)]
        if tests:
            segments = [s for s in segments if all(_may_match(t, s) for t in tests)]
    by_stats = total - by_time - len(segments)
    return dataclasses.replace(plan, segments=tuple(segments), pruning=Pruning(total, by_time, by_stats))


class _Times:
    """A snapshot's segment times as arrays, so time pruning costs array operations, not a call per segment."""

    def __init__(self, segments: tuple[SegmentEntry, ...]) -> None:
        self.known = np.array([s.min_time is not None and s.max_time is not None for s in segments], dtype=bool)
        self.low = np.array([s.min_time if s.min_time is not None else 0 for s in segments], dtype=np.int64)
        self.high = np.array([s.max_time if s.max_time is not None else 0 for s in segments], dtype=np.int64)
        # a segment without times is kept when it has rows and a min time (what _overlaps decides)
        self.unknown_kept = np.array([s.rows > 0 and s.min_time is not None for s in segments], dtype=bool)


_TIMES: weakref.WeakKeyDictionary[TableSource, _Times] = weakref.WeakKeyDictionary()


def in_time_range(source: TableSource, low: int | None, high: int | None) -> tuple[SegmentEntry, ...]:
    """The segments of ``source`` whose [min_time, max_time] meets [low, high] (inclusive; None is open)."""
    segments = source.segments
    times = _TIMES.get(source)
    if times is None:
        times = _TIMES[source] = _Times(segments)
    if low is None and high is None:
        return tuple(segments)
    overlap = np.ones(len(segments), dtype=bool)
    if low is not None:
        overlap &= times.high >= low
    if high is not None:
        overlap &= times.low <= high
    keep = np.where(times.known, overlap, times.unknown_kept)
    return tuple(segments[i] for i in np.flatnonzero(keep))


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


def _may_match(test, segment: SegmentEntry) -> bool:
    if isinstance(test, tuple):
        return any(_may_match(t, segment) for t in test[1])
    return may_match(test, segment)


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
