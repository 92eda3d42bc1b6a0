"""A scalar Arrow function that reads the value at a JSON path: ``petrel_json_extract``.

JSON text is read by Arrow's JSON reader over the whole column at once (a
registered scalar function, so it runs inside the same Acero projection as
every other expression); only a column the reader refuses (malformed JSON,
a value that changes kind from row to row) is read row by row, and a row
that is not JSON fails the projection with a message naming the value —
an ingest transform then rejects just that row.

It is registered when ``planner`` is imported: a query worker unpickles
expressions that call it without ever importing the expression compiler.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

JSON_FUNCTION = "petrel_json_extract"
_S = pa.string()


class MalformedJson(pa.ArrowInvalid):
    """A value that should be JSON text is not."""


def _walk(document: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(document, list) or step >= len(document):
                return None
        elif not isinstance(document, dict):
            return None
        document = document[step] if isinstance(step, int) else document.get(step)
        if document is None:
            return None
    return document


def _as_text(value: Any, as_text: bool) -> str | None:
    if value is None:
        return None
    if as_text and isinstance(value, str):
        return value
    if as_text and isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def _extract_rows(values: pa.Array, steps: list[str | int], as_text: bool) -> pa.Array:
    """Row by row: for columns the JSON reader refuses as a whole."""
    out = []
    for value in values.to_pylist():
        if value is None:
            out.append(None)
            continue
        try:
            document = json.loads(value)
        except ValueError as error:
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise MalformedJson(f"value {shown!r} is not valid JSON ({error})") from None
        out.append(_as_text(_walk(document, steps), as_text))
    return pa.array(out, _S)


def _extract_column(values: pa.Array, steps: list[str | int], as_text: bool) -> pa.Array:
    """The whole column through Arrow's JSON reader; ArrowInvalid when it cannot be read that way."""
    flat = pc.replace_substring(values, "\n", " ")  # in valid JSON a raw newline can only be whitespace
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(flat, "null"), "}\n", "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = lines.buffers()[2].slice(start, end - start) if end > start else pa.py_buffer(b"")
    options = pajson.ReadOptions(use_threads=False, block_size=max(1 << 20, end - start + 1))
    table = pajson.read_json(pa.BufferReader(data), read_options=options)
    if table.num_rows != len(values):
        raise pa.ArrowInvalid("row count changed")
    column = table.column("v").combine_chunks() if table.num_columns else pa.nulls(len(values))
    for step in steps:
        if isinstance(step, str) and pa.types.is_struct(column.type):
            index = column.type.get_field_index(step)
            if index < 0:
                return pa.nulls(len(values), _S)
            column = pc.struct_field(column, [index])
        elif pa.types.is_null(column.type):
            return pa.nulls(len(values), _S)
        else:
            raise pa.ArrowInvalid("path does not follow the column's shape")
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(values), _S)
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and as_text:
        return column.cast(_S)
    if (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) or (pa.types.is_floating(kind) and not as_text):
        return column.cast(_S)
    raise pa.ArrowInvalid(f"{kind} values are read row by row")


def _json_kernel(ctx: Any, values: pa.Array, path: pa.Scalar, as_text: pa.Scalar) -> pa.Array:
    steps = json.loads(path.as_py())
    text = bool(as_text.as_py())
    if isinstance(values, pa.Scalar):
        values = pa.array([values.as_py()], _S)
    try:
        return _extract_column(values, steps, text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, KeyError):
        return _extract_rows(values, steps, text)


def register_kernels() -> None:
    """Register the JSON kernel with Arrow (once per process)."""
    try:
        pc.get_function(JSON_FUNCTION)
        return
    except pa.ArrowKeyError:
        pass
    try:
        pc.register_scalar_function(
            _json_kernel,
            JSON_FUNCTION,
            {"summary": "value at a JSON path", "description": "Reads JSON text and returns the value at a path."},
            {"values": _S, "path": _S, "as_text": pa.bool_()},
            _S,
        )
    except pa.ArrowKeyError:  # another thread registered it first
        pass
