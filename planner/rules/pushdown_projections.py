"""Read only the columns the query uses.

Walking down from the result, each operator learns which of its output
columns the operators above read; a projection drops the columns nobody
reads, a join passes each side what is read from it plus its keys and
condition, and a scan reads only what is left.  Columns used only by the
scan's own filter are read for filtering but not output.
"""

from __future__ import annotations

import dataclasses

from planner.context import PlanContext
from planner.joins import referenced
from planner.logical import Aggregate, Filter, Join, Limit, Plan, Project, Scan, Sort, Window


def pushdown_projections(plan: Plan, context: PlanContext) -> Plan:
    return _prune(plan, None)


def _prune(plan: Plan, needed: set[str] | None, counted: bool = False) -> Plan:
    """``plan`` cut to the output columns in ``needed`` (None: every column).

    A projection keeps one column even when none is read (rows without
    columns lose their count), except right above a scan that an aggregate
    only counts (``counted``), where the reader counts the rows itself.
    """
    if isinstance(plan, Scan):
        if needed is None:
            return plan
        fields = tuple(n for n in plan.source.schema.names if n in needed)
        return dataclasses.replace(plan, fields=fields)
    if isinstance(plan, Project):
        names, exprs = plan.names, plan.exprs
        if needed is not None:
            kept = [i for i, n in enumerate(names) if n in needed]
            if not kept and names and not (counted and isinstance(plan.input, Scan)):
                kept = [0]
            names, exprs = tuple(names[i] for i in kept), tuple(exprs[i] for i in kept)
            plan = dataclasses.replace(plan, names=names, exprs=exprs)
        below = set().union(*(referenced(e) for e in exprs)) if exprs else set()
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Aggregate):
        below = set(plan.keys) | {c for a in plan.aggregates for c in (a.arg, *a.by) if c is not None}
        return plan.with_inputs(_prune(plan.input, below, counted=True))
    if isinstance(plan, Filter):
        below = None if needed is None else needed | referenced(plan.condition)
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Sort):
        below = None if needed is None else needed | {k.column for k in plan.keys}
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Limit):
        return plan.with_inputs(_prune(plan.input, needed))
    if isinstance(plan, Window):
        if needed is None:
            return plan.with_inputs(_prune(plan.input, None))
        below = needed - {c.name for c in plan.calls}
        for call in plan.calls:
            below |= set(call.args) | set(call.partition) | {k.column for k in call.order}
        return plan.with_inputs(_prune(plan.input, below))
    if isinstance(plan, Join):
        used = set(plan.columns) if needed is None else set(needed)
        used |= set(plan.left_keys) | set(plan.right_keys)
        if plan.condition is not None:
            used |= referenced(plan.condition)
        left, right = set(plan.left.columns), set(plan.right.columns)
        return plan.with_inputs(_prune(plan.left, used & left), _prune(plan.right, used & right))
    return plan.with_inputs(*(_prune(child, None) for child in plan.inputs))
