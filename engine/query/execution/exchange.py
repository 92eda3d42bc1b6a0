"""Hash partitioning for shuffles: rows with equal keys land in the same bucket on every side.

Keys are hashed by value, not by Arrow type, so an int32 key on one side
of a join and an int64 (or float) key on the other meet in one bucket:
numbers hash as float64, dates and timestamps as integers, everything
else as text.  NULL keys hash like any other value (joins drop them,
windows keep them as one partition).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


_PRIME = np.uint64(0x100000001B3)
_PRIME_INVERSE = np.uint64(pow(0x100000001B3, -1, 2**64))
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole word."""
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def _hash_numbers(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64) + 0.0  # -0.0 becomes 0.0
    values[np.isnan(values)] = np.nan  # one NaN bit pattern
    return _mix(values.view(np.uint64))


def _hash_text(column: pa.ChunkedArray) -> np.ndarray:
    """A polynomial hash of each value's UTF-8 bytes, independent of where it sits in memory."""
    array = pc.cast(column, pa.large_binary()).combine_chunks()
    n = len(array)
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset: array.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    data = data[offsets[0]: offsets[-1]]
    starts = offsets[:-1] - offsets[0]
    ends = offsets[1:] - offsets[0]
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(len(data), _PRIME, dtype=np.uint64))  # P^(j+1)
        inverse = np.cumprod(np.full(len(data) + 1, _PRIME_INVERSE, dtype=np.uint64))
        inverse = np.concatenate([np.ones(1, np.uint64), inverse[:-1]])  # P^-j
        running = np.concatenate([np.zeros(1, np.uint64), np.cumsum((data.astype(np.uint64) + np.uint64(1)) * powers)])
        sums = (running[ends] - running[starts]) * inverse[starts]
        return _mix(sums + (ends - starts).astype(np.uint64))


def _hash(column: pa.ChunkedArray) -> np.ndarray:
    type_ = column.type
    if pa.types.is_dictionary(type_):
        column = column.cast(type_.value_type)
        type_ = type_.value_type
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_) or pa.types.is_boolean(type_):
        hashed = _hash_numbers(column.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False))
    elif pa.types.is_date(type_) or pa.types.is_timestamp(type_):
        if pa.types.is_date(type_):
            column = column.cast(pa.timestamp("us"))
        micros = pc.cast(column.cast(pa.timestamp("us", tz=type_.tz if pa.types.is_timestamp(type_) else None)), pa.int64())
        hashed = _hash_numbers(micros.fill_null(0).to_numpy(zero_copy_only=False))
    else:
        hashed = _hash_text(column.cast(pa.string()))
    if column.null_count:
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        hashed = np.where(valid, hashed, _NULL_HASH)
    return hashed


def bucket_of(table: pa.Table, keys: tuple[str, ...], buckets: int) -> np.ndarray:
    """The bucket (0..buckets-1) of every row."""
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            combined = _mix(combined * np.uint64(1_000_003) + _hash(table.column(key)))
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
