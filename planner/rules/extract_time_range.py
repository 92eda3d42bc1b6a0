"""Find the time range a query's WHERE clause allows on the time column.

Comparisons, BETWEEN, ``=`` and IN on the table's time column narrow the
scan's ``time_range`` (inclusive microseconds, None for an open end), which
segment pruning compares with each segment's min and max time first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from planner.context import PlanContext
from planner.expressions import ExpressionCompiler
from planner.logical import Plan, Scan
from planner.predicates import bound, conjuncts

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def micros_of(value) -> int | None:
    """Microseconds since the epoch of a datetime or date (naive ones are UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dt.date):
        return micros_of(dt.datetime(value.year, value.month, value.day))
    return None


def extract_time_range(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(extract_time_range(child, context) for child in plan.inputs))
    if not isinstance(plan, Scan) or plan.filter is None:
        return plan
    column = plan.source.meta.time_column
    if plan.source.schema.get_field_index(column) < 0:
        return plan
    compiler = ExpressionCompiler(plan.source.schema, context.now)
    low, high = None, None
    for node in conjuncts(plan.filter):
        found = bound(node, compiler)
        if found is None or found.column != column:
            continue
        values = [micros_of(v) for v in found.values]
        if any(v is None for v in values) and found.op != "in":
            continue
        new_low = new_high = None
        if found.op == "eq":
            new_low = new_high = values[0]
        elif found.op == "gt":
            new_low = values[0] + 1
        elif found.op == "gte":
            new_low = values[0]
        elif found.op == "lt":
            new_high = values[0] - 1
        elif found.op == "lte":
            new_high = values[0]
        elif found.op == "between":
            new_low, new_high = values
        elif found.op == "in":
            present = [v for v in values if v is not None]
            if not present:
                continue
            new_low, new_high = min(present), max(present)
        if new_low is not None:
            low = new_low if low is None else max(low, new_low)
        if new_high is not None:
            high = new_high if high is None else min(high, new_high)
    if low is None and high is None:
        return plan
    return dataclasses.replace(plan, time_range=(low, high))
