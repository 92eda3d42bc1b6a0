"""Place the exchange: what runs in every fragment, what runs after the gather.

Operators that work row by row (the scan, filters, projections) run inside
the fragments; the first operator above them that needs all rows at once
gets a Gather below it.  Later rules push parts of those operators (partial
aggregates, top-k, limits) down through the Gather.
"""

from __future__ import annotations

from planner.context import PlanContext
from planner.logical import Filter, Gather, Plan, Project, Scan


def distribute(plan: Plan, context: PlanContext) -> Plan:
    if not context.distributed:
        return plan
    plan, local = _place(plan)
    return Gather(plan) if local else plan


def _place(plan: Plan) -> tuple[Plan, bool]:
    if isinstance(plan, Scan):
        return plan, True
    if not plan.inputs:
        return plan, False
    placed = [_place(child) for child in plan.inputs]
    if isinstance(plan, (Filter, Project)) and all(local for _, local in placed):
        return plan.with_inputs(*(p for p, _ in placed)), True
    children = [Gather(p) if local else p for p, local in placed]
    return plan.with_inputs(*children), False
