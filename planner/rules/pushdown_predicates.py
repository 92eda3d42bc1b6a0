"""Move WHERE conditions as far down the plan as they stay exact, into the scans.

A Filter's conditions travel down through renaming projections, into both
sides of inner and cross joins (a condition over both sides becomes the
join's condition, which ``reorder_joins`` turns into keys), into the
preserved side of left, semi, anti and scalar joins, and finally into the
scan, where the Parquet reader applies them batch by batch and skips row
groups by their statistics.  A condition that can go no further stays in
a Filter at the lowest place it reached.
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from planner.context import PlanContext
from planner.joins import column, referenced
from planner.logical import Filter, Join, Plan, Project, Scan
from planner.predicates import conjuncts

#: joins whose every output row carries its left input's row unchanged
PRESERVES_LEFT = ("left", "semi", "anti", "anti_in", "single")


def pushdown_predicates(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(pushdown_predicates(child, context) for child in plan.inputs))
    if isinstance(plan, Filter):
        return push(plan.input, list(conjuncts(plan.condition)))
    if isinstance(plan, Join) and plan.kind in ("inner", "cross") and plan.condition is not None:
        inner = dataclasses.replace(plan, condition=None)
        return push(inner, list(conjuncts(plan.condition)))
    return plan


def push(plan: Plan, conditions: list[exp.Expression]) -> Plan:
    """``plan`` with ``conditions`` applied as far down as each can go."""
    if not conditions:
        return plan
    if isinstance(plan, Filter):
        return push(plan.input, list(conjuncts(plan.condition)) + conditions)
    if isinstance(plan, Scan):
        condition = exp.and_(*([plan.filter] if plan.filter is not None else []), *conditions)
        return dataclasses.replace(plan, filter=condition)
    if isinstance(plan, Project):
        return _through_project(plan, conditions)
    if isinstance(plan, Join):
        return _through_join(plan, conditions)
    return _filter(plan, conditions)


def _filter(plan: Plan, conditions: list[exp.Expression]) -> Plan:
    return Filter(plan, exp.and_(*conditions)) if conditions else plan


def _through_project(plan: Project, conditions: list[exp.Expression]) -> Plan:
    """Conditions on columns the projection only renames, in the names below it."""
    renames = {}
    for name, expr in zip(plan.names, plan.exprs):
        if isinstance(expr, exp.Column) and not expr.table and plan.names.count(name) == 1:
            renames[name] = expr.name
    below, above = [], []
    for condition in conditions:
        if referenced(condition) <= set(renames):
            below.append(condition.transform(lambda n: _renamed(n, renames) if isinstance(n, exp.Column) else n))
        else:
            above.append(condition)
    return _filter(plan.with_inputs(push(plan.input, below)), above)


def _renamed(node: exp.Column, renames: dict[str, str]) -> exp.Column:
    """The column ``node`` under its name below the projection, keeping its position in the query text."""
    renamed = column(renames[node.name])
    if isinstance(node.this, exp.Expression):
        renamed.this.meta.update(node.this.meta)
    return renamed


def _through_join(plan: Join, conditions: list[exp.Expression]) -> Plan:
    left_names, right_names = set(plan.left.columns), set(plan.right.columns)
    left, right, on, above = [], [], [], []
    for condition in conditions:
        used = referenced(condition)
        if plan.kind in ("inner", "cross"):
            if used <= left_names:
                left.append(condition)
            elif used <= right_names:
                right.append(condition)
            else:
                on.append(condition)
        elif plan.kind in PRESERVES_LEFT and used <= left_names:
            left.append(condition)
        else:
            above.append(condition)
    joined = plan.with_inputs(push(plan.left, left), push(plan.right, right))
    if on:
        existing = [joined.condition] if joined.condition is not None else []
        joined = dataclasses.replace(joined, kind="inner", condition=exp.and_(*existing, *on))
    return _filter(joined, above)
