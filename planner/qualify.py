"""Resolving a parsed query against the catalog.

Tables are looked up through a callback (the engine's snapshot loader), so
the planner never touches storage itself.  sqlglot's ``qualify`` then
expands ``*``, resolves aliases and ordinals and checks every column; its
failures come back as :class:`ColumnNotFound` with the closest names.
Unquoted names match columns regardless of case, as in DuckDB.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any, Callable

import pyarrow as pa
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, groupconcat_sql
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from planner.logical import Memory, TableSource
from planner.parse import position
from storage.errors import ColumnNotFound, SqlError, TableNotFound, UnsupportedSql

Resolver = Callable[[str], TableSource]


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


@functools.cache
def _naming(dialect: str) -> Dialect:
    """``dialect`` writing ``string_agg`` as it is written (sqlglot writes it as ``listagg``), as DuckDB names it."""
    base = Dialect.get_or_raise(dialect)

    class Naming(type(base).Generator):
        TRANSFORMS = {**type(base).Generator.TRANSFORMS,
                      exp.GroupConcat: lambda self, e: groupconcat_sql(self, e, "string_agg", None, False)}

    named = type(base)()
    named.generator_class = Naming
    return named


def display_names(tree: exp.Select, dialect: str) -> tuple[str, ...]:
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
            names.append(node.sql(_naming(dialect), normalize_functions="lower"))
    return tuple(names)


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


TABLE_FUNCTIONS = ("read_parquet", "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_ndjson")
TableFunction = Callable[[str, str, dict], pa.Table]


def _table_function(node: exp.Expression) -> tuple[str, str, dict] | None:
    """(function, path, options) of ``read_parquet('...')`` and its kin."""
    name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
    if name not in TABLE_FUNCTIONS:
        return None
    args = ([node.this] if isinstance(node.this, exp.Expression) else []) + list(node.expressions)
    path, options = None, {}
    for arg in args:
        if isinstance(arg, exp.Literal) and arg.is_string and path is None:
            path = arg.this
        elif isinstance(arg, exp.EQ):
            value = arg.expression
            options[arg.this.name.lower()] = value.this if isinstance(value, exp.Literal) and value.is_string else value.sql()
    if path is None:
        raise UnsupportedSql(f"{name}() needs the file path as a string literal", *position(node))
    return name, path, options


def _refuse_unsupported_sources(tree: exp.Expression) -> None:
    """UnsupportedSql, at its position, for a FROM item Petrel cannot read yet (before qualify trips on it)."""
    for node in tree.find_all(exp.TableSample, exp.Pivot, exp.Unnest, exp.Lateral):
        if isinstance(node, exp.Unnest) and not isinstance(node.parent, (exp.From, exp.Join)):
            continue
        if isinstance(node, exp.Lateral) and isinstance(node.this, exp.Subquery) and isinstance(node.parent, exp.Join) \
                and not node.args.get("view"):
            continue  # a LATERAL subquery joined to what precedes it: planner/lateral.py
        what = {exp.TableSample: "TABLESAMPLE / USING SAMPLE", exp.Pivot: "PIVOT and UNPIVOT",
                exp.Unnest: "UNNEST in FROM", exp.Lateral: "LATERAL"}[type(node)]
        # TABLESAMPLE 10% has no name of its own: point at the table it samples
        line, column = position(node.parent if isinstance(node, exp.TableSample) else node)
        raise UnsupportedSql(f"{what} is not supported yet", line, column)


def qualify_query(tree: exp.Query, resolve: Callable[[str], Any], namespace: str, dialect: str,
                  table_function: TableFunction | None = None) -> tuple[exp.Expression, dict[str, Any]]:
    """Resolve every table (catalog tables, registered tables, table functions) and every column."""
    original = tree
    _refuse_unsupported_sources(tree)
    tree = tree.copy()
    ctes = {c.alias for c in tree.find_all(exp.CTE)}
    sources: dict[str, Any] = {}
    for index, table in enumerate(list(tree.find_all(exp.Table))):
        if isinstance(table.this, exp.Identifier) or table.this is None:
            continue
        found = _table_function(table.this)
        if found is None:
            raise UnsupportedSql(f"table function {table.this.sql()[:60]} is not supported; "
                                 f"use one of {', '.join(TABLE_FUNCTIONS)}", *position(table))
        if table_function is None:
            raise UnsupportedSql("table functions are not available here", *position(table))
        name = f"_file{index}"
        sources[name] = Memory(name, table_function(*found))
        alias = table.alias or found[0]
        table.replace(exp.Table(this=exp.to_identifier(name), alias=exp.TableAlias(this=exp.to_identifier(alias))))
    for table in tree.find_all(exp.Table):
        name = table.name
        if (name in ctes and not table.db) or name in sources:
            continue
        if table.catalog or (table.db and table.db != namespace):
            raise TableNotFound(
                f"table {table.sql(dialect)} is outside this session's namespace {namespace!r}; "
                "open a session on that namespace to query it"
            )
        sources[name] = resolve(name)
    schema = {}
    real: dict[str, str] = {}
    for name, source in sources.items():
        arrow = source.table.schema if isinstance(source, Memory) else source.schema
        schema[name] = {f.name: sql_type(f.type) for f in arrow}
        for field_name in arrow.names:
            real.setdefault(field_name.lower(), field_name)
    for table in tree.find_all(exp.Table):
        if table.db:
            table.set("db", None)
    try:
        qualified = qualify(tree, schema=schema, dialect=dialect, quote_identifiers=True)
    except OptimizeError as error:
        first = next(iter(sources.values()), None)
        if first is not None and not isinstance(first, Memory):
            raise _column_error(str(error), original, first) from None
        raise SqlError(f"cannot resolve the query: {str(error).splitlines()[0]}") from None
    except SqlglotError as error:
        raise SqlError(f"cannot resolve the query: {error}") from None
    known = {n for s in schema.values() for n in s}

    def restore(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.table and node.name not in known and node.name.lower() in real:
            return exp.column(real[node.name.lower()], table=node.table, quoted=True)
        return node

    return qualified.transform(restore, copy=False), sources
