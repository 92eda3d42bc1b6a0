"""Hash aggregation in two phases: partial states per fragment, then a final merge.

``partial`` reduces rows to one row of state columns per group with Acero's
hash aggregate; ``final`` merges gathered states.  A query that runs in one
place does both in a row.  States per function:

=================  ==========================================  =====================
function           partial state                               final
=================  ==========================================  =====================
count_star/count   n                                           sum n (0 if none)
sum                s (and f, a double sum, for integers)       sum s (checked by sum f)
avg                s (and f for integers), n                   sum s / sum n
min/max            m                                           min/max m
stddev/var         n, mean, m2                                 Chan's parallel merge
count_distinct     list of distinct values                     distinct of the union
quantile_*         list of values                              exact quantile
bool_and/or        b                                           all/any b
f(DISTINCT x)      list of distinct values                     f over the distinct union
=================  ==========================================  =====================

Merging is done per group id: each group's key values are dictionary
encoded, combined, and re-encoded (nulls are a group of their own), so
states of one group can be broadcast and combined with array kernels —
never a Python loop over rows or groups.

Integer sums wrap around in Arrow.  The wrapped int64 sum is still exact
whenever the true sum fits in int64 (two's complement arithmetic is exact
modulo 2**64), so a double sum beside it only has to say whether it fits:
a SUM that does not raises :class:`QueryFailed`, and an AVG uses the double.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from planner.logical import AggCall
from storage.errors import QueryFailed

_ONLY_VALID = pc.CountOptions("only_valid")
_SKIP = pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)
_KEY = "__group"
_INT64_LIMIT = 2.0**63 * (1 - 1e-9)  # a double sum this large may not fit in int64
_AS_DOUBLE = "__double"  # suffix of an integer input's double copy


def _state_specs(call: AggCall, schema: pa.Schema) -> list[tuple[str, str, object, str]]:
    """(state suffix, hash function, options, input column) for one aggregate's partial states."""
    arg = call.arg
    func = call.func
    if call.distinct:  # SUM(DISTINCT x) and kin: the distinct values, aggregated when merged
        return [("d", "distinct", _ONLY_VALID, arg)]
    if func == "count_star":
        return [("n", "count_all", None, None)]
    if func == "count":
        return [("n", "count", _ONLY_VALID, arg)]
    if func in ("sum", "avg"):
        specs = [("s", "sum", _SKIP, arg)]
        if f"{arg}{_AS_DOUBLE}" in schema.names:
            specs.append(("f", "sum", _SKIP, f"{arg}{_AS_DOUBLE}"))
        return specs + ([("n", "count", _ONLY_VALID, arg)] if func == "avg" else [])
    if func in ("min", "max"):
        return [("m", func, _SKIP, arg)]
    if func in ("stddev_samp", "stddev_pop", "var_samp", "var_pop"):
        return [("n", "count", _ONLY_VALID, arg), ("mean", "mean", _SKIP, arg),
                ("m2", "variance", pc.VarianceOptions(ddof=0, min_count=1), arg)]
    if func == "count_distinct":
        return [("d", "distinct", _ONLY_VALID, arg)]
    if func in ("quantile_cont", "quantile_disc"):
        return [("l", "list", None, arg)]
    if func == "bool_and":
        return [("b", "all", _SKIP, arg)]
    if func == "bool_or":
        return [("b", "any", _SKIP, arg)]
    raise ValueError(f"unknown aggregate {func}")


def _prepare(table: pa.Table, calls: tuple[AggCall, ...]) -> pa.Table:
    """Cast inputs whose states need it: booleans summed as integers, decimals averaged as doubles.

    An integer summed or averaged also gets a double copy, whose sum tells
    whether the integer sum fits in int64.
    """
    for call in calls:
        if call.arg is None:
            continue
        column = table.column(call.arg)
        if call.func in ("sum", "avg") and pa.types.is_integer(column.type) \
                and f"{call.arg}{_AS_DOUBLE}" not in table.column_names:
            table = table.append_column(f"{call.arg}{_AS_DOUBLE}", column.cast(pa.float64(), safe=False))
        if call.func in ("sum", "avg") and pa.types.is_boolean(column.type):
            table = table.set_column(table.schema.get_field_index(call.arg), call.arg, column.cast(pa.int64()))
        elif call.func in ("stddev_samp", "stddev_pop", "var_samp", "var_pop", "avg") and pa.types.is_decimal(column.type):
            table = table.set_column(table.schema.get_field_index(call.arg), call.arg, column.cast(pa.float64()))
    return table


def partial(table: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...]) -> pa.Table:
    """One row of state columns (``<aggregate>__<state>``) per group of ``keys``."""
    table = signed_zeros_as_one(_prepare(table, calls), keys)
    group_keys = list(keys)
    if not keys:
        table = table.append_column(_KEY, pa.array(np.zeros(table.num_rows, dtype=np.int8)))
        group_keys = [_KEY]
    specs, names, seen = [], [], {}
    for call in calls:
        for suffix, func, options, column in _state_specs(call, table.schema):
            signature = (func, column, repr(options))
            if signature not in seen:
                seen[signature] = len(specs)
                specs.append(([] if column is None else column, func, options) if options is not None
                             else ([] if column is None else column, func))
            names.append((f"{call.name}__{suffix}", func if column is None else f"{column}_{func}"))
    grouped = table.group_by(group_keys, use_threads=False).aggregate(specs)
    columns = {name: grouped.column(output) for name, output in names}  # Acero names them <column>_<function>
    out = {k: grouped.column(k) for k in keys}
    out.update(columns)
    if not out:
        return pa.table({_KEY: grouped.column(_KEY)})
    return pa.table(out)


def signed_zeros_as_one(table: pa.Table, names) -> pa.Table:
    """``table`` with -0.0 turned into 0.0 in its float columns ``names``, so the two are one group, as in SQL."""
    for name in names:
        index = table.schema.get_field_index(name)
        if index >= 0 and pa.types.is_floating(table.schema.field(index).type):
            table = table.set_column(index, name, pc.add(table.column(index), 0.0))
    return table


def group_ids(table: pa.Table, keys: tuple[str, ...]) -> tuple[pa.Array, int]:
    """A dense group number per row (first appearance order) and the number of groups."""
    if not keys or table.num_rows == 0:
        return pa.array(np.zeros(table.num_rows, dtype=np.int64)), (1 if not keys else 0)
    ids = None
    for key in keys:
        column = table.column(key).combine_chunks()
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        indices = encoded.indices.cast(pa.int64())
        if ids is None:
            ids = indices
        else:
            ids = pc.add(pc.multiply(ids, len(encoded.dictionary)), indices)
            ids = pc.dictionary_encode(ids).indices.cast(pa.int64())
    if len(keys) == 1:
        ids = pc.dictionary_encode(ids).indices.cast(pa.int64())
    count = pc.max(ids).as_py() + 1
    return ids, count


def _first_rows(ids: pa.Array, count: int) -> pa.Array:
    """The index of the first row of each group, in group order."""
    positions = pa.table({"g": ids, "i": _arange(len(ids))})
    firsts = positions.group_by("g", use_threads=False).aggregate([("i", "min")]).sort_by("g")
    index = firsts.column("i_min")
    return index.combine_chunks() if isinstance(index, pa.ChunkedArray) else index


def final(
    gathered: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...], output: pa.Schema | None = None,
) -> pa.Table:
    """Merge partial states (one row per fragment and group) into one row per group."""
    ids, count = group_ids(gathered, keys)
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    if keys:
        firsts = _first_rows(ids, count)
        for key in keys:
            out[key] = gathered.column(key).take(firsts)
    padded_ids = pa.concat_arrays([ids, _arange(count)])
    for call in calls:
        out[call.name] = _merge(gathered, call, padded_ids, ids, count)
    table = pa.table(out) if out else pa.table({_KEY: pa.array(np.zeros(count, dtype=np.int8))}).select([])
    if output is not None and table.num_columns == len(output):
        table = pa.Table.from_arrays([
            c if c.type.equals(f.type) else c.cast(f.type) for c, f in zip(table.columns, output)
        ], names=[f.name for f in output])
    return table


def _arange(count: int) -> pa.Array:
    return pa.array(np.arange(count, dtype=np.int64))


def _state(gathered: pa.Table, name: str, count: int) -> pa.Array:
    """A state column with one NULL appended per group (so every group shows up)."""
    column = gathered.column(name).combine_chunks()
    return pa.concat_arrays([column, pa.nulls(count, column.type)])


def _grouped(ids: pa.Array, columns: dict[str, pa.Array], specs: list) -> pa.Table:
    table = pa.table({"g": ids, **columns})
    return table.group_by("g", use_threads=False).aggregate(specs).sort_by("g")


def _merge(gathered: pa.Table, call: AggCall, ids: pa.Array, raw_ids: pa.Array, count: int) -> pa.Array:
    name, func = call.name, call.func
    if call.distinct:
        return _merge_distinct(gathered, call, raw_ids, count)
    if func in ("count_star", "count"):
        merged = _grouped(ids, {"n": _state(gathered, f"{name}__n", count)}, [("n", "sum", _SKIP)])
        return merged.column("n_sum").fill_null(0)
    if func == "sum":
        sums, too_large = _sums(gathered, name, ids, count)
        if too_large is not None and pc.any(too_large).as_py():
            raise QueryFailed("SUM of integers exceeds the BIGINT range (about ±9.2e18) in at least one group; "
                              "CAST its argument to DOUBLE or DECIMAL to sum it")
        return sums
    if func == "avg":
        merged = _grouped(ids, {"n": _state(gathered, f"{name}__n", count)}, [("n", "sum", _SKIP)])
        total = merged.column("n_sum")
        sums, too_large = _sums(gathered, name, ids, count)
        sums = sums.cast(pa.float64(), safe=False)
        if too_large is not None:
            sums = pc.if_else(too_large, _sums(gathered, name, ids, count, "f")[0], sums)
        return pc.if_else(pc.equal(total, 0), pa.scalar(None, pa.float64()), pc.divide(sums, total.cast(pa.float64())))
    if func in ("min", "max"):
        merged = _grouped(ids, {"m": _state(gathered, f"{name}__m", count)}, [("m", func, _SKIP)])
        return merged.column(f"m_{func}")
    if func in ("bool_and", "bool_or"):
        kernel = "all" if func == "bool_and" else "any"
        merged = _grouped(ids, {"b": _state(gathered, f"{name}__b", count)}, [("b", kernel, _SKIP)])
        return merged.column(f"b_{kernel}")
    if func in ("stddev_samp", "stddev_pop", "var_samp", "var_pop"):
        return _merge_moments(gathered, name, func, raw_ids, count)
    if func == "count_distinct":
        values, value_ids = _flatten(gathered.column(f"{name}__d"), raw_ids)
        table = pa.table({"g": pa.concat_arrays([value_ids, _arange(count)]),
                          "v": pa.concat_arrays([values, pa.nulls(count, values.type)])})
        merged = table.group_by("g", use_threads=False).aggregate([("v", "count_distinct", _ONLY_VALID)]).sort_by("g")
        return merged.column("v_count_distinct")
    if func in ("quantile_cont", "quantile_disc"):
        values, value_ids = _flatten(gathered.column(f"{name}__l"), raw_ids)
        return quantiles(values, value_ids, count, call.params[0], func == "quantile_cont")
    raise ValueError(f"unknown aggregate {func}")


def _merge_distinct(gathered: pa.Table, call: AggCall, ids: pa.Array, count: int) -> pa.Array:
    """An aggregate over each group's distinct values: the union of the fragments' distinct lists, once each."""
    values, value_ids = _flatten(gathered.column(f"{call.name}__d"), ids)
    pairs = pa.table({"g": value_ids, "v": values}).group_by(["g", "v"], use_threads=False).aggregate([])
    plain = dataclasses.replace(call, arg="v", distinct=False)
    merged = final(partial(pairs, ("g",), (plain,)), ("g",), (plain,))
    where = np.full(count, -1, dtype=np.int64)
    where[merged.column("g").to_numpy()] = np.arange(merged.num_rows)
    index = pa.array(where, mask=where < 0)
    return merged.column(call.name).take(index)


def _sums(gathered: pa.Table, name: str, ids: pa.Array, count: int, state: str = "s") -> tuple[pa.Array, pa.Array | None]:
    """The per-group sum of a sum state; and, for integers, whether it is too large for int64 (wrapped)."""
    sums = _grouped(ids, {"s": _state(gathered, f"{name}__{state}", count)}, [("s", "sum", _SKIP)]).column("s_sum")
    if state != "s" or f"{name}__f" not in gathered.column_names:
        return sums, None
    doubles = _sums(gathered, name, ids, count, "f")[0]
    return sums, pc.fill_null(pc.greater_equal(pc.abs(doubles), _INT64_LIMIT), False)


def _flatten(lists: pa.ChunkedArray, ids: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The values of per-row lists, and the group id each value belongs to."""
    lists = lists.combine_chunks()
    if isinstance(lists, pa.ChunkedArray):
        lists = pa.concat_arrays(lists.chunks) if lists.num_chunks else pa.array([], lists.type)
    values = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    return values, ids.take(parents)


def _merge_moments(gathered: pa.Table, name: str, func: str, ids: pa.Array, count: int) -> pa.Array:
    n = gathered.column(f"{name}__n").combine_chunks().cast(pa.float64())
    mean = pc.fill_null(gathered.column(f"{name}__mean").combine_chunks().cast(pa.float64()), 0.0)
    m2 = pc.fill_null(gathered.column(f"{name}__m2").combine_chunks().cast(pa.float64()), 0.0)
    m2 = pc.multiply(m2, n)  # the partial state holds the population variance; M2 = var * n
    padded = pa.concat_arrays([ids, _arange(count)])
    zeros = pa.array(np.zeros(count, dtype=np.float64))
    weighted = pc.multiply(n, mean)
    sums = _grouped(padded, {"n": pa.concat_arrays([n, zeros]), "w": pa.concat_arrays([weighted, zeros]),
                             "m2": pa.concat_arrays([m2, zeros])},
                    [("n", "sum"), ("w", "sum"), ("m2", "sum")])
    total = sums.column("n_sum").combine_chunks()
    group_mean = pc.divide(sums.column("w_sum").combine_chunks(), pc.if_else(pc.equal(total, 0.0), 1.0, total))
    spread = pc.multiply(n, pc.power(pc.subtract(mean, group_mean.take(ids)), 2))
    extra = _grouped(padded, {"x": pa.concat_arrays([spread, zeros])}, [("x", "sum")]).column("x_sum").combine_chunks()
    m2_total = pc.add(sums.column("m2_sum").combine_chunks(), extra)
    ddof = 1.0 if func in ("stddev_samp", "var_samp") else 0.0
    denominator = pc.subtract(total, ddof)
    variance = pc.if_else(pc.greater(denominator, 0.0), pc.divide(m2_total, pc.if_else(pc.greater(denominator, 0.0), denominator, 1.0)),
                          pa.scalar(None, pa.float64()))
    variance = pc.max_element_wise(variance, 0.0, skip_nulls=False)  # a NULL (too few values) stays NULL
    return pc.sqrt(variance) if func.startswith("stddev") else variance


_MICROS_PER_DAY = 86_400_000_000


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
    temporal = pa.types.is_timestamp(value_type) or pa.types.is_date(value_type)
    if pa.types.is_timestamp(value_type):
        numbers = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
    elif pa.types.is_date(value_type):
        days = values.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
        numbers = days * _MICROS_PER_DAY if continuous else days  # interpolated dates are timestamps, as in DuckDB
    else:
        numbers = values.to_numpy(zero_copy_only=False)
    groups = ids.to_numpy(zero_copy_only=False)
    if count > 1:
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
