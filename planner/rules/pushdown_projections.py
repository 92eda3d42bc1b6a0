"""Read only the columns the query uses.

The scan's output is cut to the columns that the operators above it
reference, up to the first operator that computes new columns.  Columns
used only by the scan's own filter are read for filtering but not output.
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from planner.context import PlanContext
from planner.logical import Aggregate, Filter, Limit, Plan, Project, Scan, Sort


def referenced(node: exp.Expression) -> set[str]:
    """Names of the columns an expression reads (struct fields read their column)."""
    return {c.name for c in node.find_all(exp.Column)}


def pushdown_projections(plan: Plan, context: PlanContext) -> Plan:
    return _prune(plan, None)


def _prune(plan: Plan, needed: set[str] | None) -> Plan:
    if isinstance(plan, Scan):
        if needed is None:
            return plan
        fields = tuple(n for n in plan.source.schema.names if n in needed)
        return dataclasses.replace(plan, fields=fields)
    if isinstance(plan, Project):
        below = set().union(*(referenced(e) for e in plan.exprs)) if plan.exprs else set()
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Aggregate):
        below = set(plan.keys) | {a.arg for a in plan.aggregates if a.arg is not None}
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Filter):
        below = None if needed is None else needed | referenced(plan.condition)
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Sort):
        below = None if needed is None else needed | {k.column for k in plan.keys}
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Limit):
        return plan.with_inputs(_prune(plan.input, needed))
    return plan.with_inputs(*(_prune(child, None) for child in plan.inputs))
