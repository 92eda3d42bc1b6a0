"""Arrow schemas: JSON form, and the rules by which segment schemas evolve.

A table's schema is the union of its segments' schemas.  A column that only
newer segments have reads as NULL in older ones; an integer column that later
carries floats widens to float64; narrower integers widen to wider ones.  Any
other change of type is a :class:`~storage.errors.SchemaConflict` naming the
column and both types.

uint64 mixed with a signed integer is such a conflict: no Arrow integer holds
both (int64 overflows above 2**63, float64 rounds above 2**53).  Arrow's own
schema unification refuses the pair too; DuckDB would read it as HUGEINT,
which Parquet segments cannot carry.  Cast the values to int64 if they fit,
or to float64 if rounding is acceptable.
"""

from __future__ import annotations

import base64
from typing import Iterable

import pyarrow as pa

from storage.errors import SchemaConflict


def schema_to_json(schema: pa.Schema) -> str:
    """A JSON-safe string that :func:`schema_from_json` turns back into ``schema``."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_json(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def widen(column: str, current: pa.DataType, incoming: pa.DataType) -> pa.DataType:
    """The type that holds both ``current`` and ``incoming`` values of ``column``."""
    if current.equals(incoming):
        return current
    if pa.types.is_null(current):
        return incoming
    if pa.types.is_null(incoming):
        return current
    if _is_int(current) and _is_int(incoming):
        unsigned64 = [t for t in (current, incoming) if pa.types.is_uint64(t)]
        if unsigned64 and any(pa.types.is_signed_integer(t) for t in (current, incoming)):
            raise SchemaConflict(
                f"column {column!r} has type {current} but new data has type {incoming}; no integer type "
                "holds both (int64 overflows above 2**63) — cast the values to int64 if they fit, or to "
                "float64 if rounding above 2**53 is acceptable"
            )
        signed = pa.types.is_signed_integer(current) or pa.types.is_signed_integer(incoming)
        width = max(current.bit_width, incoming.bit_width)
        if signed and width < 64 and not (
            pa.types.is_signed_integer(current) and pa.types.is_signed_integer(incoming)
        ):
            width *= 2
        return getattr(pa, f"{'int' if signed else 'uint'}{min(width, 64)}")()
    if (_is_int(current) or pa.types.is_floating(current)) and (
        _is_int(incoming) or pa.types.is_floating(incoming)
    ):
        return pa.float64()
    if _is_string(current) and _is_string(incoming):
        return pa.large_string() if pa.types.is_large_string(current) or pa.types.is_large_string(incoming) else pa.string()
    if pa.types.is_timestamp(current) and pa.types.is_timestamp(incoming):
        if current.tz != incoming.tz and current.tz and incoming.tz:
            raise SchemaConflict(
                f"column {column!r} is a timestamp in time zone {current.tz} in some segments and "
                f"{incoming.tz} in others; store every value in one zone (UTC)"
            )
        units = ["s", "ms", "us", "ns"]
        unit = max(current.unit, incoming.unit, key=units.index)
        return pa.timestamp(unit, tz=current.tz or incoming.tz)
    raise SchemaConflict(
        f"column {column!r} has type {current} but new data has type {incoming}; these cannot be "
        "reconciled — cast the new values to the existing type or write them under another column name"
    )


def unify(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """The union of ``schemas`` under the widening rules; columns in first-seen order."""
    fields: dict[str, pa.DataType] = {}
    for schema in schemas:
        for f in schema:
            fields[f.name] = widen(f.name, fields[f.name], f.type) if f.name in fields else f.type
    return pa.schema([pa.field(name, t) for name, t in fields.items()])


def schema_changes(before: pa.Schema | None, after: pa.Schema) -> list[dict[str, str]]:
    """The columns ``after`` adds to ``before`` or widens, as a commit records them."""
    old = {f.name: f.type for f in before} if before is not None else {}
    changes = []
    for f in after:
        if f.name not in old:
            changes.append({"column": f.name, "type": str(f.type)})
        elif not old[f.name].equals(f.type):
            changes.append({"column": f.name, "type": str(f.type), "was": str(old[f.name])})
    return changes


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones NULL, the rest cast to it."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type.equals(f.type) else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)
