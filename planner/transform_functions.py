"""SQL functions that read semi-structured text: JSON paths and key=value pairs.

- ``json_extract_string(json, '$.a.b[0]')`` (also ``json ->> '$.a.b'``): the
  value at the path as text, NULL where the path is absent;
  ``json_extract(json, path)`` gives it as JSON text (strings keep their
  quotes).  A column holding a JSON *object* was flattened on ingestion
  (``payload.user.id``), so over a flattened column the path simply names it.
- ``parse_kv(text, 'key' [, pair_delimiters, kv_delimiter])``, also written
  ``parse_kv(text)['key']``: the value of ``key`` in ``a=1 b="two words"``
  text (delimiters default to space, comma and semicolon, and ``=``), NULL
  where the key is absent.

JSON text is read by the Arrow kernel of ``planner/json_kernel.py``.
"""

from __future__ import annotations

import json
import re
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions import ExpressionCompiler, Typed, constant
from planner.json_kernel import JSON_FUNCTION, register_kernels
from storage.errors import SqlError, UnsupportedSql

_S = pa.string()
_DEFAULT_PAIRS = " ,;"
_DEFAULT_KV = "="


# -- JSON paths ---------------------------------------------------------------------

def json_path(node: exp.Expression | None, text: str | None) -> list[str | int]:
    """The steps of a JSON path (``$.a.b[0]``, or a bare key ``a``) as keys and list indexes."""
    if isinstance(node, exp.JSONPath):
        steps: list[str | int] = []
        for part in node.expressions:
            if isinstance(part, exp.JSONPathRoot):
                continue
            if isinstance(part, exp.JSONPathKey):
                steps.append(str(part.this))
            elif isinstance(part, exp.JSONPathSubscript) and isinstance(part.this, int):
                steps.append(int(part.this))
            else:
                raise UnsupportedSql(f"JSON path {node.sql()!r}: only keys and list indexes are supported")
        return steps
    if text is None:
        raise SqlError("the JSON path must be a constant string such as '$.user.id'")
    if not text.startswith("$"):
        return [text]
    steps = []
    for key, index in re.findall(r"\.\"?([^.\[\"]+)\"?|\[(\d+)\]", text[1:]):
        steps.append(int(index) if index else key)
    return steps


def _json_extract(c: ExpressionCompiler, node: exp.Expression, as_text: bool) -> Typed:
    path_node = node.expression
    path_text = None
    if not isinstance(path_node, exp.JSONPath):
        path_typed = c.compile(path_node)
        if not path_typed.constant:
            raise UnsupportedSql(f"the JSON path of {node.sql()} must be a constant string")
        path_text = path_typed.value.as_py()
    steps = json_path(path_node if isinstance(path_node, exp.JSONPath) else None, path_text)
    source = node.this
    if isinstance(source, exp.Column) and c.schema.get_field_index(source.name) < 0:
        return _flattened(c, source.name, steps, node)
    value = c.compile(source)
    if not sqltypes.is_string(value.type):
        value = c.cast(value, _S)
    register_kernels()
    return c.call(JSON_FUNCTION, [value, constant(json.dumps(steps)), constant(as_text)], type_=_S)


def _flattened(c: ExpressionCompiler, name: str, steps: list[str | int], node: exp.Expression) -> Typed:
    """A path into a JSON object that ingestion flattened: the column ``name.a.b``, NULL if absent."""
    if not any(n.startswith(name + ".") for n in c.schema.names):
        c.column(name)  # raises ColumnNotFound with the known columns
    if any(isinstance(s, int) for s in steps):
        raise UnsupportedSql(f"{node.sql()}: {name} was read as an object; list indexes cannot reach into it")
    flat = ".".join([name, *map(str, steps)])
    if c.schema.get_field_index(flat) < 0:
        return constant(pa.scalar(None, _S))
    value = c.column(flat)
    return value if sqltypes.is_string(value.type) else c.cast(value, _S)


# -- key=value ---------------------------------------------------------------------------

def _class(chars: str) -> str:
    return "".join("\\s" if ch == " " else re.escape(ch) for ch in chars)


def parse_kv(c: ExpressionCompiler, args: list[exp.Expression], node: exp.Expression) -> Typed:
    """``parse_kv(text, key [, pair_delimiters, kv_delimiter])``: the key's value, unquoted."""
    from planner.functions import literal_arg, text

    if len(args) < 2 or len(args) > 4:
        raise SqlError(f"{node.sql()}: parse_kv takes (text, key [, pair_delimiters, kv_delimiter]), "
                       "or is written parse_kv(text)['key']")
    key = literal_arg(c, args[1], "key of parse_kv")
    pairs = literal_arg(c, args[2] if len(args) > 2 else None, "pair delimiters of parse_kv", _DEFAULT_PAIRS)
    kv = literal_arg(c, args[3] if len(args) > 3 else None, "key/value delimiter of parse_kv", _DEFAULT_KV)
    if not isinstance(key, str) or not key or not pairs or not kv:
        raise SqlError(f"{node.sql()}: the key and delimiters of parse_kv must be non-empty strings")
    boundary = _class(pairs)
    pattern = f'(?:^|[{boundary}]){re.escape(key)}{re.escape(kv)}(?P<v>"[^"]*"|[^{boundary}]*)'
    value = text(c, args[0])
    found = c.call("extract_regex", [value], pc.ExtractRegexOptions(pattern), pa.struct([("v", _S)]))
    raw = c.call("struct_field", [found], pc.StructFieldOptions([0]), _S)
    return c.call("replace_substring_regex", [raw], pc.ReplaceSubstringOptions(r'^"(.*)"$', r"\1"), _S)


def _parse_kv_call(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    return parse_kv(c, list(node.expressions), node)


def _bracket(c: ExpressionCompiler, node: exp.Bracket) -> Typed:
    """``parse_kv(text)['key']``; other subscripts are not supported."""
    inner = node.this
    if isinstance(inner, exp.Anonymous) and inner.name.lower() == "parse_kv" and len(node.expressions) == 1:
        return parse_kv(c, [*inner.expressions[:1], node.expressions[0], *inner.expressions[1:]], node)
    raise UnsupportedSql(f"subscripts are not supported here: {node.sql()[:80]}; "
                         "for key=value text write parse_kv(text)['key']")


FUNCTIONS: dict[type, Callable[[ExpressionCompiler, exp.Expression], Typed]] = {
    exp.JSONExtractScalar: lambda c, n: _json_extract(c, n, as_text=True),
    exp.JSONExtract: lambda c, n: _json_extract(c, n, as_text=False),
    exp.Bracket: _bracket,
}

NAMED: dict[str, Callable[[ExpressionCompiler, list[Typed], exp.Expression], Typed]] = {
    "parse_kv": _parse_kv_call,
}

