"""A monitor's query, checked against the warehouse and turned into the SQL each slot runs.

A monitor query is one SELECT over one warehouse table: the group columns
first, the value last, no time filter (the slot's window is added here).
:func:`check_query` refuses anything else, naming the clause, and fills in
the table, time column, group and value columns of the spec.

Evaluation SQL: :func:`windowed_sql` is the query of one monitor over one
window.  :func:`shared_sql` is the query of several monitors over the same
table, group columns and window: one scan computing every monitor's value,
each monitor's own WHERE applied to its aggregates only (``agg(x) FILTER
(WHERE c)``, written as ``agg(CASE WHEN c THEN x END)``, which the engine
runs as a plain aggregate) plus a ``count_if(c)`` that says which groups the
monitor saw at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Callable

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from engine.monitors.definition import MonitorSpec
from storage.errors import InvalidMonitor, PetrelError, TableNotFound

DIALECT = "duckdb"


def parse_query(query: str, name: str) -> exp.Select:
    """The one SELECT of monitor ``name``'s query, or InvalidMonitor saying where it does not parse."""
    try:
        statements = sqlglot.parse(query, read=DIALECT)
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        raise InvalidMonitor(
            f"monitor {name!r}: query does not parse (line {error.get('line')}, column {error.get('col')}): "
            f"{error.get('description', exc)}"
        ) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        raise InvalidMonitor(f"monitor {name!r}: query must be one SELECT (no UNION, no several statements)")
    return statements[0]


def _output_name(expression: exp.Expression) -> str:
    return expression.alias_or_name or expression.sql(DIALECT)


def check_query(spec: MonitorSpec, table_meta: Callable[[str], Any], probe: Callable[[str], pa.Table]) -> MonitorSpec:
    """``spec`` with its table, time, group and value columns, or InvalidMonitor naming the clause at fault.

    ``table_meta(name)`` gives a warehouse table's metadata (TableNotFound if
    there is none); ``probe(sql)`` runs SQL and returns its (typed, here
    empty) result, so the value column's type is the engine's own.
    """
    name = spec.name
    select = parse_query(spec.query, name)
    for clause, label in (("with", "WITH"), ("joins", "JOIN"), ("order", "ORDER BY"), ("limit", "LIMIT"),
                          ("offset", "OFFSET"), ("distinct", "DISTINCT")):
        if select.args.get(clause):
            raise InvalidMonitor(
                f"monitor {name!r}: the {label} clause is not allowed in a monitor query; a monitor evaluates one "
                "table's groups, each on its own"
            )
    source = select.args.get("from_") or select.args.get("from")
    tables = list(select.find_all(exp.Table))
    if source is None or len(tables) != 1 or not isinstance(source.this, exp.Table) or select.find(exp.Subquery):
        names = ", ".join(t.name for t in tables) or "none"
        raise InvalidMonitor(
            f"monitor {name!r}: the FROM clause must name exactly one warehouse table (found: {names}); "
            "subqueries, joins and table functions are not allowed"
        )
    table = source.this.name
    try:
        meta = table_meta(table)
    except TableNotFound as exc:
        raise InvalidMonitor(f"monitor {name!r}: FROM {table}: {exc}") from None
    where = select.args.get("where")
    if where is not None and any(c.name == meta.time_column for c in where.find_all(exp.Column)):
        raise InvalidMonitor(
            f"monitor {name!r}: the WHERE clause filters on the time column {meta.time_column!r}; leave it out, "
            "the window (window=, delay=) chooses the time range of each evaluation"
        )
    outputs = select.expressions
    if not outputs or any(isinstance(e, exp.Star) for e in outputs):
        raise InvalidMonitor(f"monitor {name!r}: the SELECT list must name the group columns and then the value, not *")
    *groups, value = outputs
    group_by = select.args.get("group")
    keys = [g.sql(DIALECT) for g in (group_by.expressions if group_by else [])]
    group_sql = [(g.unalias() if isinstance(g, exp.Alias) else g).sql(DIALECT) for g in groups]
    aliases = [_output_name(g) for g in groups]
    if sorted(group_sql) != sorted(keys) and sorted(aliases) != sorted(keys):
        raise InvalidMonitor(
            f"monitor {name!r}: the SELECT list must be the GROUP BY columns ({', '.join(keys) or 'none'}) and then "
            f"one value; it has {', '.join(group_sql) or 'no group columns'} before the value"
        )
    if not any(isinstance(node, exp.AggFunc) for node in value.walk()):
        raise InvalidMonitor(
            f"monitor {name!r}: the value column {_output_name(value)!r} is not an aggregate; the last SELECT "
            "expression must aggregate the window, like count(*) or avg(latency_ms)"
        )
    checked = replace(spec, table=table, time_column=meta.time_column, group_columns=tuple(aliases),
                      value_column=_output_name(value), group_sql=tuple(group_sql))
    try:
        result = probe(windowed_sql(checked, 0.0, 1.0))
    except PetrelError as exc:
        raise InvalidMonitor(f"monitor {name!r}: query: {exc}") from None
    value_type = result.schema.field(len(aliases)).type
    if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type) or pa.types.is_decimal(value_type)
            or pa.types.is_null(value_type)):
        raise InvalidMonitor(
            f"monitor {name!r}: the value column {checked.value_column!r} is {value_type}, not a number; "
            "a monitor compares a numeric value with its thresholds"
        )
    return checked


# -- evaluation SQL ---------------------------------------------------------------------
def timestamp_text(seconds: float) -> str:
    """The SQL string literal of a UTC time, as :func:`timestamp_literal` writes it (quotes included)."""
    return "'" + dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"


def timestamp_literal(seconds: float) -> exp.Expression:
    text = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMP"))


def time_range(spec: MonitorSpec, start: float, end: float) -> exp.Expression:
    """``spec``'s time column in ``[start, end)``."""
    column = exp.column(spec.time_column, quoted=True)
    return exp.and_(exp.GTE(this=column.copy(), expression=timestamp_literal(start)),
                    exp.LT(this=column, expression=timestamp_literal(end)))


def without_filter_clauses(expression: exp.Expression, condition: exp.Expression | None = None) -> exp.Expression:
    """``expression`` with every aggregate limited to ``condition`` and FILTER clauses rewritten as CASE."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Filter):
            inner = node.this
            own = node.expression.this if isinstance(node.expression, exp.Where) else node.expression
            both = exp.and_(condition.copy(), own.copy()) if condition is not None else own.copy()
            return _limit(inner.copy(), both)
        if isinstance(node, exp.AggFunc) and condition is not None and not isinstance(node.parent, exp.Filter):
            return _limit(node.copy(), condition.copy())
        return node

    return expression.copy().transform(rewrite, copy=False)


def _limit(aggregate: exp.Expression, condition: exp.Expression) -> exp.Expression:
    """``aggregate`` computed over the rows where ``condition`` holds."""
    if isinstance(aggregate, exp.Count) and (aggregate.this is None or isinstance(aggregate.this, exp.Star)):
        return exp.CountIf(this=condition)
    if isinstance(aggregate, exp.CountIf):
        return exp.CountIf(this=exp.and_(condition, aggregate.this))
    target = aggregate.this
    if isinstance(target, exp.Distinct):
        target.set("expressions", [exp.Case(ifs=[exp.If(this=condition.copy(), true=e)]) for e in target.expressions])
    elif target is not None:
        aggregate.set("this", exp.Case(ifs=[exp.If(this=condition, true=target)]))
    return aggregate


def windowed_sql(spec: MonitorSpec, start: float | None, end: float | None) -> str:
    """The monitor's query over event times ``[start, end)`` (over all of them when ``start`` is None)."""
    select = parse_query(spec.query, spec.name)
    select = select.transform(lambda n: without_filter_clauses(n) if isinstance(n, exp.Filter) else n)
    if start is None:
        return select.sql(DIALECT)
    return select.where(time_range(spec, start, end), copy=False).sql(DIALECT)


@dataclass(frozen=True)
class SharedShape:
    """Monitors with equal shapes are evaluated by one scan per slot."""

    table: str
    time_column: str
    groups: tuple[str, ...]
    window: float
    delay: float

    @property
    def scan(self) -> tuple[str, str, tuple[str, ...]]:
        """What a shape's scans depend on: shapes differing only in window or delay share their SQL and partials."""
        return self.table, self.time_column, self.groups


def shape_of(spec: MonitorSpec) -> SharedShape | None:
    """The shape ``spec`` shares scans under, or None if its query must run on its own (HAVING, ...)."""
    select = parse_query(spec.query, spec.name)
    if select.args.get("having") or select.args.get("qualify"):
        return None
    groups = tuple((g.unalias() if isinstance(g, exp.Alias) else g).sql(DIALECT) for g in select.expressions[:-1])
    return SharedShape(spec.table, spec.time_column, groups, spec.window, spec.delay)


def shared_columns(spec: MonitorSpec) -> tuple[str, str]:
    """The SQL of ``spec``'s value and of its rows-seen count in a shared scan (its WHERE moved into both).

    Monitors of one shape whose pairs are equal compute the same numbers, so
    a shared scan computes each distinct pair once.
    """
    select = parse_query(spec.query, spec.name)
    where = select.args.get("where")
    condition = where.this if where is not None else None
    value = select.expressions[-1]
    value = value.unalias() if isinstance(value, exp.Alias) else value
    seen = exp.CountIf(this=condition.copy()) if condition is not None else exp.Count(this=exp.Star())
    return without_filter_clauses(value, condition).sql(DIALECT), seen.sql(DIALECT)


def shape_sql(spec: MonitorSpec, columns: list[tuple[str, str]], start: float | None, end: float | None) -> str:
    """One query over ``[start, end)`` of ``spec``'s shape giving, per group ``g<j>``, ``v<i>`` and ``n<i>`` of each pair.

    ``columns`` are :func:`shared_columns` pairs of monitors with ``spec``'s shape.
    """
    first = parse_query(spec.query, spec.name)
    selected: list[exp.Expression] = []
    groups = [(g.unalias() if isinstance(g, exp.Alias) else g) for g in first.expressions[:-1]]
    for index, group in enumerate(groups):
        selected.append(exp.alias_(group.copy(), f"g{index}", quoted=True))
    for index, (value, seen) in enumerate(columns):
        selected.append(exp.alias_(sqlglot.parse_one(value, read=DIALECT), f"v{index}", quoted=True))
        selected.append(exp.alias_(sqlglot.parse_one(seen, read=DIALECT), f"n{index}", quoted=True))
    query = exp.select(*selected).from_(exp.to_table(spec.table, quoted=True))
    if start is not None:
        query = query.where(time_range(spec, start, end), copy=False)
    if groups:
        query = query.group_by(*[g.copy() for g in groups], copy=False)
    return query.sql(DIALECT)


def shared_sql(specs: list[MonitorSpec], start: float | None, end: float | None) -> str:
    """One query over ``[start, end)`` giving, per group, ``v<i>`` (the value) and ``n<i>`` (rows seen) of each spec."""
    return shape_sql(specs[0], [shared_columns(spec) for spec in specs], start, end)
