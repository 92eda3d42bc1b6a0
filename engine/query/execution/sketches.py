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
- ``approx_quantile_dd`` (what monitors compute for ``approx_quantile`` over
  numbers) keeps a log-bucket histogram, as DDSketch does: each value falls in
  a bucket (gamma^(k-1), gamma^k] of its magnitude and the bucket answers
  with the value within DD_ACCURACY (1%) of every value in it, so the
  quantile returned is within 1% of the true quantile's value.  Buckets
  merge by adding counts, for all groups at once in numpy (no sketch object
  per group), and merging is exact: the answer does not depend on how the
  rows were split.  A state is a list of int64 entries per group, each a
  bucket code and its count.

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
_RAW_MARK = b"\xff"  # first byte of a KLL state holding its values as they are (a sketch's is its preamble size)
_HLL_TYPE = datasketches.tgt_hll_type.HLL_8
DD_ACCURACY = 0.01
_DD_GAMMA = (1 + DD_ACCURACY) / (1 - DD_ACCURACY)
_DD_LOG_GAMMA = float(np.log(_DD_GAMMA))
_DD_BIAS = 38_000  # |code| = bucket index + bias: > 0 for every double's magnitude (the smallest's index is -37,300)
_DD_TOP = 40_000  # the index infinities get (the largest finite double's is 35,400)
_DD_OFFSET = 1 << 17  # codes lie within +/- (_DD_BIAS + _DD_TOP); shifted by this they are positive, below 2**18
_DD_SPAN = 1 << 18
_DD_COUNT_BITS = 44  # an entry is (code + _DD_OFFSET) << 44 | count
_DD_COUNT_MASK = (1 << _DD_COUNT_BITS) - 1


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
    """One KLL state per group, from each group's values (a list array of numbers or times).

    A group of at most KLL_K values keeps them as they are (:func:`_raw_states`),
    which is all a sketch of them would keep: made for every group at once, with
    no sketch object per group.  Larger groups get a serialized sketch.
    """
    bounds, values = _by_group(lists)
    numbers, valid = _as_doubles(values)
    if valid is not None:
        bounds = _valid_bounds(lists, valid)
    counts = np.diff(bounds)
    if not len(counts) or counts.max() <= KLL_K:
        return _raw_states(numbers, counts)
    out = []
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if end - start <= KLL_K:
            out.append(_RAW_MARK + numbers[start:end].astype("<f8").tobytes())
            continue
        sketch = datasketches.kll_doubles_sketch(KLL_K)
        sketch.update(numbers[start:end])
        out.append(sketch.serialize())
    return pa.array(out, pa.binary())


def _raw_states(numbers: np.ndarray, counts: np.ndarray) -> pa.Array:
    """Per group, the raw KLL state of its ``counts[g]`` values (``numbers`` holds them group after group):
    a marker byte (never the first byte of a serialized sketch), then the values as little-endian doubles."""
    sizes = 1 + 8 * counts.astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    marks = np.zeros(len(data), dtype=bool)
    marks[offsets[:-1]] = True
    data[marks] = _RAW_MARK[0]
    data[~marks] = np.ascontiguousarray(numbers, dtype="<f8").view(np.uint8)  # the values fill the rest, in order
    kind, offsets = (pa.binary(), offsets.astype(np.int32)) if offsets[-1] < 2**31 else (pa.large_binary(), offsets)
    states = pa.Array.from_buffers(kind, len(counts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return states.cast(pa.binary()) if kind != pa.binary() else states


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


class _KllParts:
    """The KLL states listed per group, split into raw values (gathered per group, in one array) and sketches."""

    def __init__(self, lists: pa.Array) -> None:
        bounds, flat = _by_group(lists)
        flat = flat.cast(pa.binary()) if flat.type != pa.binary() else flat
        groups = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
        buffers = flat.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int32)[flat.offset:flat.offset + len(flat) + 1].astype(np.int64)
        data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
        lengths = np.diff(offsets)
        present = (lengths > 0) & pc.is_valid(flat).to_numpy(zero_copy_only=False)
        first = np.zeros(len(flat), dtype=np.uint8)
        first[present] = data[offsets[:-1][present]]
        raw = present & (first == _RAW_MARK[0])
        sizes = lengths[raw] - 1
        starts = offsets[:-1][raw] + 1
        gather = np.repeat(starts - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes) + np.arange(sizes.sum())
        self.values = data[gather].view("<f8") if len(gather) else np.zeros(0)
        self.count = len(bounds) - 1
        raw_counts = np.bincount(groups[raw], weights=sizes // 8, minlength=self.count).astype(np.int64)
        self.raw_bounds = np.concatenate([[0], np.cumsum(raw_counts)]).tolist()
        sketched = np.flatnonzero(present & ~raw)
        self.sketched_groups = groups[sketched]
        self.sketched = flat.take(pa.array(sketched, pa.int64())).to_pylist() if len(sketched) else []

    def merged(self) -> list:
        """Per group, one KLL sketch of all its parts."""
        cursor = [0]  # the next of the sketched parts (they come group after group)
        return [self._sketch(group, cursor) for group in range(self.count)]

    def _sketch(self, group: int, cursor: list[int]) -> datasketches.kll_doubles_sketch:
        sketch = datasketches.kll_doubles_sketch(KLL_K)
        start, end = self.raw_bounds[group], self.raw_bounds[group + 1]
        if end > start:
            sketch.update(self.values[start:end])
        while cursor[0] < len(self.sketched) and self.sketched_groups[cursor[0]] == group:
            sketch.merge(datasketches.kll_doubles_sketch.deserialize(self.sketched[cursor[0]]))
            cursor[0] += 1
        return sketch

    def unions(self) -> pa.Array:
        """Per group, one KLL state of all its parts: raw if they were all raw and hold at most KLL_K values."""
        counts = np.diff(self.raw_bounds)
        sketched = np.zeros(self.count, dtype=bool)
        sketched[self.sketched_groups] = True
        sketched |= counts > KLL_K
        if not sketched.any():
            return _raw_states(self.values, counts)
        cursor, out = [0], []
        for group in range(self.count):
            if sketched[group]:
                out.append(self._sketch(group, cursor).serialize())
            else:
                start, end = self.raw_bounds[group], self.raw_bounds[group + 1]
                out.append(_RAW_MARK + self.values[start:end].tobytes())
        return pa.array(out, pa.binary())


def hll_estimates(sketches: pa.Array) -> pa.Array:
    """The distinct count of each group, from the list of its fragments' HLL sketches."""
    return pa.array([round(union.get_estimate()) for union in _hll_unions_by_group(sketches)], pa.int64())


def kll_quantiles(sketches: pa.Array, fraction: float, value_type: pa.DataType) -> pa.Array:
    """The ``fraction`` quantile of each group, from the list of its fragments' KLL sketches (NULL if empty)."""
    groups = _KllParts(sketches).merged()
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
    return _KllParts(sketches).unions()


def hll_unions(sketches: pa.Array) -> pa.Array:
    """One serialized HLL sketch per group, the union of the list of its fragments' sketches (a partial state)."""
    return pa.array([union.get_result(_HLL_TYPE).serialize_compact() for union in _hll_unions_by_group(sketches)],
                    pa.binary())


def _dd_codes(numbers: np.ndarray) -> np.ndarray:
    """Each value's bucket code: ordered as the values are (negative below zero's 0 below positive)."""
    if len(numbers) and numbers.min() > 0:  # the usual case (latencies, sizes): fewer passes
        index = np.log(numbers)
        index /= _DD_LOG_GAMMA
        np.ceil(index, out=index)
        np.minimum(index, _DD_TOP, out=index)
        return index.astype(np.int64) + _DD_BIAS
    magnitude = np.abs(numbers)
    with np.errstate(divide="ignore"):
        index = np.ceil(np.log(magnitude, where=magnitude > 0, out=np.zeros_like(magnitude)) / _DD_LOG_GAMMA)
    index = np.minimum(index, _DD_TOP).astype(np.int64) + _DD_BIAS
    return np.sign(numbers).astype(np.int64) * index


def _dd_values(codes: np.ndarray) -> np.ndarray:
    """The value each bucket code answers with: within DD_ACCURACY of every value in the bucket."""
    index = (np.abs(codes) - _DD_BIAS).astype(np.float64)
    with np.errstate(over="ignore"):  # the infinities' index
        value = np.exp(np.minimum(index, _DD_TOP) * _DD_LOG_GAMMA + np.log(2 / (_DD_GAMMA + 1)))  # 2 g^i / (g + 1)
    value[index >= _DD_TOP] = np.inf
    return np.sign(codes) * value


def _dd_lists(composite: np.ndarray, counts: np.ndarray, count: int) -> pa.Array:
    """Per group, the list of its (bucket code, count) entries, from sorted (group, code) keys."""
    groups = composite // _DD_SPAN
    entries = ((composite % _DD_SPAN) << _DD_COUNT_BITS) | counts
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=count), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(entries, pa.int64()))


def _dd_summed(groups: np.ndarray, codes: np.ndarray, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(group, shifted code) pairs made distinct, as sorted keys group * _DD_SPAN + code, with their counts added
    up (exactly, as integers; ``counts`` None counts each pair once)."""
    if not len(codes):
        return codes, np.zeros(0, dtype=np.int64)
    low = int(codes.min())
    span = int(codes.max()) - low + 1
    cells = (int(groups.max()) + 1) * span
    if cells <= 4 * len(codes) + 65_536:  # few buckets per group between the extremes: count them in place
        local = groups * span + (codes - low)
        summed = np.bincount(local, weights=counts, minlength=cells)
        present = np.flatnonzero(summed)
        keys = (present // span) * _DD_SPAN + (present % span + low)
        return keys, summed[present].astype(np.int64)
    composite = groups * _DD_SPAN + codes
    order = np.argsort(composite)  # equal keys' counts are added up: no need of a stable sort (a third slower)
    ordered = composite[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    weights = counts[order] if counts is not None else np.ones(len(ordered), dtype=np.int64)
    return ordered[starts], np.add.reduceat(weights, starts)


def dd_codes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's (shifted) bucket code, and which values have one (NULL and NaN do not): what
    :func:`dd_states` counts, made once for every histogram of the same values."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):  # NULLs come as NaN
        numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    else:
        numbers = np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = ~np.isnan(numbers)
    if valid.all():
        return _dd_codes(numbers) + _DD_OFFSET, valid
    codes = np.zeros(len(numbers), dtype=np.int64)
    codes[valid] = _dd_codes(numbers[valid]) + _DD_OFFSET
    return codes, valid


def dd_states(values: pa.Array | pa.ChunkedArray | None, groups: np.ndarray, count: int,
              mask: np.ndarray | None = None, codes: tuple[np.ndarray, np.ndarray] | None = None) -> pa.Array:
    """One histogram state per group (``groups[i]`` is the group of ``values[i]``; NULL and NaN left out).

    ``mask``: only the values it marks count (a FILTER clause); ``codes``:
    the values' :func:`dd_codes`, if made already.
    """
    shifted, kept = codes if codes is not None else dd_codes(values)
    if mask is not None:
        kept = kept & mask
    if not kept.all():
        shifted, groups = shifted[kept], groups[kept]
    return _dd_lists(*_dd_summed(groups.astype(np.int64), shifted, None), count)


def _dd_merged(entries: pa.Array, groups: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Histogram entries (one per state bucket, ``groups`` saying whose) merged per group: sorted keys, counts."""
    flat = entries.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    owners = groups.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return _dd_summed(owners, flat >> _DD_COUNT_BITS, flat & _DD_COUNT_MASK)


def dd_unions(entries: pa.Array, groups: pa.Array, count: int) -> pa.Array:
    """One histogram state per group, the union of the states whose entries are listed with their groups."""
    return _dd_lists(*_dd_merged(entries, groups), count)


def dd_entries(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (bucket code, count) pairs of histogram entries; the codes are ordered as their buckets' values are."""
    entries = entries.astype(np.int64, copy=False)
    return entries >> _DD_COUNT_BITS, entries & _DD_COUNT_MASK


def dd_bucket_values(codes: np.ndarray) -> np.ndarray:
    """The value each bucket code of :func:`dd_entries` answers with (what a quantile falling in it returns)."""
    return _dd_values(codes - _DD_OFFSET)


def dd_quantiles(entries: pa.Array, groups: pa.Array, count: int, fraction: float) -> pa.Array:
    """The ``fraction`` quantile of each group's merged histograms (NULL if it has no value).

    The bucket holding the value ``quantile_disc`` picks: of rank
    ceil(fraction * n) (counting from 1) in the group's n values.
    """
    composite, counts = _dd_merged(entries, groups)
    result = np.zeros(count, dtype=np.float64)
    empty = np.ones(count, dtype=bool)
    if len(composite):
        owner = composite // _DD_SPAN
        cumulative = np.cumsum(counts)
        starts = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        ends = np.concatenate([starts[1:], [len(owner)]])
        before = np.where(starts > 0, cumulative[starts - 1], 0)
        rank = np.maximum(1, np.ceil(fraction * (cumulative[ends - 1] - before)))
        found = np.minimum(np.searchsorted(cumulative, before + rank, side="left"), ends - 1)
        present = owner[starts]
        result[present] = _dd_values(composite[found] % _DD_SPAN - _DD_OFFSET)
        empty[present] = False
    return pa.array(result, pa.float64(), mask=empty)
