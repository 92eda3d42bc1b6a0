"""Mergeable sketches for the approximate aggregates: HyperLogLog and KLL (Apache DataSketches).

A partial state is one serialized sketch per group, a few kilobytes
whatever the number of rows, so fragments send sketches instead of values
and the final merge unions them.

- ``approx_count_distinct`` keeps an HLL sketch (``lg_k`` = 12, HLL_8):
  relative standard error about 1.6% (1.04 / sqrt(2^12)); counts up to a few
  hundred are exact (the sketch stores the values' hashes until it fills).
- ``approx_quantile`` keeps a KLL sketch of doubles (``k`` = 200): the rank of
  the value returned is within about 1.65% of the requested rank (99%
  confidence, normalized rank error); fewer than ``k`` values are kept exactly.

Values are hashed by value (integers, floats, text; times as integer
microseconds), so the same value counts once across fragments.
"""

from __future__ import annotations

import datasketches
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HLL_LG_K = 12
KLL_K = 200
_HLL_TYPE = datasketches.tgt_hll_type.HLL_8


def _python_values(values: pa.Array) -> list:
    """``values`` as Python ints, floats or strings (what a sketch hashes), NULLs dropped."""
    values = values.filter(pc.is_valid(values)) if values.null_count else values
    type_ = values.type
    if pa.types.is_dictionary(type_):
        values, type_ = values.cast(type_.value_type), type_.value_type
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_) or pa.types.is_time(type_) or pa.types.is_duration(type_):
        values = values.cast(pa.int64()) if not pa.types.is_date32(type_) else values.cast(pa.int32())
    elif pa.types.is_boolean(type_):
        values = values.cast(pa.int8())
    elif pa.types.is_decimal(type_):
        values = values.cast(pa.float64())
    elif not (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_string(type_)
              or pa.types.is_large_string(type_)):
        values = values.cast(pa.string())
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return values.to_numpy(zero_copy_only=False).tolist()
    return values.to_pylist()


def _by_group(lists: pa.Array):
    """(offsets, flattened values) of a list array (one list per group)."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    offsets = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    ends = np.cumsum(offsets)
    return np.concatenate([[0], ends]).astype(np.int64), pc.list_flatten(lists)


def hll_states(distinct: pa.Array) -> pa.Array:
    """One serialized HLL sketch per group, from each group's distinct values (a list array)."""
    bounds, values = _by_group(distinct)
    if values.null_count:
        bounds = _valid_bounds(distinct, pc.is_valid(values).to_numpy(zero_copy_only=False))
    flat = _python_values(values) if len(values) else []
    out = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        sketch = datasketches.hll_sketch(HLL_LG_K, _HLL_TYPE)
        for value in flat[start:end]:
            sketch.update(value)
        out.append(sketch.serialize_compact())
    return pa.array(out, pa.binary())


def _valid_bounds(lists: pa.Array, valid: np.ndarray) -> np.ndarray:
    """Group boundaries in the flattened values once NULL values are dropped."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[valid], minlength=len(lists))
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def kll_states(lists: pa.Array) -> pa.Array:
    """One serialized KLL sketch per group, from each group's values (a list array of numbers or times)."""
    bounds, values = _by_group(lists)
    numbers, valid = _as_doubles(values)
    if valid is not None:
        bounds = _valid_bounds(lists, valid)
    out = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        sketch = datasketches.kll_doubles_sketch(KLL_K)
        if end > start:
            sketch.update(numbers[start:end])
        out.append(sketch.serialize())
    return pa.array(out, pa.binary())


def _as_doubles(values: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Non-NULL ``values`` as float64 (times as microseconds or days), and the validity mask if any were NULL."""
    valid = None
    if values.null_count:
        mask = pc.is_valid(values)
        valid = mask.to_numpy(zero_copy_only=False)
        values = values.filter(mask)
    type_ = values.type
    if pa.types.is_timestamp(type_):
        values = values.cast(pa.int64())
    elif pa.types.is_date(type_):
        values = values.cast(pa.date32()).cast(pa.int32())
    elif pa.types.is_decimal(type_) or pa.types.is_boolean(type_):
        values = values.cast(pa.float64())
    return np.array(values.to_numpy(zero_copy_only=False), dtype=np.float64), valid  # writable, as the sketch wants


def _hll_unions_by_group(sketches: pa.Array) -> list:
    """Per group, the HLL union of the list of its fragments' serialized sketches."""
    bounds, flat = _by_group(sketches)
    flat = flat.to_pylist()
    unions = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        union = datasketches.hll_union(HLL_LG_K)
        for blob in flat[start:end]:
            if blob is not None:
                union.update(datasketches.hll_sketch.deserialize(blob))
        unions.append(union)
    return unions


def _kll_merged_by_group(sketches: pa.Array) -> list:
    """Per group, one KLL sketch merging the list of its fragments' serialized sketches."""
    bounds, flat = _by_group(sketches)
    flat = flat.to_pylist()
    merged = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        sketch = datasketches.kll_doubles_sketch(KLL_K)
        for blob in flat[start:end]:
            if blob is not None:
                sketch.merge(datasketches.kll_doubles_sketch.deserialize(blob))
        merged.append(sketch)
    return merged


def hll_estimates(sketches: pa.Array) -> pa.Array:
    """The distinct count of each group, from the list of its fragments' HLL sketches."""
    return pa.array([round(union.get_estimate()) for union in _hll_unions_by_group(sketches)], pa.int64())


def kll_quantiles(sketches: pa.Array, fraction: float, value_type: pa.DataType) -> pa.Array:
    """The ``fraction`` quantile of each group, from the list of its fragments' KLL sketches (NULL if empty)."""
    groups = _kll_merged_by_group(sketches)
    result = np.zeros(len(groups), dtype=np.float64)
    empty = np.ones(len(groups), dtype=bool)
    for group, merged in enumerate(groups):
        if not merged.is_empty():
            result[group] = merged.get_quantile(fraction)
            empty[group] = False
    out = pa.array(result, pa.float64(), mask=empty)
    if pa.types.is_timestamp(value_type):
        return pc.round(out).cast(pa.int64()).cast(value_type)
    if pa.types.is_date(value_type):
        days = pc.round(out).cast(pa.int64())
        return pc.multiply(days, 86_400_000_000).cast(pa.timestamp("us"))
    return out


def kll_unions(sketches: pa.Array) -> pa.Array:
    """One serialized KLL sketch per group, the union of the list of its fragments' sketches (a partial state)."""
    return pa.array([merged.serialize() for merged in _kll_merged_by_group(sketches)], pa.binary())


def hll_unions(sketches: pa.Array) -> pa.Array:
    """One serialized HLL sketch per group, the union of the list of its fragments' sketches (a partial state)."""
    return pa.array([union.get_result(_HLL_TYPE).serialize_compact() for union in _hll_unions_by_group(sketches)],
                    pa.binary())
