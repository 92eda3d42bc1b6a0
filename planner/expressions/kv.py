"""``parse_kv``: the value of one key in ``a=1 b="two words"`` text.

``parse_kv(text, 'key' [, pair_delimiters, kv_delimiter])``, also written
``parse_kv(text)['key']``: delimiters default to space, comma and semicolon,
and ``=``; NULL where the key is absent; a double-quoted value loses its
quotes.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles, named
from planner.expressions.typed import Typed
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql

_S = pa.string()
DEFAULT_PAIR_DELIMITERS = " ,;"
DEFAULT_KV_DELIMITER = "="


def _class(chars: str) -> str:
    return "".join("\\s" if ch == " " else re.escape(ch) for ch in chars)


def parse_kv(c: ExpressionCompiler, args: list[exp.Expression], node: exp.Expression) -> Typed:
    """``parse_kv(text, key [, pair_delimiters, kv_delimiter])``: the key's value, unquoted."""
    if len(args) < 2 or len(args) > 4:
        raise SqlError(f"{node.sql()}: parse_kv takes (text, key [, pair_delimiters, kv_delimiter]), "
                       "or is written parse_kv(text)['key']", *position(node))
    key = c.literal_arg(args[1], "key of parse_kv")
    pairs = c.literal_arg(args[2] if len(args) > 2 else None, "pair delimiters of parse_kv", DEFAULT_PAIR_DELIMITERS)
    kv = c.literal_arg(args[3] if len(args) > 3 else None, "key/value delimiter of parse_kv", DEFAULT_KV_DELIMITER)
    if not isinstance(key, str) or not key or not pairs or not kv:
        raise SqlError(f"{node.sql()}: the key and delimiters of parse_kv must be non-empty strings", *position(node))
    boundary = _class(pairs)
    pattern = f'(?:^|[{boundary}]){re.escape(key)}{re.escape(kv)}(?P<v>"[^"]*"|[^{boundary}]*)'
    value = c.text(args[0])
    found = c.call("extract_regex", [value], pc.ExtractRegexOptions(pattern), pa.struct([("v", _S)]))
    raw = c.call("struct_field", [found], pc.StructFieldOptions([0]), _S)
    return c.call("replace_substring_regex", [raw], pc.ReplaceSubstringOptions(r'^"(.*)"$', r"\1"), _S)


@named("parse_kv")
def _parse_kv_call(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    return parse_kv(c, list(node.expressions), node)


@handles(exp.Bracket)
def _bracket(c: ExpressionCompiler, node: exp.Bracket) -> Typed:
    """``parse_kv(text)['key']``; other subscripts are not supported."""
    inner = node.this
    if isinstance(inner, exp.Anonymous) and inner.name.lower() == "parse_kv" and len(node.expressions) == 1:
        return parse_kv(c, [*inner.expressions[:1], node.expressions[0], *inner.expressions[1:]], node)
    raise UnsupportedSql(f"subscripts are not supported here: {node.sql()[:80]}; "
                         "for key=value text write parse_kv(text)['key']", *position(node))
