"""DECIMAL arithmetic, casts and rounding, with DuckDB's result types.

Exact numbers follow DuckDB (see :mod:`planner.types` for how the types
meet): ``+`` and ``-`` give the larger scale and one more integer digit
than the wider side, ``*`` adds precisions and scales, ``%`` keeps the
common type, each capped at 38 digits (a value that outgrows its type is
an error, as in DuckDB).  Casting to a DECIMAL or from one to an integer
rounds half away from zero; ROUND, FLOOR, CEIL and TRUNC keep the
precision and set the scale.  Arrow's decimal kernels compute; where an
intermediate needs more than 38 digits it is computed as a 256-bit
decimal and cast back, with Arrow's overflow check.
"""

from __future__ import annotations

import decimal
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from planner import decimal_kernel
from planner import types as sqltypes
from planner.expressions.typed import Typed
from storage.errors import SqlError

if TYPE_CHECKING:
    from planner.expressions.compiler import ExpressionCompiler

_AWAY = "half_towards_infinity"  # Arrow's name for rounding ties away from zero
_WIDE = 76  # the digits of a 256-bit decimal
_EXACT = decimal.Context(prec=120, rounding=decimal.ROUND_HALF_UP)


def operand_type(typed: Typed) -> pa.DataType:
    """The type ``typed`` meets a DECIMAL as: an integer literal that fits is an INTEGER, as DuckDB types it."""
    if typed.literal and pa.types.is_integer(typed.type) and typed.value.is_valid \
            and -(2**31) <= typed.value.as_py() < 2**31:
        return pa.int32()
    return typed.type


def arithmetic_type(op: str, left: pa.DataType, right: pa.DataType) -> pa.DataType:
    """The DECIMAL ``left op right`` gives (``op`` one of ``+ - * %``); SqlError when no DECIMAL can hold it."""
    if op in "+-":
        return sqltypes.decimal_common(left, right, extra=1)
    if op == "%":
        return sqltypes.decimal_common(left, right)
    a, b = sqltypes.as_decimal(left), sqltypes.as_decimal(right)
    scale = a.scale + b.scale
    if scale > sqltypes.MAX_DECIMAL_DIGITS:
        raise SqlError(f"multiplying {a} by {b} needs a scale of {scale} digits, more than DECIMAL's 38; "
                       "CAST one side to DOUBLE or to a DECIMAL of smaller scale")
    return pa.decimal128(min(sqltypes.MAX_DECIMAL_DIGITS, a.precision + b.precision), scale)


def arithmetic(c: ExpressionCompiler, op: str, left: Typed, right: Typed) -> Typed:
    """``left op right`` on exact numbers (integers and DECIMALs, at least one DECIMAL; NULL takes the other's type)."""
    if pa.types.is_null(left.type):
        left = c.cast(left, right.type)
    if pa.types.is_null(right.type):
        right = c.cast(right, left.type)
    target = arithmetic_type(op, operand_type(left), operand_type(right))
    a, b = c.cast(left, sqltypes.as_decimal(operand_type(left))), c.cast(right, sqltypes.as_decimal(operand_type(right)))
    if op == "%":
        return c.cast(_remainder(c, a, b), target)
    if op in "+-":
        natural = max(a.type.precision - a.type.scale, b.type.precision - b.type.scale) + max(a.type.scale, b.type.scale) + 1
    else:
        natural = a.type.precision + b.type.precision + 1
    if natural > sqltypes.MAX_DECIMAL_DIGITS:
        a, b = _wide(c, a), _wide(c, b)
        if natural > _WIDE:  # two 38-digit factors: one fits 37 digits, or the product overflows anyway
            a = c.cast(a, pa.decimal256(_WIDE - 1 - b.type.precision, a.type.scale))
    kernel = {"+": "add_checked", "-": "subtract_checked", "*": "multiply_checked"}[op]
    return c.cast(c.call(kernel, [a, b]), target)


def _wide(c: ExpressionCompiler, typed: Typed) -> Typed:
    """``typed`` as a 256-bit decimal of the same precision and scale."""
    t = typed.type
    return c.cast(typed, pa.decimal256(t.precision, t.scale))


def _remainder(c: ExpressionCompiler, a: Typed, b: Typed) -> Typed:
    """``a - trunc(a / b) * b``: SQL's ``%``, whose sign follows the dividend (Arrow has no remainder kernel).

    When Arrow's quotient of the two would need more than 76 digits, the
    exact remainder kernel of :mod:`planner.decimal_kernel` computes it.
    """
    a, b = _wide(c, a), _wide(c, b)
    try:
        pc.divide(pa.array([], a.type), pa.array([], b.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        wide = decimal_kernel.WIDE
        return c.call(decimal_kernel.REMAINDER_FUNCTION, [c.cast(a, wide), c.cast(b, wide)], type_=wide)
    quotient = c.call("trunc", [c.call("divide", [a, b])])
    digits = max(quotient.type.precision - quotient.type.scale, 1)
    whole = c.cast(quotient, pa.decimal256(digits, 0))
    return c.call("subtract", [a, c.call("multiply", [whole, b])])


def cast(c: ExpressionCompiler, value: Typed, to: pa.DataType) -> Typed:
    """``value`` (a column expression) cast to a DECIMAL, or from a DECIMAL to an integer, rounding half away from 0."""
    source = value.type
    if pa.types.is_integer(to):  # from a decimal
        return _plain(rescale(c, value, 0), to)
    if pa.types.is_floating(source):
        return _plain(c.call("round", [value], pc.RoundOptions(to.scale, _AWAY), source), to)
    if pa.types.is_integer(source):
        need = sqltypes.as_decimal(source).precision + to.scale
        if to.precision < need:  # Arrow wants room for every integer of the width; the final cast checks the values
            value = _plain(value, pa.decimal128(need, to.scale) if need <= sqltypes.MAX_DECIMAL_DIGITS
                           else pa.decimal256(min(need, _WIDE), to.scale))
        return _plain(value, to)
    if sqltypes.is_string(source):
        return _plain(rescale(c, _plain(value, pa.decimal256(_WIDE, sqltypes.MAX_DECIMAL_DIGITS)), to.scale), to)
    if pa.types.is_decimal(source) and to.scale < source.scale:
        return _plain(rescale(c, value, to.scale), to)
    return _plain(value, to)


def _plain(value: Typed, to: pa.DataType) -> Typed:
    return Typed(value.expr.cast(to, safe=True), to)


def rescale(c: ExpressionCompiler, value: Typed, scale: int) -> Typed:
    """A DECIMAL rounded half away from zero to ``scale`` digits, as DECIMAL(p, scale) with one more integer digit."""
    t = value.type
    if scale >= t.scale:
        return value
    room = t.precision + 1
    widened = _plain(value, pa.decimal128(room, t.scale) if room <= sqltypes.MAX_DECIMAL_DIGITS
                     and not isinstance(t, pa.Decimal256Type) else pa.decimal256(min(room, _WIDE), t.scale))
    rounded = c.call("round", [widened], pc.RoundOptions(scale, _AWAY), widened.type)
    keep = max(room - t.scale + max(scale, 0), 1)
    wide = isinstance(widened.type, pa.Decimal256Type)
    return _plain(rounded, pa.decimal256(keep, max(scale, 0)) if wide else pa.decimal128(keep, max(scale, 0)))


def rounded(c: ExpressionCompiler, value: Typed, kernel: str, digits: int = 0) -> Typed:
    """ROUND(x, digits), FLOOR, CEIL or TRUNC of a DECIMAL: DECIMAL(p, digits), DuckDB's type (the value unchanged
    when it has no more than ``digits`` decimals)."""
    t = value.type
    if digits >= t.scale:
        return value
    room = min(t.precision + 1, sqltypes.MAX_DECIMAL_DIGITS)
    widened = c.cast(value, pa.decimal128(room, t.scale))
    if kernel == "round":
        done = c.call("round", [widened], pc.RoundOptions(digits, _AWAY), widened.type)
    else:
        done = c.call(kernel, [widened], type_=widened.type)
    return _plain(done, pa.decimal128(t.precision, max(digits, 0)))


def scalar(value: pa.Scalar, to: pa.DataType) -> pa.Scalar:
    """A constant cast to a DECIMAL (or from one to an integer), rounding half away from zero.

    ValueError when the value does not fit the type, or is not a number.
    """
    number = value.as_py()
    try:
        if isinstance(number, float):
            exact = decimal.Decimal(repr(number))  # the shortest text of the double, as DuckDB reads it
        elif isinstance(number, str):
            exact = decimal.Decimal(number.strip())
        else:
            exact = decimal.Decimal(number)
        if not exact.is_finite():
            raise ValueError(f"{number} is not a finite number")
        if pa.types.is_integer(to):
            return pa.scalar(int(exact.quantize(decimal.Decimal(1), context=_EXACT)), to)
        quantized = exact.quantize(decimal.Decimal(1).scaleb(-to.scale), context=_EXACT)
    except (decimal.InvalidOperation, OverflowError) as error:
        raise ValueError(f"{number!r} is not a number that fits {to}: {type(error).__name__}") from None
    if abs(quantized) >= decimal.Decimal(10) ** (to.precision - to.scale):
        raise ValueError(f"{number} does not fit in {to} (at most {to.precision - to.scale} digits before the point)")
    return pa.scalar(quantized, to)
