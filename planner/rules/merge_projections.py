"""Fold a projection that only renames columns into its neighbour.

The front-end names every column of a FROM item ``alias.column`` with a
projection over the scan; once the rules above have used those names, a
projection over such a rename reads the scan's own columns instead, so a
single-table query keeps one projection over its scan (the shape the
manifest answers, top-k scans and limit pushdown look for) and the
executor does not copy columns just to rename them.  Likewise the last
projection, which gives the select list its names, names the results of
the projection below it when it only renames them (each once).
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from planner.context import PlanContext
from planner.logical import Plan, Project


def merge_projections(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(merge_projections(child, context) for child in plan.inputs))
    if isinstance(plan, Project) and isinstance(plan.input, Project):
        inner = plan.input
        renames = _renames(inner)
        if renames is not None:  # the lower one renames: read its input's columns
            exprs = tuple(e.transform(lambda n: _renamed(n, renames)) for e in plan.exprs)
            return dataclasses.replace(plan, input=inner.input, exprs=exprs)
        picked = [e.name if isinstance(e, exp.Column) and not e.table else None for e in plan.exprs]
        if None not in picked and len(set(inner.names)) == len(inner.names) and len(set(picked)) == len(picked):
            by_name = dict(zip(inner.names, inner.exprs))  # the upper one renames: name the lower one's results
            return dataclasses.replace(inner, names=plan.names, exprs=tuple(by_name[n] for n in picked))
    return plan


def _renames(project: Project) -> dict[str, str] | None:
    """Output name -> input column of a projection that only renames (None when it computes anything)."""
    if len(set(project.names)) != len(project.names):
        return None
    renames = {}
    for name, expr in zip(project.names, project.exprs):
        if not isinstance(expr, exp.Column) or expr.table:
            return None
        renames[name] = expr.name
    return renames


def _renamed(node: exp.Expression, renames: dict[str, str]) -> exp.Expression:
    if not isinstance(node, exp.Column) or node.table or node.name not in renames:
        return node
    identifier = exp.Identifier(this=renames[node.name], quoted=True)
    if isinstance(node.this, exp.Expression):
        identifier.meta.update(node.this.meta)  # keep its position in the query text
    return exp.Column(this=identifier)
