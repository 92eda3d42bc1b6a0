"""JSON path functions: ``json_extract_string`` (also ``json ->> '$.a.b'``) and ``json_extract``.

``json_extract_string(json, '$.a.b[0]')`` is the value at the path as text,
NULL where the path is absent; ``json_extract(json, path)`` gives it as JSON
text (strings keep their quotes).  A column holding a JSON *object* was
flattened on ingestion (``payload.user.id``), so over a flattened column the
path simply names it.

JSON text is read by the Arrow kernel of :mod:`planner.json_kernel`, which
``planner`` registers on import (query workers unpickle expressions that
call it without importing this module).
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles
from planner.expressions.typed import Typed, constant
from planner.json_kernel import JSON_FUNCTION, register_kernels
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql

_S = pa.string()


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


@handles(exp.JSONExtractScalar)
def _json_extract_string(c: ExpressionCompiler, node: exp.JSONExtractScalar) -> Typed:
    return _json_extract(c, node, as_text=True)


@handles(exp.JSONExtract)
def _json_extract_json(c: ExpressionCompiler, node: exp.JSONExtract) -> Typed:
    return _json_extract(c, node, as_text=False)


def _json_extract(c: ExpressionCompiler, node: exp.Expression, as_text: bool) -> Typed:
    path_node = node.expression
    path_text = None
    if not isinstance(path_node, exp.JSONPath):
        path_typed = c.compile(path_node)
        if not path_typed.constant:
            raise UnsupportedSql(f"the JSON path of {node.sql()} must be a constant string", *position(node))
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
