"""Values reduced per group, shared by the aggregates and the window functions over whole partitions.

Each function takes values with the group of each (``ids``, 0 to
``count - 1``) and gives one result per group, NULL for a group without
values: exact quantiles (of DECIMALs in their own type, as DuckDB), and
``mode``, ``arg_max``/``arg_min``, ``string_agg`` and ``list``.  Loops run
once per group, never per row (but for decimal quantiles, which read their
values as Python integers).
"""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from planner.logical import AggCall


def signed_zeros_as_one(table: pa.Table, names) -> pa.Table:
    """``table`` with -0.0 turned into 0.0 in its float columns ``names``, so the two are one group, as in SQL."""
    for name in names:
        index = table.schema.get_field_index(name)
        if index >= 0 and pa.types.is_floating(table.schema.field(index).type):
            table = table.set_column(index, name, pc.add(table.column(index), 0.0))
    return table


def arange(count: int) -> pa.Array:
    """0 to ``count - 1`` as an int64 array."""
    return pa.array(np.arange(count, dtype=np.int64))


def combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one array."""
    if isinstance(column, pa.ChunkedArray):
        return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)
    return column


def gathered(call: AggCall, values: pa.Array, by: list[pa.Array], ids: pa.Array, count: int) -> pa.Array:
    """``mode``, ``arg_max``/``arg_min``, ``string_agg`` or ``list`` per group, from every value of the group.

    ``values`` (and ``by``, the ordering values per key) come in row order with
    their group in ``ids``; ties go to the value seen first, and a group
    without any value gets NULL.
    """
    func = call.func
    rows = {"g": ids, "v": values, "r": arange(len(values))}
    rows.update({f"o{i}": key for i, key in enumerate(by)})
    table = pa.table(rows)
    if func == "list" or func == "string_agg":
        if call.distinct:  # each value once (NULL too), where it first came
            table = signed_zeros_as_one(table, ("v",))
            firsts = table.group_by(["g", "v"], use_threads=False).aggregate([("r", "min")]).column("r_min")
            table = table.take(pa.array(np.sort(combined(firsts).to_numpy())))  # r is the row number
        if func == "string_agg":
            table = table.filter(pc.is_valid(table.column("v")))
        keys = [("g", "ascending")]
        for i, (descending, nulls_first) in enumerate(call.params[1]):
            table = table.append_column(f"n{i}", pc.is_null(table.column(f"o{i}")))
            keys += [(f"n{i}", "descending" if nulls_first else "ascending"),
                     (f"o{i}", "descending" if descending else "ascending")]
        table = table.take(pc.sort_indices(table, sort_keys=keys + [("r", "ascending")]))
        groups = table.column("g").to_numpy()
        sizes = np.bincount(groups, minlength=count) if len(groups) else np.zeros(count, dtype=np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
        lists = pa.ListArray.from_arrays(offsets, combined(table.column("v")), mask=pa.array(sizes == 0))
        if func == "list":
            return lists
        return pc.binary_join(lists, call.params[0])
    if func == "mode":
        table = table.filter(pc.is_valid(table.column("v")))
        table = signed_zeros_as_one(table, ("v",))
        counted = table.group_by(["g", "v"], use_threads=False).aggregate([("r", "count"), ("r", "min")])
        order = pc.sort_indices(counted, sort_keys=[("g", "ascending"), ("r_count", "descending"), ("r_min", "ascending")])
        return _first_per_group(counted.take(order), count)
    table = table.filter(pc.and_(pc.is_valid(table.column("v")), pc.is_valid(table.column("o0"))))
    direction = "descending" if func == "arg_max" else "ascending"
    order = pc.sort_indices(table, sort_keys=[("g", "ascending"), ("o0", direction), ("r", "ascending")])
    return _first_per_group(table.take(order), count)


def _first_per_group(table: pa.Table, count: int) -> pa.Array:
    """The ``v`` of each group's first row in ``table`` (sorted by group ``g``); NULL for groups absent."""
    groups = table.column("g").to_numpy()
    first = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]])) if len(groups) else np.zeros(0, np.int64)
    where = np.full(count, -1, dtype=np.int64)
    where[groups[first]] = first
    return combined(table.column("v")).take(pa.array(where, mask=where < 0))


_MICROS_PER_DAY = 86_400_000_000


def _decimal_quantiles(values: pa.Array, ids: pa.Array, count: int, fraction: float, continuous: bool) -> pa.Array:
    """Quantiles of DECIMALs in their own type, as DuckDB: interpolated on the unscaled integers, truncated."""
    value_type = values.type
    scale = value_type.scale
    unscaled = np.array([int(v.scaleb(scale)) for v in values.to_pylist()], dtype=object)
    groups = ids.to_numpy(zero_copy_only=False)
    order = np.lexsort((unscaled, groups)) if len(groups) else np.zeros(0, dtype=np.int64)
    ordered = unscaled[order]
    sizes = np.bincount(groups, minlength=count) if len(groups) else np.zeros(count, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if count else np.zeros(0, dtype=np.int64)
    result: list = [None] * count
    for group in np.flatnonzero(sizes > 0):
        chunk = ordered[starts[group]: starts[group] + sizes[group]]
        last = len(chunk) - 1
        if continuous:
            position = last * fraction
            low, high = int(np.floor(position)), int(np.ceil(position))
            low_value, high_value = int(chunk[low]), int(chunk[high])
            if high == low:
                picked = low_value
            else:  # in doubles, then truncated toward zero, as DuckDB interpolates
                picked = int(float(low_value) + float(high_value - low_value) * (position - low))
        else:
            picked = int(chunk[min(max(int(np.ceil(len(chunk) * fraction)) - 1, 0), last)])
        result[group] = decimal.Decimal(picked).scaleb(-scale)
    return pa.array(result, value_type)


def quantiles(values: pa.Array, ids: pa.Array, count: int, fraction: float, continuous: bool) -> pa.Array:
    """The exact ``fraction`` quantile of ``values`` per group (NULL for empty groups).

    Continuous quantiles interpolate between neighbours like DuckDB's
    ``quantile_cont``; discrete ones pick the value at ``ceil(n * q) - 1``.
    Values are bucketed by group with one stable integer sort, then each
    group's order statistics come from ``numpy.partition`` (linear time): the
    loop runs once per group, never per row.
    """
    value_type = values.type
    valid = pc.is_valid(values)
    if valid.false_count:
        values, ids = values.filter(valid), ids.filter(valid)
    if pa.types.is_decimal(value_type):
        return _decimal_quantiles(values, ids, count, fraction, continuous)
    temporal = pa.types.is_timestamp(value_type) or pa.types.is_date(value_type)
    if pa.types.is_timestamp(value_type):
        numbers = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
    elif pa.types.is_date(value_type):
        days = values.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
        numbers = days * _MICROS_PER_DAY if continuous else days  # interpolated dates are timestamps, as in DuckDB
    else:
        numbers = values.to_numpy(zero_copy_only=False)
    groups = ids.to_numpy(zero_copy_only=False)
    if count > 1 and len(groups) > 1 and not (groups[1:] >= groups[:-1]).all():  # the values not yet by group
        order = np.argsort(groups.astype(np.int32 if count < 2**31 else np.int64), kind="stable")
        numbers = numbers[order]
    sizes = np.bincount(groups, minlength=count) if len(groups) else np.zeros(count, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if count else np.zeros(0, dtype=np.int64)
    result = np.zeros(count, dtype=np.float64 if continuous or not temporal else np.int64)
    if not continuous:
        result = np.zeros(count, dtype=numbers.dtype if len(numbers) else np.float64)
    present = sizes > 0
    for group in np.flatnonzero(present):
        chunk = numbers[starts[group]: starts[group] + sizes[group]]
        last = len(chunk) - 1
        if continuous:
            position = last * fraction
            low, high = int(np.floor(position)), int(np.ceil(position))
            picked = np.partition(chunk, [low, high]) if high != low else np.partition(chunk, low)
            low_value, high_value = float(picked[low]), float(picked[high])
            result[group] = low_value + (high_value - low_value) * (position - low)
        else:
            index = min(max(int(np.ceil(len(chunk) * fraction)) - 1, 0), last)
            result[group] = np.partition(chunk, index)[index]
    mask = ~present
    if continuous:
        out = pa.array(result, pa.float64(), mask=mask)
        if temporal:
            out = pc.round(out).cast(pa.int64())
            out = out.cast(value_type if pa.types.is_timestamp(value_type) else pa.timestamp("us"))
        return out
    if pa.types.is_timestamp(value_type):
        return pa.array(result.astype(np.int64), pa.int64(), mask=mask).cast(value_type)
    if pa.types.is_date(value_type):
        return pa.array(result.astype(np.int32), pa.int32(), mask=mask).cast(pa.date32()).cast(value_type)
    return pa.array(result, mask=mask).cast(value_type)
