"""Value conversions the compiler's ``cast`` needs beyond Arrow's casts.

A constant is cast in Python (rounding floats to integers as SQL does,
reading ISO text as dates and timestamps), and a timestamp becomes text
the way DuckDB prints it.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from planner import types as sqltypes
from planner.expressions import decimals
from planner.expressions.typed import Typed, constant

if TYPE_CHECKING:
    from planner.expressions.compiler import ExpressionCompiler

_B = pa.bool_()
_S = pa.string()

def cast_scalar(value: pa.Scalar, to: pa.DataType) -> pa.Scalar:
    if not value.is_valid:
        return pa.scalar(None, to)
    if decimals_apply(value.type, to):
        return decimals.scalar(value, to)
    if pa.types.is_floating(value.type) and pa.types.is_integer(to):  # to the nearest, ties to even, as DuckDB
        number = value.as_py()
        if not math.isfinite(number):
            raise ValueError(f"{number} has no integer value")
        return pa.scalar(round(number), to)
    if sqltypes.is_string(value.type) and (pa.types.is_timestamp(to) or pa.types.is_date(to)):
        text = value.as_py().strip()
        parsed = dt.datetime.fromisoformat(text.replace(" UTC", "+00:00"))
        if pa.types.is_timestamp(to) and to.tz and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        if pa.types.is_timestamp(to) and not to.tz and parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return pa.scalar(parsed.date() if pa.types.is_date(to) else parsed, to)
    if pa.types.is_float64(value.type) and sqltypes.is_string(to):
        return pa.scalar(float_words(value.as_py()), to)
    if pa.types.is_timestamp(value.type) and sqltypes.is_string(to) and isinstance(value.as_py(), dt.datetime):
        return pa.scalar(timestamp_words(value.as_py(), bool(value.type.tz)), to)
    if pa.types.is_timestamp(value.type) and pa.types.is_timestamp(to):
        moment = value.as_py()
        if isinstance(moment, dt.datetime):
            if to.tz and moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            elif not to.tz and moment.tzinfo is not None:
                moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return pa.scalar(moment, to)
    if pa.types.is_date(value.type) and pa.types.is_timestamp(to):
        day = value.as_py()
        moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc if to.tz else None)
        return pa.scalar(moment, to)
    return value.cast(to)


def decimals_apply(source: pa.DataType, to: pa.DataType) -> bool:
    """Whether a cast from ``source`` to ``to`` is a DECIMAL cast (:mod:`.decimals`), rounding half away from zero."""
    if pa.types.is_decimal(to):
        return sqltypes.is_numeric(source) or sqltypes.is_string(source)
    return pa.types.is_decimal(source) and pa.types.is_integer(to)


def concat(c: ExpressionCompiler, args: list[Typed], skip_nulls: bool, separator: str = "") -> Typed:
    args = [a if sqltypes.is_string(a.type) else c.cast(a, _S) for a in args]
    if len(args) == 1 and not skip_nulls:
        return args[0]
    if skip_nulls and separator:  # each present value after a separator, then the first separator cut off
        # (Arrow's own "skip" handling drops rows where every value is NULL, leaving a column too short)
        pieces = [c.call("coalesce", [c.call("binary_join_element_wise", [constant(separator), a, constant("")],
                                             pc.JoinOptions("emit_null"), _S), constant("")], type_=_S) for a in args]
        joined = c.call("binary_join_element_wise", [*pieces, constant("")], pc.JoinOptions("emit_null"), _S)
        return c.call("utf8_slice_codeunits", [joined], pc.SliceOptions(len(separator)), _S)
    options = pc.JoinOptions("replace" if skip_nulls else "emit_null", "")
    return c.call("binary_join_element_wise", [*args, constant(separator)], options, _S)


def float_words(number: float) -> str:
    """A DOUBLE as DuckDB prints it: the shortest text that reads back the same, as Python's repr
    (``2.0``, ``1e-05``, ``1000000000000000.0``, ``1e+16``)."""
    return repr(float(number)) if math.isfinite(number) else str(number)


def float_text(c: ExpressionCompiler, value: Typed) -> Typed:
    """A float column as text, the way DuckDB prints it (see :func:`float_words`).

    Arrow already writes the shortest digits; where its notation differs
    from DuckDB's it is adjusted: a whole number gets ``.0``, a number
    Arrow writes with an exponent below 1e16 is written out, an exponent
    has at least two digits, and a number below 1e-4 has an exponent.
    """
    text = Typed(value.expr.cast(_S), _S)
    plain = c.call("match_substring_regex", [text], pc.MatchSubstringOptions(r"^-?[0-9]+$"), _B)
    text = c.case_when([plain], [concat(c, [text, constant(".0")], skip_nulls=False), text], "CAST")
    if pa.types.is_float64(value.type):
        whole = c.call("equal", [value, c.call("trunc", [value], type_=value.type)], type_=_B)
        small = c.call("less", [c.call("abs", [value], type_=value.type), constant(1e16)], type_=_B)
        raised = c.call("match_substring", [text], pc.MatchSubstringOptions("e+"), _B)
        spelled = c.call("and_kleene", [c.call("and_kleene", [whole, small], type_=_B), raised], type_=_B)
        digits = Typed(value.expr.cast(pa.int64(), safe=False).cast(_S), _S)
        text = c.case_when([spelled], [concat(c, [digits, constant(".0")], skip_nulls=False), text], "CAST")
        for shift in range(1, 16):  # 1.25e+10 as 12500000000.0 (whole numbers are spelled out above)
            text = c.call("replace_substring_regex", [text], pc.ReplaceSubstringOptions(
                rf"^(-?)([0-9])\.([0-9]{{{shift}}})([0-9]+)e\+{shift}$", r"\1\2\3.\4"), _S)
        for zeros, exponent in (("0000", "05"), ("00000", "06")):  # 0.00001 as 1e-05
            for rest, written in ((r"([0-9]+)", rf"\1\2.\3e-{exponent}"), ("", rf"\1\2e-{exponent}")):
                text = c.call("replace_substring_regex", [text],
                              pc.ReplaceSubstringOptions(rf"^(-?)0\.{zeros}([1-9]){rest}$", written), _S)
    return c.call("replace_substring_regex", [text], pc.ReplaceSubstringOptions(r"e([+-])([0-9])$", r"e\10\2"), _S)


def timestamp_words(moment: dt.datetime, zoned: bool) -> str:
    """A timestamp as DuckDB prints it: ``2024-01-01 10:00:00[.ffffff, trailing zeros dropped][+00]``."""
    if zoned and moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc)
    text = moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    whole, fraction = text.split(".")
    fraction = fraction.rstrip("0")
    return whole + (f".{fraction}" if fraction else "") + ("+00" if zoned else "")


def timestamp_text(c: ExpressionCompiler, value: Typed) -> Typed:
    """A timestamp as DuckDB prints it: ``2024-01-01 10:00:00[.ffffff][+00]``."""
    whole = c.call("strftime", [c.call("floor_temporal", [value], pc.RoundTemporalOptions(1, "second"), value.type)],
                   pc.StrftimeOptions("%Y-%m-%d %H:%M:%S"), _S)
    whole = c.call("utf8_slice_codeunits", [whole], pc.SliceOptions(0, 19), _S)
    micros = c.call("subsecond", [value], type_=pa.float64())
    fraction = c.call("strftime", [value], pc.StrftimeOptions("%S"), _S)
    fraction = c.call("utf8_slice_codeunits", [fraction], pc.SliceOptions(2, 9), _S)
    fraction = c.call("utf8_rtrim", [fraction], pc.TrimOptions("0"), _S)
    fraction = c.case_when([c.call("equal", [micros, constant(0.0)], type_=_B)], [constant(""), fraction], "CAST")
    zone = constant("+00" if value.type.tz else "")
    return concat(c, [whole, fraction, zone], skip_nulls=False)
