"""Resolving a parsed query against the catalog.

Tables are looked up through a callback (the engine's snapshot loader), so
the planner never touches storage itself.  sqlglot's ``qualify`` then
expands ``*``, resolves aliases and ordinals and checks every column; its
failures come back as :class:`ColumnNotFound` with the closest names.
Unquoted names match columns regardless of case, as in DuckDB.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from planner.logical import TableSource
from planner.parse import position
from storage.errors import ColumnNotFound, SqlError, TableNotFound, UnsupportedSql

Resolver = Callable[[str], TableSource]


@dataclass(frozen=True)
class Qualified:
    """A single-table SELECT with every column resolved to a real column name."""

    select: exp.Select
    source: TableSource | None
    alias: str | None
    names: tuple[str, ...]


def sql_type(type_: pa.DataType) -> str:
    """A SQL type name for an Arrow type, as sqlglot's schema wants it."""
    if pa.types.is_struct(type_):
        return "STRUCT<" + ", ".join(f'"{f.name}" {sql_type(f.type)}' for f in type_) + ">"
    if pa.types.is_boolean(type_):
        return "BOOLEAN"
    if pa.types.is_integer(type_):
        return "BIGINT"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "DOUBLE"
    if pa.types.is_timestamp(type_):
        return "TIMESTAMPTZ" if type_.tz else "TIMESTAMP"
    if pa.types.is_date(type_):
        return "DATE"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return f"{sql_type(type_.value_type)}[]"
    return "VARCHAR"


def qualify_select(tree: exp.Query, resolve: Resolver, namespace: str, dialect: str) -> Qualified:
    """Resolve the tables and columns of a single-table SELECT."""
    if isinstance(tree, (exp.Union, exp.Intersect, exp.Except)):
        raise UnsupportedSql("set operations (UNION, INTERSECT, EXCEPT) are not supported yet")
    if not isinstance(tree, exp.Select):
        raise UnsupportedSql(f"{tree.key.upper()} queries are not supported; write a SELECT")
    if tree.args.get("with_") or tree.args.get("with"):
        raise UnsupportedSql("WITH (common table expressions) is not supported yet")
    if tree.args.get("joins"):
        raise UnsupportedSql("joins are not supported yet; query one table at a time")
    for node in tree.find_all(exp.Window):
        raise UnsupportedSql(f"window functions are not supported yet: {node.sql(dialect)[:80]}")
    for node in tree.find_all(exp.Subquery, exp.Exists):
        raise UnsupportedSql(f"subqueries are not supported yet: {node.sql(dialect)[:80]}")
    if tree.args.get("qualify"):
        raise UnsupportedSql("QUALIFY is not supported yet")
    names = _display_names(tree, dialect)
    from_ = tree.args.get("from_") or tree.args.get("from")
    if from_ is None:
        return Qualified(tree, None, None, names)
    table = from_.this
    if not isinstance(table, exp.Table) or not table.name:
        raise UnsupportedSql(f"FROM {table.sql(dialect)[:60]} is not supported yet; query a table by name")
    if table.catalog or (table.db and table.db != namespace):
        raise TableNotFound(
            f"table {table.sql(dialect)} is outside this session's namespace {namespace!r}; "
            "open a session on that namespace to query it"
        )
    source = resolve(table.name)
    alias = table.alias_or_name
    schema = {table.name: {f.name: sql_type(f.type) for f in source.schema}}
    try:
        qualified = qualify(tree.copy(), schema=schema, dialect=dialect, quote_identifiers=True)
    except OptimizeError as error:
        raise _column_error(str(error), tree, source) from None
    except SqlglotError as error:
        raise SqlError(f"cannot resolve the query: {error}") from None
    by_lower = {}
    for name in source.schema.names:
        by_lower.setdefault(name.lower(), name)
    real = set(source.schema.names)

    def restore(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.table:
            name = node.name
            actual = name if name in real else by_lower.get(name.lower())
            if actual is None:
                raise _column_error(f"Column '{name}' could not be resolved", tree, source)
            return exp.column(actual, table=node.table, quoted=True)
        return node

    qualified = qualified.transform(restore, copy=False)
    if len(names) != len(qualified.expressions):  # a * was expanded: name columns after the table
        names = tuple(_expanded_name(e, by_lower) for e in qualified.expressions)
    return Qualified(qualified, source, alias, names)


def _display_names(tree: exp.Select, dialect: str) -> tuple[str, ...]:
    """Column names as the user wrote them (alias, column name, or the expression's text)."""
    names = []
    for node in tree.expressions:
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star)):
            return ()
        if isinstance(node, exp.Alias):
            names.append(node.alias)
        elif isinstance(node, exp.Column):
            names.append(node.name)
        elif isinstance(node, exp.Dot):
            names.append(node.name)
        else:
            names.append(node.sql(dialect, normalize_functions="lower"))
    return tuple(names)


def _expanded_name(node: exp.Expression, by_lower: dict[str, str]) -> str:
    alias = node.alias_or_name
    return by_lower.get(alias.lower(), alias) if alias else node.sql()


def _column_error(message: str, tree: exp.Select, source: TableSource) -> SqlError:
    match = re.search(r"Column '\"?([^'\"]+)\"?' could not be resolved", message)
    if not match:
        return SqlError(f"cannot resolve the query: {message.splitlines()[0]}")
    name = match.group(1)
    line = column = None
    for node in tree.find_all(exp.Column):
        if node.name.lower() == name.lower():
            line, column = position(node)
            break
    known = list(source.schema.names)
    aliases = [e.alias for e in tree.expressions if isinstance(e, exp.Alias)]
    close = difflib.get_close_matches(name, known + aliases, n=3, cutoff=0.5)
    if not close:
        close = [k for k in known if name.lower() in k.lower() or k.lower() in name.lower()][:3]
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"columns: {', '.join(known)}"
    return ColumnNotFound(f"column {name!r} does not exist in table {source.name}; {hint}", line, column)
