"""CAST and TRY_CAST.

TRY_CAST from text gives NULL where the text does not read as the target
type (checked by pattern first, since Arrow's casts fail a whole batch on
one bad value); text without a time zone is read as UTC.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles
from planner.expressions.typed import Typed, constant

_B = pa.bool_()
_S = pa.string()

@handles(exp.Cast, exp.TryCast)
def _cast(c: ExpressionCompiler, node: exp.Cast) -> Typed:
    to = sqltypes.arrow_type(node.args["to"])
    value = c.compile(node.this)
    safe = isinstance(node, exp.TryCast) or bool(node.args.get("safe"))
    if safe and not value.constant and sqltypes.is_string(value.type) and not sqltypes.is_string(to):
        return try_cast_text(c, value, to)
    if safe and value.constant:
        return c.cast(value, to, safe=False)
    if sqltypes.is_string(value.type) and pa.types.is_timestamp(to) and not value.constant:
        return text_to_timestamp(c, value, to)
    return c.cast(value, to)


_INT_TEXT = r"^\s*[+-]?\d+\s*$"
_FLOAT_TEXT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(inf|infinity|nan)\s*$"
_TIME_TEXT = r"^\s*\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?\s*$"
_BOOL_TEXT = r"^\s*(?i:true|false|t|f|1|0|yes|no)\s*$"


def try_cast_text(c: ExpressionCompiler, value: Typed, to: pa.DataType) -> Typed:
    """TRY_CAST from text: NULL where the text does not read as ``to``."""
    if pa.types.is_integer(to):
        shape = _INT_TEXT
    elif pa.types.is_floating(to) or pa.types.is_decimal(to):
        shape = _FLOAT_TEXT
    elif pa.types.is_timestamp(to) or pa.types.is_date(to):
        shape = _TIME_TEXT
    elif pa.types.is_boolean(to):
        shape = _BOOL_TEXT
    else:
        return c.cast(value, to)
    ok = c.call("match_substring_regex", [value], pc.MatchSubstringOptions(shape), _B)
    kept = c.case_when([ok], [value, constant(pa.scalar(None, value.type))], "TRY_CAST")
    trimmed = c.call("utf8_trim_whitespace", [kept], type_=_S)
    if pa.types.is_timestamp(to):
        return text_to_timestamp(c, trimmed, to)
    if pa.types.is_decimal(to):  # rounded half away from zero, as CAST rounds
        return c.cast(trimmed, to)
    if pa.types.is_boolean(to):
        lowered = c.call("utf8_lower", [trimmed], type_=_S)
        truth = c.call("is_in", [lowered], pc.SetLookupOptions(pa.array(["true", "t", "1", "yes"])), _B)
        return c.case_when([c.call("is_null", [lowered], type_=_B)], [constant(pa.scalar(None, _B)), truth], "TRY_CAST")
    return Typed(trimmed.expr.cast(to), to)


def text_to_timestamp(c: ExpressionCompiler, value: Typed, to: pa.DataType) -> Typed:
    """Text in ISO form to a timestamp; without a zone it is read as UTC."""
    naive = c.call("strptime", [c.call("utf8_slice_codeunits", [value], pc.SliceOptions(0, 19), _S)],
                   pc.StrptimeOptions("%Y-%m-%d %H:%M:%S", "us", error_is_null=True), pa.timestamp("us"))
    fallback = Typed(value.expr.cast(pa.timestamp("us", tz=to.tz)), pa.timestamp("us", tz=to.tz))
    if to.tz:
        naive = Typed(naive.expr.cast(pa.timestamp("us", tz=to.tz)), pa.timestamp("us", tz=to.tz))
    has_zone_or_fraction = c.call("match_substring_regex", [value],
                                  pc.MatchSubstringOptions(r"(\.\d|Z\s*$|[+-]\d{2}(:?\d{2})?\s*$|^\s*\d{4}-\d{2}-\d{2}\s*$)"), _B)
    return c.case_when([has_zone_or_fraction], [fallback, naive], "CAST")
