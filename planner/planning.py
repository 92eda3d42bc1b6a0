"""SQL text to an optimized, distributed plan: the planner's one entry point."""

from __future__ import annotations

from dataclasses import dataclass

from planner.build import build
from planner.context import PlanContext
from planner.logical import Plan
from planner.parse import Statement, parse
from planner.qualify import Resolver, qualify_select
from planner.rules import optimize


@dataclass(frozen=True)
class QueryPlan:
    """A query at every stage: parsed, as a logical plan, and optimized."""

    sql: str
    statement: Statement
    logical: Plan
    optimized: Plan
    context: PlanContext


def plan_query(
    sql: str,
    resolve: Resolver,
    namespace: str = "default",
    dialect: str | None = None,
    context: PlanContext | None = None,
) -> QueryPlan:
    """Parse, qualify against the tables ``resolve`` returns, build and optimize."""
    context = context or PlanContext()
    statement = parse(sql, dialect)
    qualified = qualify_select(statement.tree, resolve, namespace, statement.dialect)
    logical = build(qualified)
    return QueryPlan(sql, statement, logical, optimize(logical, context), context)
