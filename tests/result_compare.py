"""Comparing a Petrel result with DuckDB's, the way the differential suites need.

Rows are compared as values: integers, floats and decimals as numbers
(floats to a relative 1e-9), timestamps as instants, NULL as NULL.  Row
order counts only when the query's ORDER BY fixes it; otherwise both sides
are sorted first.  Columns must agree in name where DuckDB's is a plain
name (an alias or a column; case aside, since Petrel keeps the spelling the
query used), and in type family: integer, float, string, timestamp, date,
bool, interval (a NULL-typed column goes with any).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from typing import Any

import pyarrow as pa

REL = 1e-9


def _value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return tuple(sorted((k, _value(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_value(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value
    return value


def rows(table: pa.Table) -> list[tuple]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(_value(c[r]) for c in columns) for r in range(table.num_rows)]


def _sort_key(row: tuple) -> tuple:
    key = []
    for value in row:
        if value is None:
            key.append((0, ""))
        elif isinstance(value, int) and not isinstance(value, bool):
            key.append((1, value))
        elif isinstance(value, float):
            key.append((1, float(f"{value:.12g}") if not math.isnan(value) else math.inf))
        else:
            key.append((2, repr(value)))
    return tuple(key)


def same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def family(type_: pa.DataType) -> str:
    """The loose kind of a column type that both engines must agree on."""
    if pa.types.is_integer(type_) or pa.types.is_decimal(type_) and type_.scale == 0:
        return "integer"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "float"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    if pa.types.is_date(type_):
        return "date"
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_duration(type_) or pa.types.is_interval(type_):
        return "interval"
    if pa.types.is_null(type_):
        return "null"
    return str(type_).split("<")[0].split("[")[0]


def assert_same_columns(got: pa.Table, expected: pa.Table, query: str = "") -> None:
    """Same number of columns, the same plain names, and types of the same family."""
    assert got.num_columns == expected.num_columns, (
        f"{query}\ncolumns: petrel {got.column_names} vs duckdb {expected.column_names}"
    )
    for ours, theirs in zip(got.schema, expected.schema):
        if _PLAIN_NAME.fullmatch(theirs.name):
            assert ours.name.lower() == theirs.name.lower(), (
                f"{query}\ncolumn names: petrel {got.column_names} vs duckdb {expected.column_names}"
            )
        kinds = {family(ours.type), family(theirs.type)}
        assert len(kinds) == 1 or "null" in kinds, (
            f"{query}\ncolumn {ours.name}: petrel {ours.type} vs duckdb {theirs.type}"
        )


def assert_same(got: pa.Table, expected: pa.Table, ordered: bool, query: str = "") -> None:
    assert_same_columns(got, expected, query)
    ours, theirs = rows(got), rows(expected)
    assert len(ours) == len(theirs), f"{query}\nrow count: petrel {len(ours)} vs duckdb {len(theirs)}\n{ours[:5]}\n{theirs[:5]}"
    if not ordered:
        ours, theirs = sorted(ours, key=_sort_key), sorted(theirs, key=_sort_key)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        assert len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b)), (
            f"{query}\nrow {index}: petrel {a} vs duckdb {b}"
        )
