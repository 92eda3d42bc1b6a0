"""Column references, struct fields, literals, and the nodes that cannot be values.

A struct field (``attrs.tier``) reads one field of a struct column; a
number literal is BIGINT when it fits, DOUBLE otherwise.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

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
        return constant(value, pa.int64() if -(2**63) <= value < 2**63 else pa.float64())
    return constant(float(text), pa.float64())


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
