"""Compile every expression of the plan to Arrow compute, checking types.

This runs last: it walks the plan bottom up, knows the Arrow schema each
operator receives, and stores the compiled ``pc.Expression`` next to the
SQL expression it came from.  Type errors surface here, before any
fragment is sent anywhere.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from planner.aggregates import result_type
from planner.context import PlanContext
from planner.expressions import ExpressionCompiler
from planner.logical import Aggregate, Filter, Gather, Limit, Plan, Project, Scan, Sort, Values
from storage.errors import SqlError, UnsupportedSql


def compile_expressions(plan: Plan, context: PlanContext) -> Plan:
    return _compile(plan, context)[0]


def output_schema(plan: Plan, context: PlanContext) -> pa.Schema:
    return _compile(plan, context)[1]


def _compile(plan: Plan, context: PlanContext) -> tuple[Plan, pa.Schema]:
    if isinstance(plan, Scan):
        schema = plan.source.schema
        compiled = None
        if plan.filter is not None:
            compiled = ExpressionCompiler(schema, context.now).predicate(plan.filter)
        fields = plan.columns
        out = pa.schema([schema.field(n) for n in fields])
        return dataclasses.replace(plan, compiled=compiled), out
    if isinstance(plan, Values):
        compiler = ExpressionCompiler(pa.schema([]), context.now)
        columns = {"_row": pa.array([0] * len(plan.rows), pa.int8())}
        for index, name in enumerate(plan.names):
            values = [compiler.compile(row[index]) for row in plan.rows]
            if not all(v.constant for v in values):
                raise UnsupportedSql("VALUES rows must be constants")
            columns[name] = pa.array([v.value.as_py() for v in values], values[0].type)
        table = pa.table(columns)
        return dataclasses.replace(plan, compiled=table), table.schema
    children = [_compile(child, context) for child in plan.inputs]
    child, schema = children[0]
    if isinstance(plan, Filter):
        compiled = ExpressionCompiler(schema, context.now).predicate(plan.condition)
        return dataclasses.replace(plan, input=child, compiled=compiled), schema
    if isinstance(plan, Project):
        compiler = ExpressionCompiler(schema, context.now)
        typed = [compiler.compile(e) for e in plan.exprs]
        out = pa.schema([pa.field(n, t.type if not pa.types.is_null(t.type) else pa.null()) for n, t in zip(plan.names, typed)])
        return dataclasses.replace(plan, input=child, compiled=tuple(t.expr for t in typed)), out
    if isinstance(plan, Aggregate):
        if plan.mode == "final":
            schema = child.input.schema  # the gathered partial states: use the partial's input schema
        fields = [schema.field(k) for k in plan.keys]
        for call in plan.aggregates:
            arg_type = schema.field(call.arg).type if call.arg is not None else None
            try:
                fields.append(pa.field(call.name, result_type(call.func, arg_type)))
            except TypeError:
                raise SqlError(f"{call.func.upper()} cannot aggregate values of type {arg_type}") from None
        return dataclasses.replace(plan, input=child, schema=schema), pa.schema(fields)
    if isinstance(plan, Gather):
        return dataclasses.replace(plan, input=child, schema=schema), schema
    if isinstance(plan, (Sort, Limit)):
        return plan.with_inputs(child), schema
    raise UnsupportedSql(f"{type(plan).__name__} cannot be executed yet")
