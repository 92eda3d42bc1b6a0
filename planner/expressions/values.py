"""Column references, struct fields, literals, and the nodes that cannot be values.

A struct field (``attrs.tier``) reads one field of a struct column; an
integer literal is BIGINT when it fits (a DECIMAL(38,0) up to 38 digits),
a literal with a decimal point is a DECIMAL of its digits (``1.50`` is
DECIMAL(3,2), as in DuckDB), and one with an exponent (``1.5e0``) or more
than 38 digits is a DOUBLE.
"""

from __future__ import annotations

import dataclasses
import decimal
import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles
from planner.expressions.typed import Typed, constant
from storage.errors import ColumnNotFound, SqlError, UnsupportedSql

@handles(exp.Column)
def _column(c: ExpressionCompiler, node: exp.Column) -> Typed:
    return c.column(node.name)


@handles(exp.Dot)
def _dot(c: ExpressionCompiler, node: exp.Dot) -> Typed:
    base = c.compile(node.this)
    if not pa.types.is_struct(base.type):
        raise SqlError(f"{node.this.sql()} is not a struct, so {node.sql()} has no field to read")
    name = node.expression.name
    index = base.type.get_field_index(name)
    if index < 0:
        names = ", ".join(f.name for f in base.type)
        raise ColumnNotFound(f"struct {node.this.sql()} has no field {name!r}; its fields: {names}")
    return c.call("struct_field", [base], pc.StructFieldOptions([index]), base.type.field(index).type)


@handles(exp.Literal)
def _literal(c: ExpressionCompiler, node: exp.Literal) -> Typed:
    if node.is_string:
        return constant(node.this, pa.string())
    text = node.this
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        if -(2**63) <= value < 2**63:
            return literal(pa.scalar(value, pa.int64()))
        if len(text.lstrip("+-")) <= sqltypes.MAX_DECIMAL_DIGITS:
            return literal(pa.scalar(decimal.Decimal(value), pa.decimal128(sqltypes.MAX_DECIMAL_DIGITS, 0)))
        return constant(float(text), pa.float64())
    shape = re.fullmatch(r"[+-]?(\d*)\.(\d*)", text)
    if shape:
        whole, fraction = shape.groups()
        precision = max(len(whole) + len(fraction), 1)
        if precision <= sqltypes.MAX_DECIMAL_DIGITS:
            return literal(pa.scalar(decimal.Decimal(text), pa.decimal128(precision, len(fraction))))
    return constant(float(text), pa.float64())


def literal(value: pa.Scalar) -> Typed:
    """A constant written as a number in the query."""
    return dataclasses.replace(constant(value), literal=True)


@handles(exp.Null)
def _null(c: ExpressionCompiler, node: exp.Null) -> Typed:
    return constant(pa.scalar(None, pa.null()))


@handles(exp.Boolean)
def _boolean(c: ExpressionCompiler, node: exp.Boolean) -> Typed:
    return constant(bool(node.this), pa.bool_())


@handles(exp.Paren)
def _paren(c: ExpressionCompiler, node: exp.Paren) -> Typed:
    return c.compile(node.this)


@handles(exp.Placeholder)
def _placeholder(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    raise UnsupportedSql(f"query parameters ({node.sql()}) are not supported; write the value into the query")


@handles(exp.Subquery, exp.Exists)
def _subquery(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    raise UnsupportedSql(f"subqueries are not supported yet: {node.sql()[:80]}")
