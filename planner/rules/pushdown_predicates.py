"""Move WHERE conditions into the scan, where the Parquet reader applies them.

A Filter directly above a Scan merges into the scan's filter, which the
reader evaluates batch by batch and uses to skip row groups by their
statistics.
"""

from __future__ import annotations

from sqlglot import exp

from planner.context import PlanContext
from planner.logical import Filter, Plan, Scan


def pushdown_predicates(plan: Plan, context: PlanContext) -> Plan:
    inputs = tuple(pushdown_predicates(child, context) for child in plan.inputs)
    plan = plan.with_inputs(*inputs)
    if isinstance(plan, Filter) and isinstance(plan.input, Scan):
        scan = plan.input
        condition = plan.condition if scan.filter is None else exp.and_(scan.filter, plan.condition)
        return Scan(scan.source, scan.fields, condition, scan.time_range, scan.limit, scan.segments, scan.pruning)
    return plan
