"""SQL text to an optimized, distributed plan: the planner's one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
from sqlglot import exp

from planner.constructs import check_constructs
from planner.context import PlanContext
from planner.logical import Memory, Plan
from planner.recursive import is_recursive, materialize
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
    execute: Callable[[QueryPlan], pa.Table] | None = None,
) -> QueryPlan:
    """Parse, qualify against the tables ``resolve`` returns, build and optimize.

    ``execute`` runs a plan to its rows: given, a WITH RECURSIVE query's
    recursive CTEs are computed with it first (see :mod:`planner.recursive`);
    without it they are refused.
    """
    context = context or PlanContext()
    statement = parse(sql, dialect)
    check_constructs(statement.tree)
    given, memories = statement.tree, {}
    if execute is not None and is_recursive(given):
        def run(text: str, tables: dict[str, Memory]) -> pa.Table:
            return execute(plan_query(text, _with_tables(resolve, tables), namespace, None, context,
                                      table_function, execute))

        given, memories = materialize(given, run)
    tree, sources = qualify_query(given, _with_tables(resolve, memories), namespace, statement.dialect, table_function)
    tree = rewrite_row_in_subquery(tree)
    names = None
    if isinstance(given, exp.Select):
        names = display_names(given, statement.dialect) or None
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


def _with_tables(resolve: Resolver, tables: dict[str, Memory]) -> Resolver:
    """``resolve``, with the tables in memory ``tables`` found by name first."""
    if not tables:
        return resolve
    return lambda name: tables[name] if name in tables else resolve(name)
