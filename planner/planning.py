"""SQL text to an optimized, distributed plan: the planner's one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlglot import exp

from planner.build import build
from planner.context import PlanContext
from planner.logical import Plan
from planner.parse import Statement, parse, position
from planner.qualify import Resolver, TableFunction, _display_names, needs_relational, qualify_query, qualify_select
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
    try:
        logical = None
        if not needs_relational(statement.tree):
            from_ = statement.tree.args.get("from_") or statement.tree.args.get("from")
            source = resolve(from_.this.name) if from_ is not None else None
            if source is None or hasattr(source, "meta"):
                logical = build(qualify_select(statement.tree, resolve, namespace, statement.dialect))
        if logical is None:
            logical = _relational(statement, resolve, namespace, table_function)
        return QueryPlan(sql, statement, logical, optimize(logical, context), context)
    except PetrelError:
        raise
    except (AssertionError, KeyError, IndexError, AttributeError, TypeError, pa.ArrowException) as error:
        # a shape the planner has no rule for must still read as a refusal, never as a crash
        line, column = position(statement.tree)
        raise UnsupportedSql(f"Petrel cannot plan this query yet ({type(error).__name__}: {str(error)[:120]}); "
                             "rewrite the part it names, or report the query", line or 1, column or 1) from error


def _relational(statement: Statement, resolve: Resolver, namespace: str, table_function: Any) -> Plan:
    tree, sources = qualify_query(statement.tree, resolve, namespace, statement.dialect, table_function)
    names = None
    if isinstance(statement.tree, exp.Select):
        names = _display_names(statement.tree, statement.dialect) or None
        if names is not None and len(names) != len(tree.expressions):
            names = None
    return QueryBuilder(sources).query(tree, {}, names)
