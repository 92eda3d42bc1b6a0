"""Conditional expressions: CASE, IF, COALESCE, NULLIF, GREATEST and LEAST.

The branches of each are cast to their common type; a CASE without ELSE
gives NULL where no branch holds.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles
from planner.expressions.typed import Typed, constant

@handles(exp.Case)
def _case(c: ExpressionCompiler, node: exp.Case) -> Typed:
    subject = c.compile(node.this) if node.this is not None else None
    conditions, values = [], []
    for branch in node.args.get("ifs") or []:
        if subject is not None:
            left, right = c.comparable([subject, c.compile(branch.this)], node.sql())
            condition = c.call("equal", [left, right], type_=pa.bool_())
        else:
            condition = c.cast(c.compile(branch.this), pa.bool_())
        conditions.append(condition)
        values.append(c.compile(branch.args["true"]))
    default = node.args.get("default")
    values.append(c.compile(default) if default is not None else constant(pa.scalar(None, pa.null())))
    return c.case_when(conditions, values, node.sql())


@handles(exp.If)
def _if(c: ExpressionCompiler, node: exp.If) -> Typed:
    condition = c.cast(c.compile(node.this), pa.bool_())
    false = node.args.get("false")
    values = [c.compile(node.args["true"]), c.compile(false) if false is not None else constant(pa.scalar(None, pa.null()))]
    return c.case_when([condition], values, node.sql())


@handles(exp.Coalesce)
def _coalesce(c: ExpressionCompiler, node: exp.Coalesce) -> Typed:
    args = c.coerce([c.compile(node.this), *[c.compile(e) for e in node.expressions]], node.sql(), meeting=True)
    return c.call("coalesce", args, type_=args[0].type)


@handles(exp.Nullif)
def _nullif(c: ExpressionCompiler, node: exp.Nullif) -> Typed:
    original = c.compile(node.this)
    value, other = c.comparable([original, c.compile(node.expression)], node.sql())
    equal = c.call("equal", [value, other], type_=pa.bool_())
    if pa.types.is_null(original.type):
        return constant(pa.scalar(None, pa.null()))
    return c.case_when([equal], [constant(pa.scalar(None, original.type)), original], node.sql())  # the first's type


def _extremum(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        args = c.coerce([c.compile(node.this), *[c.compile(e) for e in node.expressions]], node.sql(), meeting=True)
        if pa.types.is_null(args[0].type):  # GREATEST(NULL, NULL)
            return constant(pa.scalar(None, pa.null()))
        return c.call(kernel, args, pc.ElementWiseAggregateOptions(skip_nulls=True), args[0].type)
    return handler


handles(exp.Greatest)(_extremum("max_element_wise"))
handles(exp.Least)(_extremum("min_element_wise"))
