"""Filter by IN / EXISTS subqueries as early as possible.

A semi or anti join (``IN``, ``EXISTS`` and their negations) keeps or drops
rows of its left input by their own columns alone.  Above a join, it moves
down to the side of that join whose columns it reads, so it filters that
side before the join rather than the join's (often far larger) result:
TPC-H Q18's ``o_orderkey IN (...)`` then cuts ``orders`` to a few rows
before they meet ``lineitem``.

Moving it is exact for the side every row of the join comes from: either
side of an inner or cross join, the preserved side of a LEFT join (or of
the join that attaches a scalar subquery's value), the input of another
semi join.  The
null-extended side of an outer join keeps its place (a filter there would
turn dropped rows into NULL-extended ones).
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from planner.context import PlanContext
from planner.logical import Join, Plan

FILTERING_KINDS = ("semi", "anti", "anti_in")


def pushdown_semi_joins(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(pushdown_semi_joins(child, context) for child in plan.inputs))
    if isinstance(plan, Join) and plan.kind in FILTERING_KINDS:
        return _sink(plan)
    return plan


def _sink(semi: Join) -> Plan:
    """``semi`` moved as far down its left input's joins as its columns allow."""
    below = semi.left
    if not isinstance(below, Join) or below.kind not in ("inner", "cross", "left", "single", *FILTERING_KINDS):
        return semi
    used = set(semi.left_keys)
    if semi.condition is not None:
        used |= {c.name for c in semi.condition.find_all(exp.Column)} - set(semi.right.columns)
    if used <= set(below.left.columns):
        return below.with_inputs(_sink(dataclasses.replace(semi, left=below.left)), below.right)
    if below.kind in ("inner", "cross") and used <= set(below.right.columns):
        return below.with_inputs(below.left, _sink(dataclasses.replace(semi, left=below.right)))
    return semi
