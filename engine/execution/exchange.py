"""Hash partitioning for shuffles: rows with equal keys land in the same bucket on every side.

Keys are hashed by value, not by Arrow type, so an int32 key on one side
of a join and an int64 (or float) key on the other meet in one bucket:
numbers hash as float64, dates and timestamps as integers, everything
else as text.  NULL keys hash like any other value (joins drop them,
windows keep them as one partition).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _hashable(column: pa.ChunkedArray) -> np.ndarray:
    type_ = column.type
    if pa.types.is_dictionary(type_):
        column = column.cast(type_.value_type)
        type_ = type_.value_type
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_) or pa.types.is_boolean(type_):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return np.where(np.isnan(values), np.nan, values)
    if pa.types.is_date(type_) or pa.types.is_timestamp(type_):
        if pa.types.is_date(type_):
            column = column.cast(pa.timestamp("us"))
        values = pc.cast(column.cast(pa.timestamp("us", tz=None) if type_ != pa.timestamp("us") else column.type), pa.int64())
        return values.to_numpy(zero_copy_only=False).astype(np.float64)
    return column.cast(pa.string()).to_numpy(zero_copy_only=False)


def bucket_of(table: pa.Table, keys: tuple[str, ...], buckets: int) -> np.ndarray:
    """The bucket (0..buckets-1) of every row."""
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    for key in keys:
        hashed = pd.util.hash_array(_hashable(table.column(key)), categorize=False)
        combined = combined * np.uint64(1_000_003) + hashed
    return (combined % np.uint64(buckets)).astype(np.int64)


def partition(table: pa.Table, keys: tuple[str, ...], buckets: int) -> list[pa.Table]:
    """``table`` split into ``buckets`` tables by the hash of ``keys``."""
    if buckets <= 1:
        return [table]
    if table.num_rows == 0:
        return [table] * buckets
    target = bucket_of(table, keys, buckets)
    order = np.argsort(target, kind="stable")
    counts = np.bincount(target, minlength=buckets)
    ordered = table.take(pa.array(order))
    parts, start = [], 0
    for count in counts:
        parts.append(ordered.slice(start, int(count)))
        start += int(count)
    return parts
