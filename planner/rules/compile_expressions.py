"""Compile every expression of the plan to Arrow compute, checking types.

This runs last: it walks the plan bottom up, knows the Arrow schema each
operator receives, and stores the compiled ``pc.Expression`` next to the
SQL expression it came from.  Type errors surface here, before any
fragment is sent anywhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import pyarrow as pa
from sqlglot import exp

from planner import types as sqltypes
from planner.aggregates import result_type
from planner.context import PlanContext
from planner.dispatch import OperatorTable
from planner.expressions import ExpressionCompiler
from planner.logical import (
    Aggregate, Broadcast, Filter, Gather, Join, Limit, Memory, Plan, Project, Scan, SetOp, Shuffle, Sort, Values, Window,
)
from storage.errors import SqlError, UnsupportedSql


def compile_expressions(plan: Plan, context: PlanContext) -> Plan:
    return _compile(plan, context)[0]


def output_schema(plan: Plan, context: PlanContext) -> pa.Schema:
    return _compile(plan, context)[1]


def _compile(plan: Plan, context: PlanContext) -> tuple[Plan, pa.Schema]:
    return _COMPILE(plan, context)


_COMPILE: OperatorTable[tuple[Plan, pa.Schema]] = OperatorTable("compile_expressions")


def _children(plan: Plan, context: PlanContext) -> list[tuple[Plan, pa.Schema]]:
    return [_compile(child, context) for child in plan.inputs]


@_COMPILE.register(Scan)
def _scan(plan: Scan, context: PlanContext) -> tuple[Plan, pa.Schema]:
    schema = plan.source.schema
    compiled = None
    if plan.filter is not None:
        compiled = ExpressionCompiler(schema, context.now).predicate(plan.filter)
    fields = plan.columns
    out = pa.schema([schema.field(n) for n in fields])
    return dataclasses.replace(plan, compiled=compiled), out


@_COMPILE.register(Values)
def _values(plan: Values, context: PlanContext) -> tuple[Plan, pa.Schema]:
    compiler = ExpressionCompiler(pa.schema([]), context.now)
    columns = {"_row": pa.array([0] * len(plan.rows), pa.int8())}
    for index, name in enumerate(plan.names):
        values = [compiler.compile(row[index]) for row in plan.rows]
        if not all(v.constant for v in values):
            raise UnsupportedSql("VALUES rows must be constants")
        values = compiler.coerce(values, f"column {name} of VALUES")
        columns[name] = pa.array([v.value.as_py() for v in values], values[0].type)
    table = pa.table(columns)
    return dataclasses.replace(plan, compiled=table), table.schema


@_COMPILE.register(Memory)
def _memory(plan: Memory, context: PlanContext) -> tuple[Plan, pa.Schema]:
    return plan, plan.table.schema


@_COMPILE.register(Join)
def _join(plan: Join, context: PlanContext) -> tuple[Plan, pa.Schema]:
    (child, schema), (right, right_schema) = _children(plan, context)
    left_fields = list(schema)
    combined = pa.schema(left_fields + list(right_schema))
    compiled = None
    if plan.condition is not None:
        compiled = ExpressionCompiler(combined, context.now).predicate(plan.condition)
    out = schema if plan.kind in ("semi", "anti", "anti_in") else combined
    return dataclasses.replace(plan, left=child, right=right, compiled=compiled), out


@_COMPILE.register(SetOp)
def _set_operation(plan: SetOp, context: PlanContext) -> tuple[Plan, pa.Schema]:
    children = _children(plan, context)
    child, schema = children[0]
    if plan.distinct:
        for name in schema.names:
            _comparable(schema, name, child, f"{plan.kind.upper()} (which removes duplicate rows)")
    fields = []
    for index, first in enumerate(schema):
        types = [s.field(index).type for _, s in children]
        fields.append(pa.field(first.name, common_type(types)))
    return plan.with_inputs(*(c for c, _ in children)), pa.schema(fields)


@_COMPILE.register(Window)
def _window(plan: Window, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    fields = list(schema)
    for call in plan.calls:
        for name in (*call.partition, *(k.column for k in call.order)):
            _comparable(schema, name, child, "a window's PARTITION BY or ORDER BY")
        _range_key(call, schema)
        arg_type = schema.field(call.args[0]).type if call.args else None
        fields.append(pa.field(call.name, window_type(call.func, arg_type)))
    return plan.with_inputs(child), pa.schema(fields)


@_COMPILE.register(Broadcast, Shuffle, Gather)
def _exchange(plan: Plan, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    return dataclasses.replace(plan, input=child, schema=schema), schema


@_COMPILE.register(Filter)
def _filter(plan: Filter, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    compiled = ExpressionCompiler(schema, context.now).predicate(plan.condition)
    return dataclasses.replace(plan, input=child, compiled=compiled), schema


@_COMPILE.register(Project)
def _project(plan: Project, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    compiler = ExpressionCompiler(schema, context.now)
    typed = [compiler.compile(e) for e in plan.exprs]
    out = pa.schema([pa.field(n, t.type if not pa.types.is_null(t.type) else pa.null()) for n, t in zip(plan.names, typed)])
    return dataclasses.replace(plan, input=child, compiled=tuple(t.expr for t in typed)), out


@_COMPILE.register(Aggregate)
def _aggregate(plan: Aggregate, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    if plan.mode == "final":
        schema = child.input.schema  # the gathered partial states: use the partial's input schema
    fields = [schema.field(k) for k in plan.keys]
    if plan.mode != "final":
        for key in plan.keys:
            _comparable(schema, key, child, "GROUP BY" if plan.aggregates else "DISTINCT")
    for call in plan.aggregates:
        arg_type = schema.field(call.arg).type if call.arg is not None else None
        if call.func in _COMPARING and plan.mode != "final":
            _comparable(schema, call.arg, child, f"{_COMPARING[call.func]}")
        for key in call.by if plan.mode != "final" else ():
            _comparable(schema, key, child, f"{call.func.upper()}'s ordering")
        try:
            fields.append(pa.field(call.name, result_type(call.func, arg_type)))
        except TypeError:
            raise SqlError(f"{call.func.upper()} cannot aggregate values of type {arg_type}") from None
    return dataclasses.replace(plan, input=child, schema=schema), pa.schema(fields)


@_COMPILE.register(Sort)
def _sort(plan: Sort, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    for key in plan.keys:
        _comparable(schema, key.column, child, "ORDER BY")
    return plan.with_inputs(child), schema


@_COMPILE.register(Limit)
def _limit(plan: Limit, context: PlanContext) -> tuple[Plan, pa.Schema]:
    child, schema = _compile(plan.input, context)
    return plan.with_inputs(child), schema


_COMPARING = {"min": "MIN", "max": "MAX", "mode": "MODE", "count_distinct": "COUNT(DISTINCT ...)",
              "quantile_disc": "QUANTILE_DISC", "quantile_cont": "QUANTILE_CONT",
              "approx_count_distinct": "APPROX_COUNT_DISTINCT", "approx_quantile": "APPROX_QUANTILE"}


def _comparable(schema: pa.Schema, name: str, below: Plan, what: str) -> None:
    """Refuse ``what`` over column ``name`` when its type is nested: Arrow cannot order or hash those."""
    type_ = schema.field(name).type
    if not pa.types.is_nested(type_):
        return
    origin = _origin(below, name)
    if pa.types.is_struct(type_):
        hint = f"use one of its fields instead, e.g. {origin}.{type_.field(0).name}" if type_.num_fields else \
            "use a scalar column instead"
        kind = "struct"
    elif pa.types.is_map(type_):
        hint, kind = f"use one of its values instead, e.g. {origin}['key']", "map"
    else:
        hint, kind = f"use an element or its length instead, e.g. {origin}[1] or len({origin})", "list"
    raise UnsupportedSql(f"{what} cannot use {origin}: it is a {kind} ({type_}), whose values cannot be "
                         f"compared; {hint}")


def _origin(plan: Plan, name: str) -> str:
    """The SQL the user wrote for the column ``name`` (internal names like ``_o0`` traced to their expression)."""
    shown = exp.to_identifier(name).sql(dialect="duckdb")
    while True:
        if isinstance(plan, Project) and name in plan.names:
            expr = plan.exprs[plan.names.index(name)]
            expr = expr.this if isinstance(expr, exp.Alias) else expr
            if not isinstance(expr, exp.Column):
                return expr.sql(dialect="duckdb")
            name = expr.name
            shown = exp.to_identifier(name).sql(dialect="duckdb")
        if not plan.inputs:
            return shown
        plan = plan.inputs[0]


def common_type(types: list[pa.DataType]) -> pa.DataType:
    """The type that values of all ``types`` fit in (for UNION and friends)."""
    known = [t for t in types if not pa.types.is_null(t)]
    if not known:
        return pa.null()
    first = known[0]
    if all(t.equals(first) for t in known):
        return first
    if all(pa.types.is_integer(t) for t in known):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_decimal(t) for t in known):
        return functools.reduce(sqltypes.decimal_meeting, known)
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in known):
        return pa.float64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in known):
        return pa.string()
    raise SqlError(f"cannot combine columns of types {', '.join(str(t) for t in known)}; CAST them to one type")


def _range_key(call, schema: pa.Schema) -> None:
    """SqlError unless a RANGE frame with offsets orders by a number (numeric offsets) or a time (INTERVAL ones)."""
    kind, start, end = call.frame
    if kind != "range" or (start in (None, 0) and end in (None, 0)):
        return
    key = schema.field(call.order[0].column).type
    temporal = pa.types.is_timestamp(key) or pa.types.is_date(key)
    numeric = pa.types.is_integer(key) or pa.types.is_floating(key) or pa.types.is_decimal(key)
    by_interval = any(isinstance(b, dt.timedelta) for b in (start, end))
    if temporal and not all(b is None or isinstance(b, dt.timedelta) or b == 0 for b in (start, end)):
        raise SqlError(f"a RANGE frame over a {key} ORDER BY key takes INTERVAL offsets, not numbers")
    if numeric and by_interval:
        raise SqlError(f"a RANGE frame over a {key} ORDER BY key takes number offsets, not INTERVALs")
    if not (temporal or numeric):
        raise SqlError(f"a RANGE frame with an offset orders by a number or a time, not a {key} value; "
                       "use ROWS BETWEEN n PRECEDING AND m FOLLOWING")


def window_type(func: str, arg: pa.DataType | None) -> pa.DataType:
    if func in ("row_number", "rank", "dense_rank", "ntile", "count", "count_star"):
        return pa.int64()
    if func in ("avg", "percent_rank", "cume_dist"):
        return pa.float64()
    if func in ("quantile_cont", "quantile_disc", "mode", "arg_max", "arg_min", "string_agg", "list"):
        return result_type(func, arg)
    if func == "sum" and arg is not None and pa.types.is_decimal(arg):  # DuckDB's rule, as for SUM
        return pa.decimal128(38, arg.scale)
    if func == "sum":
        return pa.int64() if arg is not None and (pa.types.is_integer(arg) or pa.types.is_boolean(arg)) else pa.float64()
    return arg if arg is not None else pa.null()
