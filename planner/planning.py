"""SQL text to an optimized, distributed plan: the planner's one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from sqlglot import exp

from planner.constructs import check_constructs
from planner.context import PlanContext
from planner.logical import Plan
from planner.parse import Statement, parse, position
from planner.quantified import rewrite_row_in_subquery
from planner.qualify import Resolver, TableFunction, display_names, qualify_query
from planner.relational import QueryBuilder
from planner.rules import optimize
from storage.errors import PetrelError, UnsupportedSql


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
    table_function: TableFunction | None = None,
) -> QueryPlan:
    """Parse, qualify against the tables ``resolve`` returns, build and optimize."""
    context = context or PlanContext()
    statement = parse(sql, dialect)
    check_constructs(statement.tree)
    tree, sources = qualify_query(statement.tree, resolve, namespace, statement.dialect, table_function)
    tree = rewrite_row_in_subquery(tree)
    names = None
    if isinstance(statement.tree, exp.Select):
        names = display_names(statement.tree, statement.dialect) or None
        if names is not None and len(names) != len(tree.expressions):
            names = None
    try:
        logical = QueryBuilder(sources).query(tree, {}, names)
        optimized = optimize(logical, context)
    except PetrelError:
        raise
    except Exception as error:  # a shape the builder or a rule does not handle: refuse it, never crash
        raise UnsupportedSql(f"this query's shape is not supported yet ({type(error).__name__}: {str(error)[:120]}); "
                             "try writing it another way", *position(statement.tree)) from error
    return QueryPlan(sql, statement, logical, optimized, context)
