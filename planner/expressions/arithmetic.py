"""Arithmetic operators (``+ - * / // %``, unary minus) and math functions.

Integers add, subtract and multiply as BIGINT with overflow checks, and
mix with floats as DOUBLE; DECIMALs compute exactly with DuckDB's result
types (:mod:`planner.expressions.decimals`) and mix with floats as DOUBLE;
``/`` divides as DOUBLE and ``//`` as integers (DuckDB's rules; on other
numbers DuckDB's ``//`` divides as ``/`` does).  When a date, timestamp or
interval takes part, the operator is time arithmetic
(:mod:`planner.expressions.temporal`).
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions import decimals, temporal
from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles, named
from planner.expressions.typed import Typed, constant
from planner.parse import DIVIDES_AS_SLASH, position
from storage.errors import SqlError

@handles(exp.Neg)
def _neg(c: ExpressionCompiler, node: exp.Neg) -> Typed:
    arg = c.compile(node.this)
    negated = c.call("negate_checked", [arg], type_=arg.type)
    return dataclasses.replace(negated, literal=arg.literal and negated.constant)  # -2 is a literal, as in DuckDB


@handles(exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod)
def _arith(c: ExpressionCompiler, node: exp.Binary) -> Typed:
    shifted = temporal.calendar_shift(c, node)
    if shifted is not None:
        return shifted
    left, right = c.compile(node.this), c.compile(node.expression)
    op = type(node)
    if pa.types.is_timestamp(left.type) or pa.types.is_date(left.type) or pa.types.is_duration(left.type) \
            or pa.types.is_timestamp(right.type) or pa.types.is_date(right.type):
        return temporal.arith(c, op, left, right)
    for side in (left, right):
        if not (sqltypes.is_numeric(side.type) or pa.types.is_null(side.type)):
            raise SqlError(f"{node.sql()} does arithmetic on a {side.type} value; CAST it to a number first")
    if op in (exp.Div, exp.IntDiv, exp.Mod):
        return _divide(c, node, left, right)
    target = sqltypes.numeric_common(left.type, right.type)
    if pa.types.is_decimal(target):
        return decimals.arithmetic(c, {exp.Add: "+", exp.Sub: "-", exp.Mul: "*"}[op], left, right)
    left, right = c.cast(left, target), c.cast(right, target)
    name = {exp.Add: "add_checked", exp.Sub: "subtract_checked", exp.Mul: "multiply_checked"}[op]
    if pa.types.is_floating(target):
        name = name.replace("_checked", "")
    return c.call(name, [left, right], type_=target)


def _divide(c: ExpressionCompiler, node: exp.Binary, left: Typed, right: Typed) -> Typed:
    """``/``, ``//`` (``DIV``) and ``%`` with the semantics of the query's dialect.

    sqlglot marks them when parsing: ``typed`` on ``/`` where the dialect
    divides integers as integers (postgres, sqlite, tsql: ``7 / 2`` is 3,
    truncated toward zero), ``safe`` where a division by zero is NULL
    (mysql, sqlite; :func:`planner.parse.parse` extends that to ``DIV`` and
    ``%``).  Elsewhere dividing by zero is an error, except DuckDB's ``/``,
    which divides as DOUBLE and gives infinity or NaN as IEEE does.
    """
    safe = bool(node.args.get("safe"))
    integers = all(pa.types.is_integer(t.type) or pa.types.is_null(t.type) for t in (left, right))
    checked = bool(node.args.get("typed"))
    if isinstance(node, exp.IntDiv) and not integers and node.meta.get(DIVIDES_AS_SLASH):
        checked = True  # DuckDB's // on other numbers: / that refuses a division by zero
    elif not isinstance(node, exp.Div) or (checked and integers):
        checked = None
    if checked is not None:
        target = pa.float64()
        left, right = c.cast(left, target), c.cast(right, target)
        if safe:
            return c.call("divide", [left, _zero_as_null(c, right)], type_=target)
        _refuse_zero(c, node, right, checked)
        return c.call("divide_checked" if checked else "divide", [left, right], type_=target)
    target = sqltypes.numeric_common(left.type, right.type)
    if pa.types.is_decimal(target) and not isinstance(node, exp.Mod):  # DIV of decimals: as doubles
        target = pa.float64()
    if pa.types.is_decimal(target):
        if safe:
            right = _zero_as_null(c, right)
        else:
            _refuse_zero(c, node, right, True)
        return decimals.arithmetic(c, "%", left, right)
    left, right = c.cast(left, target), c.cast(right, target)
    if safe:
        right = _zero_as_null(c, right)
    else:
        _refuse_zero(c, node, right, True)
    if isinstance(node, exp.Mod):
        return modulo(c, left, right, target)
    quotient = c.call("divide" if pa.types.is_integer(target) else "divide_checked", [left, right], type_=target)
    return quotient if pa.types.is_integer(target) or isinstance(node, exp.Div) else \
        c.call("floor", [quotient], type_=target)


def _zero_as_null(c: ExpressionCompiler, divisor: Typed) -> Typed:
    """``divisor`` with its zeros made NULL, so that dividing by it gives NULL there."""
    zero = c.call("equal", [divisor, c.cast(constant(0), divisor.type)], type_=pa.bool_())
    return c.case_when([zero], [constant(pa.scalar(None, divisor.type)), divisor], "division")


def _refuse_zero(c: ExpressionCompiler, node: exp.Binary, divisor: Typed, refuse: bool) -> None:
    """SqlError at ``node`` when it divides by a constant zero in a dialect where that is an error."""
    if refuse and divisor.constant and divisor.value.is_valid and divisor.value.as_py() == 0:
        raise SqlError(f"division by zero in {node.sql(dialect='duckdb')}; use NULLIF(divisor, 0) to get NULL instead",
                       *position(node))


def modulo(c: ExpressionCompiler, left: Typed, right: Typed, target: pa.DataType) -> Typed:
    """SQL ``%``: the sign follows the dividend (Arrow has no remainder kernel)."""
    if pa.types.is_floating(target):  # checked: a float remainder by zero is an error, not NaN
        quotient = c.call("trunc", [c.call("divide_checked", [left, right], type_=target)], type_=target)
    else:
        quotient = c.call("divide", [left, right], type_=target)
    product = c.call("multiply", [quotient, right], type_=target)
    return c.call("subtract", [left, product], type_=target)


def _float_unary(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        return c.call(kernel, [c.cast(c.compile(node.this), pa.float64())], type_=pa.float64())
    return handler


@handles(exp.Round)
def _round(c: ExpressionCompiler, node: exp.Round) -> Typed:
    value = c.compile(node.this)
    digits = int(c.literal_arg(node.args.get("decimals"), "number of digits of ROUND", 0) or 0)
    if pa.types.is_integer(value.type) and digits >= 0:
        return value
    if pa.types.is_decimal(value.type):
        return decimals.rounded(c, value, "round", digits)
    value = c.cast(value, pa.float64())
    return c.call("round", [value], pc.RoundOptions(digits, "half_towards_infinity"), pa.float64())


def _floor_ceil(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        value = c.compile(node.this)
        if pa.types.is_integer(value.type):
            return value
        if pa.types.is_decimal(value.type):
            return decimals.rounded(c, value, kernel)
        return c.call(kernel, [c.cast(value, pa.float64())], type_=pa.float64())
    return handler


@handles(exp.Log)
def _log(c: ExpressionCompiler, node: exp.Log) -> Typed:
    if node.expression is None:
        return c.call("ln", [c.cast(c.compile(node.this), pa.float64())], type_=pa.float64())
    base = c.literal_arg(node.this, "base of LOG")
    value = c.cast(c.compile(node.expression), pa.float64())
    kernel = {10: "log10", 2: "log2"}.get(base)
    if kernel:
        return c.call(kernel, [value], type_=pa.float64())
    return c.call("logb", [value, constant(float(base))], type_=pa.float64())


@handles(exp.Pow)
def _pow(c: ExpressionCompiler, node: exp.Pow) -> Typed:
    args = [c.cast(c.compile(n), pa.float64()) for n in (node.this, node.expression)]
    return c.call("power", args, type_=pa.float64())


@handles(exp.Sign)
def _sign(c: ExpressionCompiler, node: exp.Sign) -> Typed:
    value = c.compile(node.this)
    if pa.types.is_decimal(value.type):
        return c.cast(c.call("sign", [value], type_=pa.int64()), pa.int8())
    return c.call("sign", [value], type_=pa.int8() if pa.types.is_integer(value.type) else value.type)


@handles(exp.Abs)
def _abs(c: ExpressionCompiler, node: exp.Abs) -> Typed:
    value = c.compile(node.this)
    return c.call("abs_checked" if pa.types.is_integer(value.type) else "abs", [value], type_=value.type)


@handles(exp.Trunc)
def _trunc(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    value = c.compile(node.this)
    if pa.types.is_integer(value.type):
        return value
    if pa.types.is_decimal(value.type):
        return decimals.rounded(c, value, "trunc")
    return c.call("trunc", [c.cast(value, pa.float64())], type_=pa.float64())


@handles(exp.Pi)
def _pi(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    return constant(3.141592653589793, pa.float64())


@handles(exp.Cbrt)
def _cbrt(c: ExpressionCompiler, node: exp.Cbrt) -> Typed:
    return c.call("power", [c.cast(c.compile(node.this), pa.float64()), constant(1 / 3)], type_=pa.float64())


@named("log10", "log2")
def _log_named(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    return c.call(node.name.lower(), [c.cast(args[0], pa.float64())], type_=pa.float64())


handles(exp.Floor)(_floor_ceil("floor"))
handles(exp.Ceil)(_floor_ceil("ceil"))
handles(exp.Sqrt)(_float_unary("sqrt"))
handles(exp.Ln)(_float_unary("ln"))
handles(exp.Exp)(_float_unary("exp"))
