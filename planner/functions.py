"""Scalar SQL functions: strings, regular expressions, time and math.

Each function maps onto Arrow compute kernels; the semantics follow
DuckDB's (``split_part`` past the end is ``''``, ``regexp_extract`` without
a match is ``''``, ``regexp_replace`` replaces the first match unless the
``'g'`` flag is given, ``time_bucket`` counts from 2000-01-03 like DuckDB).
"""

from __future__ import annotations

import re
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import temporal
from planner import types as sqltypes
from planner.expressions import ExpressionCompiler, Typed, constant
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql

_B = pa.bool_()
_S = pa.string()


def compile_function(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    """Compile a function call (or raise UnsupportedSql naming it)."""
    handler = _FUNCTIONS.get(type(node))
    if handler is not None:
        return handler(c, node)
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name in _NAMED:
            return _NAMED[name](c, [c.compile(a) for a in node.expressions], node)
        raise UnsupportedSql(f"function {node.name}() is not supported")
    if isinstance(node, exp.AggFunc):
        raise SqlError(f"aggregate {node.sql()} is not allowed here (in WHERE, GROUP BY, or nested in another aggregate)")
    if isinstance(node, exp.Window):
        raise UnsupportedSql(f"window functions are not supported yet: {node.sql()[:80]}")
    if isinstance(node, exp.Func):
        raise UnsupportedSql(f"function {node.sql_name()}() is not supported")
    raise UnsupportedSql(f"{node.key.upper()} expressions are not supported: {node.sql()[:80]}")


def literal_arg(c: ExpressionCompiler, node: exp.Expression | None, what: str, default=None):
    """The Python value of an argument that must be a constant."""
    if node is None:
        return default
    typed = c.compile(node)
    if not typed.constant:
        raise UnsupportedSql(f"the {what} must be a constant, not {node.sql()}")
    return typed.value.as_py()


def text(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    typed = c.compile(node)
    return typed if sqltypes.is_string(typed.type) else c.cast(typed, _S)


# -- strings -----------------------------------------------------------------------


def _unary(kernel: str, type_: pa.DataType | None = None, as_text: bool = True):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        arg = text(c, node.this) if as_text else c.compile(node.this)
        return c.call(kernel, [arg], type_=type_ if type_ is not None else arg.type)
    return handler


def _substring(c: ExpressionCompiler, node: exp.Substring) -> Typed:
    value = text(c, node.this)
    start = literal_arg(c, node.args.get("start"), "start of SUBSTRING", 1)
    length = literal_arg(c, node.args.get("length"), "length of SUBSTRING")
    return _slice(c, value, start, length)


def _slice(c: ExpressionCompiler, value: Typed, start: int, length: int | None) -> Typed:
    if start is None or (length is not None and length < 0):
        return constant(pa.scalar(None, _S))
    begin = start - 1 if start > 0 else start
    if start == 0 and length is not None:
        length -= 1
    stop = None if length is None else begin + length
    if begin < 0 and stop is not None and stop >= 0:
        stop = None
    return c.call("utf8_slice_codeunits", [value], pc.SliceOptions(max(begin, 0) if start > 0 else begin, stop), _S)


def _left(c: ExpressionCompiler, node: exp.Left) -> Typed:
    count = literal_arg(c, node.expression, "length of LEFT")
    return c.call("utf8_slice_codeunits", [text(c, node.this)], pc.SliceOptions(0, count), _S)


def _right(c: ExpressionCompiler, node: exp.Right) -> Typed:
    count = literal_arg(c, node.expression, "length of RIGHT")
    if count == 0:
        return c.call("utf8_slice_codeunits", [text(c, node.this)], pc.SliceOptions(0, 0), _S)
    return c.call("utf8_slice_codeunits", [text(c, node.this)], pc.SliceOptions(-count), _S)


def concat(c: ExpressionCompiler, args: list[Typed], skip_nulls: bool, separator: str = "") -> Typed:
    args = [a if sqltypes.is_string(a.type) else c.cast(a, _S) for a in args]
    if len(args) == 1 and not skip_nulls:
        return args[0]
    options = pc.JoinOptions("replace" if skip_nulls else "emit_null", "")
    if skip_nulls and separator:
        options = pc.JoinOptions("skip")
    return c.call("binary_join_element_wise", [*args, constant(separator)], options, _S)


def _concat(c: ExpressionCompiler, node: exp.Concat) -> Typed:
    return concat(c, [c.compile(e) for e in node.expressions], skip_nulls=True)


def _concat_ws(c: ExpressionCompiler, node: exp.ConcatWs) -> Typed:
    separator, *rest = node.expressions
    return concat(c, [c.compile(e) for e in rest], skip_nulls=True, separator=literal_arg(c, separator, "separator"))


def _dpipe(c: ExpressionCompiler, node: exp.DPipe) -> Typed:
    return concat(c, [c.compile(node.this), c.compile(node.expression)], skip_nulls=False)


def _replace(c: ExpressionCompiler, node: exp.Replace) -> Typed:
    pattern = literal_arg(c, node.expression, "pattern of REPLACE")
    replacement = literal_arg(c, node.args.get("replacement"), "replacement of REPLACE", "")
    return c.call("replace_substring", [text(c, node.this)], pc.ReplaceSubstringOptions(pattern, replacement), _S)


def _trim(c: ExpressionCompiler, node: exp.Trim) -> Typed:
    position = (node.args.get("position") or "BOTH").upper()
    chars = literal_arg(c, node.expression, "characters of TRIM")
    side = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "trim")
    value = text(c, node.this)
    if chars is None:
        return c.call(f"utf8_{side}_whitespace", [value], type_=_S)
    return c.call(f"utf8_{side}", [value], pc.TrimOptions(chars), _S)


def _match(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        pattern = literal_arg(c, node.expression, f"pattern of {node.sql_name()}")
        if pattern is None:
            return constant(pa.scalar(None, _B))
        return c.call(kernel, [text(c, node.this)], pc.MatchSubstringOptions(pattern), _B)
    return handler


def _str_position(c: ExpressionCompiler, node: exp.StrPosition) -> Typed:
    pattern = literal_arg(c, node.args.get("substr"), "search string")
    found = c.call("find_substring", [text(c, node.this)], pc.MatchSubstringOptions(pattern), pa.int32())
    return c.call("add", [found, constant(1, pa.int32())], type_=pa.int32())


def _split_part(c: ExpressionCompiler, node: exp.SplitPart) -> Typed:
    delimiter = literal_arg(c, node.args.get("delimiter"), "delimiter of SPLIT_PART")
    index = literal_arg(c, node.args.get("part_index"), "index of SPLIT_PART")
    parts = c.call("split_pattern", [text(c, node.this)], pc.SplitPatternOptions(delimiter), pa.list_(_S))
    if index > 0:
        start, stop = index - 1, index
    elif index < 0:
        raise UnsupportedSql("SPLIT_PART with a negative index is not supported; count parts from 1")
    else:
        return constant(pa.scalar(None, _S))
    picked = c.call("list_slice", [parts], pc.ListSliceOptions(start, stop), pa.list_(_S))
    return c.call("binary_join", [picked, constant("")], type_=_S)


def regular_expression(node: exp.Expression | None, pattern: str | None) -> str | None:
    """``pattern`` (the constant ``node``) if RE2 accepts it; SqlError at the pattern's position if not."""
    if pattern is None:
        return None
    try:
        pc.match_substring_regex(pa.array([""], _S), pattern)
    except pa.ArrowInvalid as error:
        reason = str(error).split("\n")[0].removeprefix("Invalid regular expression: ")
        where = ""
        try:
            re.compile(pattern)
        except re.error as located:
            if located.pos is not None:
                where = f" at character {located.pos + 1}"
        line, column = position(node) if node is not None else (None, None)
        raise SqlError(f"invalid regular expression {pattern!r}{where}: {reason}; "
                       "escape a literal ( [ { * + ? . | \\ with a backslash", line, column) from None
    return pattern


def _regexp_like(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    pattern = regular_expression(node.expression, literal_arg(c, node.expression, "regular expression"))
    flags = literal_arg(c, node.args.get("flag"), "regular expression flags", "") or ""
    if pattern is None:
        return constant(pa.scalar(None, _B))
    if isinstance(node, exp.RegexpFullMatch):
        pattern = f"^(?:{pattern})$"
    options = pc.MatchSubstringOptions(pattern, ignore_case="i" in flags)
    return c.call("match_substring_regex", [text(c, node.this)], options, _B)


def _regexp_replace(c: ExpressionCompiler, node: exp.RegexpReplace) -> Typed:
    pattern = regular_expression(node.expression, literal_arg(c, node.expression, "regular expression"))
    replacement = literal_arg(c, node.args.get("replacement"), "replacement", "")
    modifiers = literal_arg(c, node.args.get("modifiers"), "regular expression flags", "") or ""
    if "i" in modifiers:
        pattern = f"(?i){pattern}"
    limit = -1 if "g" in modifiers else 1
    options = pc.ReplaceSubstringOptions(pattern, replacement, max_replacements=limit)
    return c.call("replace_substring_regex", [text(c, node.this)], options, _S)


def _regexp_extract(c: ExpressionCompiler, node: exp.RegexpExtract) -> Typed:
    pattern = regular_expression(node.expression, literal_arg(c, node.expression, "regular expression"))
    group = literal_arg(c, node.args.get("group"), "group number", 0) or 0
    named, count = _name_groups(pattern)
    if group > count:
        raise SqlError(f"regexp_extract asks for group {group} but {pattern!r} has only {count} groups")
    value = text(c, node.this)
    extracted = c.call("extract_regex", [value], pc.ExtractRegexOptions(f"(?P<g0>{named})"),
                       pa.struct([(f"g{i}", _S) for i in range(count + 1)]))
    part = c.call("struct_field", [extracted], pc.StructFieldOptions([group]), _S)
    found = c.call("coalesce", [part, constant("")], type_=_S)
    return c._case_when([c.call("is_null", [value], type_=_B)], [constant(pa.scalar(None, _S)), found], node.sql())


def _name_groups(pattern: str) -> tuple[str, int]:
    """``pattern`` with its capturing groups named g1, g2...; and how many there are."""
    out, count, index = [], 0, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if char == "(" and not pattern.startswith("(?", index):
            count += 1
            out.append(f"(?P<g{count}>")
        elif pattern.startswith("(?P<", index) or pattern.startswith("(?<", index) and not pattern.startswith("(?<=", index) and not pattern.startswith("(?<!", index):
            raise UnsupportedSql("regexp_extract with named groups is not supported; use plain groups and a group number")
        else:
            out.append(char)
        index += 1
    return "".join(out), count


def _pad(c: ExpressionCompiler, node: exp.Pad) -> Typed:
    width = literal_arg(c, node.expression, "width of LPAD/RPAD")
    fill = literal_arg(c, node.args.get("fill_pattern"), "padding", " ")
    kernel = "utf8_lpad" if node.args.get("is_left") else "utf8_rpad"
    value = text(c, node.this)
    padded = c.call(kernel, [value], pc.PadOptions(width, fill), _S)
    return c.call("utf8_slice_codeunits", [padded], pc.SliceOptions(0, width), _S)


def _repeat(c: ExpressionCompiler, node: exp.Repeat) -> Typed:
    return c.call("binary_repeat", [text(c, node.this), c.cast(c.compile(node.args["times"]), pa.int64())], type_=_S)


# -- math -----------------------------------------------------------------------------


def _float_unary(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        return c.call(kernel, [c.cast(c.compile(node.this), pa.float64())], type_=pa.float64())
    return handler


def _round(c: ExpressionCompiler, node: exp.Round) -> Typed:
    value = c.compile(node.this)
    digits = literal_arg(c, node.args.get("decimals"), "number of digits of ROUND", 0) or 0
    if pa.types.is_integer(value.type) and digits >= 0:
        return value
    value = c.cast(value, pa.float64())
    return c.call("round", [value], pc.RoundOptions(digits, "half_towards_infinity"), pa.float64())


def _floor_ceil(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        value = c.compile(node.this)
        if pa.types.is_integer(value.type):
            return value
        return c.call(kernel, [c.cast(value, pa.float64())], type_=pa.float64())
    return handler


def _log(c: ExpressionCompiler, node: exp.Log) -> Typed:
    if node.expression is None:
        return c.call("ln", [c.cast(c.compile(node.this), pa.float64())], type_=pa.float64())
    base = literal_arg(c, node.this, "base of LOG")
    value = c.cast(c.compile(node.expression), pa.float64())
    kernel = {10: "log10", 2: "log2"}.get(base)
    if kernel:
        return c.call(kernel, [value], type_=pa.float64())
    return c.call("logb", [value, constant(float(base))], type_=pa.float64())


def _pow(c: ExpressionCompiler, node: exp.Pow) -> Typed:
    args = [c.cast(c.compile(n), pa.float64()) for n in (node.this, node.expression)]
    return c.call("power", args, type_=pa.float64())


def modulo(c: ExpressionCompiler, left: Typed, right: Typed, target: pa.DataType) -> Typed:
    """SQL ``%``: the sign follows the dividend (Arrow has no remainder kernel)."""
    quotient = c.call("divide", [left, right], type_=target)
    if pa.types.is_floating(target):
        quotient = c.call("trunc", [quotient], type_=target)
    product = c.call("multiply", [quotient, right], type_=target)
    return c.call("subtract", [left, product], type_=target)


def _extremum(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        args = c.coerce([c.compile(node.this), *[c.compile(e) for e in node.expressions]], node.sql())
        return c.call(kernel, args, pc.ElementWiseAggregateOptions(skip_nulls=True), args[0].type)
    return handler


def _sign(c: ExpressionCompiler, node: exp.Sign) -> Typed:
    value = c.compile(node.this)
    return c.call("sign", [value], type_=pa.int8() if pa.types.is_integer(value.type) else value.type)


def _abs(c: ExpressionCompiler, node: exp.Abs) -> Typed:
    value = c.compile(node.this)
    return c.call("abs_checked" if pa.types.is_integer(value.type) else "abs", [value], type_=value.type)


def _trunc(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    value = c.compile(node.this)
    if pa.types.is_integer(value.type):
        return value
    return c.call("trunc", [c.cast(value, pa.float64())], type_=pa.float64())


def _pi(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    return constant(3.141592653589793, pa.float64())


# -- conversions used by the expression compiler --------------------------------------

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
    kept = c._case_when([ok], [value, constant(pa.scalar(None, value.type))], "TRY_CAST")
    trimmed = c.call("utf8_trim_whitespace", [kept], type_=_S)
    if pa.types.is_timestamp(to):
        return text_to_timestamp(c, trimmed, to)
    if pa.types.is_boolean(to):
        lowered = c.call("utf8_lower", [trimmed], type_=_S)
        truth = c.call("is_in", [lowered], pc.SetLookupOptions(pa.array(["true", "t", "1", "yes"])), _B)
        return c._case_when([c.call("is_null", [lowered], type_=_B)], [constant(pa.scalar(None, _B)), truth], "TRY_CAST")
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
    return c._case_when([has_zone_or_fraction], [fallback, naive], "CAST")


def timestamp_text(c: ExpressionCompiler, value: Typed) -> Typed:
    """A timestamp as DuckDB prints it: ``2024-01-01 10:00:00[.ffffff][+00]``."""
    whole = c.call("strftime", [c.call("floor_temporal", [value], pc.RoundTemporalOptions(1, "second"), value.type)],
                   pc.StrftimeOptions("%Y-%m-%d %H:%M:%S"), _S)
    whole = c.call("utf8_slice_codeunits", [whole], pc.SliceOptions(0, 19), _S)
    micros = c.call("subsecond", [value], type_=pa.float64())
    fraction = c.call("strftime", [value], pc.StrftimeOptions("%S"), _S)
    fraction = c.call("utf8_slice_codeunits", [fraction], pc.SliceOptions(2, 9), _S)
    fraction = c.call("utf8_rtrim", [fraction], pc.TrimOptions("0"), _S)
    fraction = c._case_when([c.call("equal", [micros, constant(0.0)], type_=_B)], [constant(""), fraction], "CAST")
    zone = constant("+00" if value.type.tz else "")
    return concat(c, [whole, fraction, zone], skip_nulls=False)


def temporal_arith(c: ExpressionCompiler, op: type, left: Typed, right: Typed) -> Typed:
    return temporal.arith(c, op, left, right)


_FUNCTIONS: dict[type, Callable[[ExpressionCompiler, exp.Expression], Typed]] = {
    exp.Length: _unary("utf8_length", pa.int64()),
    exp.Lower: _unary("utf8_lower", _S),
    exp.Upper: _unary("utf8_upper", _S),
    exp.Reverse: _unary("utf8_reverse", _S),
    exp.BitLength: lambda c, n: c.call("bit_length", [text(c, n.this)], type_=pa.int32()),
    exp.Substring: _substring,
    exp.Left: _left,
    exp.Right: _right,
    exp.Concat: _concat,
    exp.ConcatWs: _concat_ws,
    exp.DPipe: _dpipe,
    exp.Replace: _replace,
    exp.Trim: _trim,
    exp.StartsWith: _match("starts_with"),
    exp.EndsWith: _match("ends_with"),
    exp.Contains: _match("match_substring"),
    exp.StrPosition: _str_position,
    exp.SplitPart: _split_part,
    exp.RegexpLike: _regexp_like,
    exp.RegexpFullMatch: _regexp_like,
    exp.RegexpReplace: _regexp_replace,
    exp.RegexpExtract: _regexp_extract,
    exp.Pad: _pad,
    exp.Repeat: _repeat,
    exp.Abs: _abs,
    exp.Round: _round,
    exp.Floor: _floor_ceil("floor"),
    exp.Ceil: _floor_ceil("ceil"),
    exp.Trunc: _trunc,
    exp.Sqrt: _float_unary("sqrt"),
    exp.Cbrt: lambda c, n: c.call("power", [c.cast(c.compile(n.this), pa.float64()), constant(1 / 3)], type_=pa.float64()),
    exp.Ln: _float_unary("ln"),
    exp.Exp: _float_unary("exp"),
    exp.Log: _log,
    exp.Pow: _pow,
    exp.Sign: _sign,
    exp.Greatest: _extremum("max_element_wise"),
    exp.Least: _extremum("min_element_wise"),
    exp.Pi: _pi,
    **temporal.FUNCTIONS,
}

_NAMED: dict[str, Callable[[ExpressionCompiler, list[Typed], exp.Expression], Typed]] = {
    "strlen": lambda c, a, n: c.call("utf8_length", [a[0]], type_=pa.int64()),
    "prefix": lambda c, a, n: _match("starts_with")(c, exp.StartsWith(this=n.expressions[0], expression=n.expressions[1])),
    "suffix": lambda c, a, n: _match("ends_with")(c, exp.EndsWith(this=n.expressions[0], expression=n.expressions[1])),
    "log10": lambda c, a, n: c.call("log10", [c.cast(a[0], pa.float64())], type_=pa.float64()),
    "log2": lambda c, a, n: c.call("log2", [c.cast(a[0], pa.float64())], type_=pa.float64()),
    **temporal.NAMED,
}

# JSON paths and key=value text (planner/transform_functions.py), for ingest transforms and queries alike
from planner import transform_functions  # noqa: E402 - it uses this module's helpers

_FUNCTIONS.update(transform_functions.FUNCTIONS)
_NAMED.update(transform_functions.NAMED)
