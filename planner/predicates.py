"""Reading simple facts out of a WHERE clause: ``column op constant``.

Both time-range extraction and statistics pruning look at the conjuncts of
a scan's filter in the same terms: a column, a comparison, and constant
values (evaluated now, in the column's type).  Anything else is left alone:
it can only make a segment *less* likely to match, never rule it in.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
from sqlglot import exp

from planner.expressions import ExpressionCompiler
from storage.errors import PetrelError

_FLIP = {"eq": "eq", "gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}
_OPS = {exp.EQ: "eq", exp.GT: "gt", exp.GTE: "gte", exp.LT: "lt", exp.LTE: "lte"}


@dataclass(frozen=True)
class Bound:
    """``column op value``; op is eq, gt, gte, lt, lte, in, null or not_null."""

    column: str
    op: str
    values: tuple = ()


def conjuncts(node: exp.Expression | None) -> Iterator[exp.Expression]:
    """The parts of an AND chain (parentheses looked through), in order."""
    if node is None:
        return
    node = node.unnest()
    if not isinstance(node, exp.And):
        yield node
        return
    for part in node.flatten():
        yield from conjuncts(part)


def _column(node: exp.Expression) -> str | None:
    while isinstance(node, exp.Paren):
        node = node.this
    return node.name if isinstance(node, exp.Column) else None


def _constant(compiler: ExpressionCompiler, node: exp.Expression, type_: pa.DataType):
    """The Python value of ``node`` in ``type_``, or raise LookupError if it is not a constant."""
    if node.find(exp.Column) is not None:
        raise LookupError
    try:
        typed = compiler.compile(node)
        if not typed.constant:
            raise LookupError
        value = compiler.cast(typed, type_).value.as_py()
        original = typed.value.as_py()
        if isinstance(original, (float, decimal.Decimal)) and isinstance(value, int) and value != original:
            raise LookupError  # x > 1.5 on an integer column: rounding would move the bound
        return value
    except (PetrelError, pa.ArrowException, ValueError, TypeError, OverflowError):  # 1e30 on int64: no bound
        raise LookupError from None


def bound(node: exp.Expression, compiler: ExpressionCompiler) -> Bound | None:
    """The Bound ``node`` expresses, or None when it is not that simple."""
    schema = compiler.schema
    try:
        if type(node) in _OPS:
            op = _OPS[type(node)]
            left, right = _column(node.this), _column(node.expression)
            if left is not None and schema.get_field_index(left) >= 0 and right is None:
                return Bound(left, op, (_constant(compiler, node.expression, schema.field(left).type),))
            if right is not None and schema.get_field_index(right) >= 0 and left is None:
                return Bound(right, _FLIP[op], (_constant(compiler, node.this, schema.field(right).type),))
            return None
        if isinstance(node, exp.Between):
            name = _column(node.this)
            if name is None or schema.get_field_index(name) < 0:
                return None
            type_ = schema.field(name).type
            low = _constant(compiler, node.args["low"], type_)
            high = _constant(compiler, node.args["high"], type_)
            return Bound(name, "between", (low, high))
        if isinstance(node, exp.In) and not node.args.get("query"):
            name = _column(node.this)
            if name is None or schema.get_field_index(name) < 0:
                return None
            type_ = schema.field(name).type
            return Bound(name, "in", tuple(_constant(compiler, e, type_) for e in node.expressions))
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            name = _column(node.this)
            return Bound(name, "null") if name is not None and schema.get_field_index(name) >= 0 else None
        if isinstance(node, exp.Not) and isinstance(node.this, exp.Is) and isinstance(node.this.expression, exp.Null):
            name = _column(node.this.this)
            return Bound(name, "not_null") if name is not None and schema.get_field_index(name) >= 0 else None
    except LookupError:
        return None
    return None
