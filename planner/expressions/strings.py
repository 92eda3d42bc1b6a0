"""String and regular expression functions.

Each maps onto Arrow's utf8 kernels, with DuckDB's semantics: ``split_part``
past the end is ``''``, ``regexp_extract`` without a match is ``''``,
``regexp_replace`` replaces the first match unless the ``'g'`` flag is given.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.conversions import concat
from planner.expressions.registry import HANDLERS, handles, named
from planner.expressions.typed import Typed, constant
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql

_B = pa.bool_()
_S = pa.string()

def _unary(kernel: str, type_: pa.DataType | None = None, as_text: bool = True):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        arg = c.text(node.this) if as_text else c.compile(node.this)
        return c.call(kernel, [arg], type_=type_ if type_ is not None else arg.type)
    return handler


@handles(exp.Substring)
def _substring(c: ExpressionCompiler, node: exp.Substring) -> Typed:
    value = c.text(node.this)
    start = c.literal_arg(node.args.get("start"), "start of SUBSTRING", 1)
    length = c.literal_arg(node.args.get("length"), "length of SUBSTRING")
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


@handles(exp.Left)
def _left(c: ExpressionCompiler, node: exp.Left) -> Typed:
    count = c.literal_arg(node.expression, "length of LEFT")
    return c.call("utf8_slice_codeunits", [c.text(node.this)], pc.SliceOptions(0, count), _S)


@handles(exp.Right)
def _right(c: ExpressionCompiler, node: exp.Right) -> Typed:
    count = c.literal_arg(node.expression, "length of RIGHT")
    if count == 0:
        return c.call("utf8_slice_codeunits", [c.text(node.this)], pc.SliceOptions(0, 0), _S)
    return c.call("utf8_slice_codeunits", [c.text(node.this)], pc.SliceOptions(-count), _S)


@handles(exp.Concat)
def _concat(c: ExpressionCompiler, node: exp.Concat) -> Typed:
    return concat(c, [c.compile(e) for e in node.expressions], skip_nulls=True)


@handles(exp.ConcatWs)
def _concat_ws(c: ExpressionCompiler, node: exp.ConcatWs) -> Typed:
    separator, *rest = node.expressions
    return concat(c, [c.compile(e) for e in rest], skip_nulls=True, separator=c.literal_arg(separator, "separator"))


@handles(exp.DPipe)
def _dpipe(c: ExpressionCompiler, node: exp.DPipe) -> Typed:
    return concat(c, [c.compile(node.this), c.compile(node.expression)], skip_nulls=False)


@handles(exp.Replace)
def _replace(c: ExpressionCompiler, node: exp.Replace) -> Typed:
    pattern = c.literal_arg(node.expression, "pattern of REPLACE")
    replacement = c.literal_arg(node.args.get("replacement"), "replacement of REPLACE", "")
    return c.call("replace_substring", [c.text(node.this)], pc.ReplaceSubstringOptions(pattern, replacement), _S)


@handles(exp.Trim)
def _trim(c: ExpressionCompiler, node: exp.Trim) -> Typed:
    position = (node.args.get("position") or "BOTH").upper()
    chars = c.literal_arg(node.expression, "characters of TRIM")
    side = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "trim")
    value = c.text(node.this)
    if chars is None:
        return c.call(f"utf8_{side}_whitespace", [value], type_=_S)
    return c.call(f"utf8_{side}", [value], pc.TrimOptions(chars), _S)


def _match(kernel: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        pattern = c.literal_arg(node.expression, f"pattern of {node.sql_name()}")
        if pattern is None:
            return constant(pa.scalar(None, _B))
        return c.call(kernel, [c.text(node.this)], pc.MatchSubstringOptions(pattern), _B)
    return handler


@handles(exp.StrPosition)
def _str_position(c: ExpressionCompiler, node: exp.StrPosition) -> Typed:
    pattern = c.literal_arg(node.args.get("substr"), "search string")
    found = c.call("find_substring", [c.text(node.this)], pc.MatchSubstringOptions(pattern), pa.int32())
    return c.call("add", [found, constant(1, pa.int32())], type_=pa.int32())


@handles(exp.SplitPart)
def _split_part(c: ExpressionCompiler, node: exp.SplitPart) -> Typed:
    delimiter = c.literal_arg(node.args.get("delimiter"), "delimiter of SPLIT_PART")
    index = c.literal_arg(node.args.get("part_index"), "index of SPLIT_PART")
    parts = c.call("split_pattern", [c.text(node.this)], pc.SplitPatternOptions(delimiter), pa.list_(_S))
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


@handles(exp.RegexpLike, exp.RegexpFullMatch)
def _regexp_like(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    pattern = regular_expression(node.expression, c.literal_arg(node.expression, "regular expression"))
    flags = c.literal_arg(node.args.get("flag"), "regular expression flags", "") or ""
    if pattern is None:
        return constant(pa.scalar(None, _B))
    if isinstance(node, exp.RegexpFullMatch):
        pattern = f"^(?:{pattern})$"
    options = pc.MatchSubstringOptions(pattern, ignore_case="i" in flags)
    return c.call("match_substring_regex", [c.text(node.this)], options, _B)


@handles(exp.RegexpReplace)
def _regexp_replace(c: ExpressionCompiler, node: exp.RegexpReplace) -> Typed:
    pattern = regular_expression(node.expression, c.literal_arg(node.expression, "regular expression"))
    replacement = c.literal_arg(node.args.get("replacement"), "replacement", "")
    modifiers = c.literal_arg(node.args.get("modifiers"), "regular expression flags", "") or ""
    if "i" in modifiers:
        pattern = f"(?i){pattern}"
    limit = -1 if "g" in modifiers else 1
    options = pc.ReplaceSubstringOptions(pattern, replacement, max_replacements=limit)
    return c.call("replace_substring_regex", [c.text(node.this)], options, _S)


@handles(exp.RegexpExtract)
def _regexp_extract(c: ExpressionCompiler, node: exp.RegexpExtract) -> Typed:
    pattern = regular_expression(node.expression, c.literal_arg(node.expression, "regular expression"))
    group = c.literal_arg(node.args.get("group"), "group number", 0) or 0
    named, count = _name_groups(pattern)
    if group > count:
        raise SqlError(f"regexp_extract asks for group {group} but {pattern!r} has only {count} groups")
    value = c.text(node.this)
    extracted = c.call("extract_regex", [value], pc.ExtractRegexOptions(f"(?P<g0>{named})"),
                       pa.struct([(f"g{i}", _S) for i in range(count + 1)]))
    part = c.call("struct_field", [extracted], pc.StructFieldOptions([group]), _S)
    found = c.call("coalesce", [part, constant("")], type_=_S)
    return c.case_when([c.call("is_null", [value], type_=_B)], [constant(pa.scalar(None, _S)), found], node.sql())


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


@handles(exp.Pad)
def _pad(c: ExpressionCompiler, node: exp.Pad) -> Typed:
    width = c.literal_arg(node.expression, "width of LPAD/RPAD")
    fill = c.literal_arg(node.args.get("fill_pattern"), "padding", " ")
    kernel = "utf8_lpad" if node.args.get("is_left") else "utf8_rpad"
    value = c.text(node.this)
    padded = c.call(kernel, [value], pc.PadOptions(width, fill), _S)
    return c.call("utf8_slice_codeunits", [padded], pc.SliceOptions(0, width), _S)


@handles(exp.Repeat)
def _repeat(c: ExpressionCompiler, node: exp.Repeat) -> Typed:
    return c.call("binary_repeat", [c.text(node.this), c.cast(c.compile(node.args["times"]), pa.int64())], type_=_S)


@handles(exp.BitLength)
def _bit_length(c: ExpressionCompiler, node: exp.BitLength) -> Typed:
    return c.call("bit_length", [c.text(node.this)], type_=pa.int32())


@named("strlen")
def _strlen(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    return c.call("utf8_length", [args[0]], type_=pa.int64())


@named("prefix", "suffix")
def _prefix_suffix(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    kind = exp.StartsWith if node.name.lower() == "prefix" else exp.EndsWith
    return HANDLERS[kind](c, kind(this=node.expressions[0], expression=node.expressions[1]))


handles(exp.Length)(_unary("utf8_length", pa.int64()))
handles(exp.Lower)(_unary("utf8_lower", _S))
handles(exp.Upper)(_unary("utf8_upper", _S))
handles(exp.Reverse)(_unary("utf8_reverse", _S))
handles(exp.StartsWith)(_match("starts_with"))
handles(exp.EndsWith)(_match("ends_with"))
handles(exp.Contains)(_match("match_substring"))
