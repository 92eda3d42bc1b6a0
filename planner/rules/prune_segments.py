"""Skip segments that cannot hold a matching row, using manifest statistics.

First the time range: a segment whose [min_time, max_time] misses the
scan's time range is dropped.  Then column min/max/null counts: a segment
is dropped when some conjunct of the filter (``=``, IN, ranges, BETWEEN,
IS [NOT] NULL, or an OR of these) cannot hold for any value in its bounds.
A column the segment lacks is NULL throughout, so comparisons on it fail.
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from planner.context import PlanContext
from planner.expressions import ExpressionCompiler
from planner.logical import Plan, Pruning, Scan
from planner.predicates import Bound, bound, conjuncts
from storage.segment import SegmentEntry


def prune_segments(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(prune_segments(child, context) for child in plan.inputs))
    if not isinstance(plan, Scan) or plan.segments is not None:
        return plan
    segments = list(plan.source.segments)
    total = len(segments)
    if plan.time_range is not None:
        low, high = plan.time_range
        segments = [s for s in segments if _overlaps(s, low, high)]
    by_time = total - len(segments)
    if plan.filter is not None and segments:
        compiler = ExpressionCompiler(plan.source.schema, context.now)
        tests = [t for t in (_test(node, compiler) for node in conjuncts(plan.filter)) if t is not None]
        if tests:
            segments = [s for s in segments if all(_may_match(t, s) for t in tests)]
    by_stats = total - by_time - len(segments)
    return dataclasses.replace(plan, segments=tuple(segments), pruning=Pruning(total, by_time, by_stats))


def _overlaps(segment: SegmentEntry, low: int | None, high: int | None) -> bool:
    if segment.min_time is None or segment.max_time is None:
        return segment.rows > 0 and (segment.min_time is not None or low is None and high is None)
    if low is not None and segment.max_time < low:
        return False
    if high is not None and segment.min_time > high:
        return False
    return True


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
