"""Comparing a Petrel result with DuckDB's, the way the differential suites need.

Rows are compared as values: integers, floats and decimals as numbers
(floats to a relative 1e-9), timestamps as instants, NULL as NULL.  Row
order counts only when the query's ORDER BY fixes it; otherwise both sides
are sorted first.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
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


def assert_same(got: pa.Table, expected: pa.Table, ordered: bool, query: str = "") -> None:
    assert got.num_columns == expected.num_columns, (
        f"{query}\ncolumns: petrel {got.column_names} vs duckdb {expected.column_names}"
    )
    ours, theirs = rows(got), rows(expected)
    assert len(ours) == len(theirs), f"{query}\nrow count: petrel {len(ours)} vs duckdb {len(theirs)}\n{ours[:5]}\n{theirs[:5]}"
    if not ordered:
        ours, theirs = sorted(ours, key=_sort_key), sorted(theirs, key=_sort_key)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        assert len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b)), (
            f"{query}\nrow {index}: petrel {a} vs duckdb {b}"
        )
