"""Normalisation: a parsed batch fitted to its table, row by row where it must.

After parsing, every piece of a batch goes through the same steps, each a
handful of ``pyarrow.compute`` calls over whole columns:

1. nested structs are flattened into dotted column names (``http.status_code``);
2. the time column becomes ``timestamp[us, UTC]``; rows without a time get the
   ingest time, rows with an unreadable one are rejected;
3. every column is fitted to the table's current schema, which evolves: a new
   field becomes a new column, an int column that meets floats widens to
   float64; a value that cannot be stored in its column's type rejects its row
   (columns declared by the user keep their type, values are cast to it);
4. rows over the size limit are rejected.

A rejected row keeps its input row number and a reason naming the field, the
value and the expected type; the other rows of the batch go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.ingest.parse import Parsed, Piece, collision
from engine.ingest.timestamps import UTC_MICROS, convert_with_rejects, describe, to_utc_micros
from storage.errors import SchemaConflict
from storage.schema import widen

DEFAULT_MAX_ROW_BYTES = 1 << 20


@dataclass
class Normalized:
    """A batch ready to route: accepted rows, their input row numbers, and the rejections."""

    table: pa.Table
    rows: np.ndarray
    rejected: list[tuple[int, str]]
    total: int
    schema: pa.Schema
    raw: Callable[[int], str] = field(repr=False, default=lambda i: "")

    @property
    def accepted(self) -> int:
        return self.table.num_rows


def flatten(table: pa.Table) -> tuple[pa.Table, dict[int, str]]:
    """``table`` with struct columns replaced by their fields, named ``parent.child``; and the rows refused.

    When a nested field and a dotted column flatten to one name
    (``{"a": {"b": 1}, "a.b": 2}``), a row with a value under both is
    refused (nothing is dropped silently) and the others keep the value they have.
    """
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    names = table.column_names
    if len(set(names)) == len(names):
        return table, {}
    failed: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(name, []).append(index)
    columns = []
    for name, indices in groups.items():
        merged = table.column(indices[0])
        if len(indices) > 1:
            given = sum(pc.is_valid(table.column(i)).to_numpy(zero_copy_only=False).astype(np.int64)
                        for i in indices)
            for row in np.flatnonzero(given > 1).tolist():
                failed[row] = collision(name)
            for i in indices[1:]:
                other = table.column(i)
                if not other.type.equals(merged.type):
                    if pa.types.is_null(merged.type):
                        merged = pa.nulls(len(merged), other.type)
                    else:
                        other = other.cast(merged.type, safe=False) if not pa.types.is_null(other.type) else None
                if other is not None:
                    merged = pc.coalesce(merged, other)
        columns.append(merged)
    return pa.Table.from_arrays(columns, names=list(groups)), failed


def normalize(
    parsed: Parsed,
    *,
    time_column: str,
    schema: pa.Schema | None,
    declared: frozenset[str] = frozenset(),
    now_us: int,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
) -> Normalized:
    """Fit every piece of ``parsed`` to ``schema`` (evolving it); see the module docstring."""
    types: dict[str, pa.DataType] = {f.name: f.type for f in schema} if schema is not None else {}
    rejected = dict(parsed.rejected)
    fitted: list[Piece] = []
    for piece in parsed.pieces:
        result = _fit_piece(piece, time_column, types, declared, now_us, max_row_bytes, rejected)
        if result.table.num_rows:
            fitted.append(result)
    types.setdefault(time_column, UTC_MICROS)
    final = pa.schema([pa.field(name, t) for name, t in types.items()])
    present = list(dict.fromkeys(n for p in fitted for n in p.table.column_names))
    batch_schema = pa.schema([final.field(n) for n in final.names if n in present])
    if not fitted:
        table = batch_schema.empty_table()
        rows = np.zeros(0, dtype=np.int64)
    else:
        tables = [_conform(p.table, batch_schema) for p in fitted]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        rows = fitted[0].rows if len(fitted) == 1 else np.concatenate([p.rows for p in fitted])
        if len(rows) > 1 and np.any(rows[1:] < rows[:-1]):
            order = np.argsort(rows, kind="stable")
            table = table.take(pa.array(order))
            rows = rows[order]
    return Normalized(table, rows, sorted(rejected.items()), parsed.total, final, parsed.raw)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name in table.column_names:
            column = table.column(f.name)
            columns.append(column if column.type.equals(f.type) else column.cast(f.type, safe=False))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _fit_piece(piece, time_column, types, declared, now_us, max_row_bytes, rejected) -> Piece:
    table, collided = flatten(piece.table)
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}

    def refuse(failed: dict[int, str]) -> None:
        for i, reason in failed.items():
            if not bad[i]:
                bad[i] = True
                reasons[i] = reason

    refuse(collided)

    names, columns = [], []
    if time_column in table.column_names:
        times, failed = to_utc_micros(table.column(time_column), time_column)
        refuse(failed)
        if times.null_count:
            times = pc.fill_null(times, pa.scalar(now_us, UTC_MICROS))
    else:
        times = pa.array(np.full(n, now_us, dtype=np.int64), type=pa.int64()).cast(UTC_MICROS)
    # columns keep the order they arrive in (SELECT * shows them so); a time column the rows lack goes last
    for name in table.column_names + ([] if time_column in table.column_names else [time_column]):
        if name == time_column:
            types.setdefault(time_column, UTC_MICROS)
            names.append(time_column)
            columns.append(times)
            continue
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        fitted, new_type, failed = _fit_column(name, column, types.get(name), name in declared)
        refuse(failed)
        if fitted is None:
            continue
        types[name] = new_type
        names.append(name)
        columns.append(fitted)
    time_type = types[time_column]
    at = names.index(time_column)
    if not columns[at].type.equals(time_type):
        fitted, time_type, failed = _fit_column(time_column, columns[at], time_type, True)
        refuse(failed)
        columns[at] = fitted
    table = pa.Table.from_arrays(columns, names=names)
    if not piece.sizes_checked and table.nbytes > max_row_bytes:
        sizes = row_sizes(table)
        for i in np.flatnonzero(sizes > max_row_bytes).tolist():
            refuse({i: f"row is about {int(sizes[i])} bytes; the limit is {max_row_bytes} bytes — "
                       "split it or raise max_row_bytes"})
    rows = piece.rows
    if bad.any():
        for i, reason in reasons.items():
            rejected[int(rows[i])] = reason
        keep = ~bad
        table = table.filter(pa.array(keep))
        rows = rows[keep]
    return Piece(table, rows, True)


def _fit_column(name: str, column, current: pa.DataType | None, fixed: bool):
    """(column fitted to the schema, the column's type after this batch, rejected rows)."""
    incoming = column.type
    if current is None:
        if pa.types.is_null(incoming):
            return None, None, {}
        return column, incoming, {}
    if incoming.equals(current):
        return column, current, {}
    if pa.types.is_null(incoming):
        return pa.nulls(len(column), current), current, {}
    try:
        wider = widen(name, current, incoming)
    except SchemaConflict:
        wider = None
    if wider is not None and (wider.equals(current) or not fixed):
        return column.cast(wider, safe=False), wider, {}
    if pa.types.is_timestamp(current):
        times, failed = to_utc_micros(column, name)
        return times.cast(current, safe=False), current, failed
    if fixed:
        fitted, failed = convert_with_rejects(
            column,
            lambda a: pc.cast(a, current),
            lambda v: f"field {name!r}: value {describe(v)} cannot be stored as {current}; expected {current}",
            out_type=current,
        )
        return fitted, current, failed
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    failed = {
        i: f"field {name!r}: value {describe(column[i].as_py())} is {_kind(incoming)}; expected {current} "
           f"(the column's type)"
        for i in np.flatnonzero(valid).tolist()
    }
    return pa.nulls(len(column), current), current, failed


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "a string"
    if pa.types.is_integer(t):
        return "an integer"
    if pa.types.is_floating(t):
        return "a float"
    if pa.types.is_boolean(t):
        return "a boolean"
    return f"of type {t}"


def row_sizes(table: pa.Table) -> np.ndarray:
    """An estimate of each row's size in bytes (variable-width values counted exactly)."""
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        t = column.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            sizes += pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            width = max(t.value_type.bit_width // 8, 1) if _fixed_width(t.value_type) else 16
            sizes += lengths * width
        else:
            sizes += max(t.bit_width // 8, 1) if _fixed_width(t) else 16
    return sizes


def _fixed_width(t: pa.DataType) -> bool:
    try:
        return t.bit_width > 0
    except ValueError:
        return False
