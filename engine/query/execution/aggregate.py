"""Hash aggregation in two phases: partial states per fragment, then a final merge.

``partial`` reduces rows to one row of state columns per group with Acero's
hash aggregate; ``final`` merges gathered states.  A query that runs in one
place does both in a row.  States per function:

=====================  ======================================  ==========================
function               partial state                           final
=====================  ======================================  ==========================
count_star/count       n                                       sum n (0 if none)
sum                    s (and f, a double sum, for integers)   sum s (checked by sum f)
avg                    s (and f for integers), n               sum s / sum n
min/max                m                                       min/max m
stddev/var             n, mean, m2                             Chan's parallel merge
count_distinct         list of distinct values                 distinct of the union
quantile_*             list of values                          exact quantile
approx_count_distinct  HyperLogLog sketch                      union's estimate
approx_quantile        KLL sketch                              merged sketch's quantile
approx_quantile_dd     log-bucket histogram (list of entries)  merged histogram's quantile
                       (``by``: a boolean column, the rows to count)
dd_histogram           as approx_quantile_dd                   the group's entries, not added up
bool_and/or            b                                       all/any b
mode, list, string_agg list of values (and of the ORDER BY key)  picked or joined per group
arg_max/arg_min        list of values and of their orderings   the value at the extreme
f(DISTINCT x)          list of distinct values                 f over the distinct union
=====================  ======================================  ==========================

The final merge is one Acero hash aggregation over the gathered states
(NULL keys are a group of their own).  Sums, counts, min/max and all/any
merge in that pass; for the states Acero cannot combine it collects a list
per group, which array kernels (and the sketch libraries) then reduce.

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

from engine.query.execution import sketches
from engine.query.execution.group_values import arange as _arange
from engine.query.execution.group_values import combined as _combined
from engine.query.execution.group_values import gathered, quantiles, signed_zeros_as_one
from planner.logical import AggCall
from storage.errors import QueryFailed

_ONLY_VALID = pc.CountOptions("only_valid")
_SKIP = pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)
_KEY = "__group"
_INT64_LIMIT = 2.0**63 * (1 - 1e-9)  # a double sum this large may not fit in int64
_AS_DOUBLE = "__double"  # suffix of an integer input's double copy
_MOMENTS = "__moments"  # suffix of a decimal input's double copy, for stddev and variance


_SKETCHES = {"h": sketches.hll_states, "k": sketches.kll_states}  # states turned into sketches after the pass


def _state_specs(call: AggCall, schema: pa.Schema) -> list[tuple[str, str, object, str]]:
    """(state suffix, hash function, options, input column) for one aggregate's partial states."""
    arg = call.arg
    func = call.func
    if call.distinct and func == "list":  # LIST(DISTINCT x) keeps a NULL: every value, made distinct when merged
        return [("l", "list", None, arg)] + [(f"o{i}", "list", None, key) for i, key in enumerate(call.by)]
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
        if f"{arg}{_MOMENTS}" in schema.names:
            arg = f"{arg}{_MOMENTS}"
        return [("n", "count", _ONLY_VALID, arg), ("mean", "mean", _SKIP, arg),
                ("m2", "variance", pc.VarianceOptions(ddof=0, min_count=1), arg)]
    if func == "count_distinct":
        return [("d", "distinct", _ONLY_VALID, arg)]
    if func in ("quantile_cont", "quantile_disc"):
        return [("l", "list", None, arg)]
    if func == "approx_count_distinct":
        return [("h", "distinct", _ONLY_VALID, arg)]
    if func == "approx_quantile":
        return [("k", "list", None, arg)]
    if func in HISTOGRAMS:
        return []  # made from each row's group (see partial), not by the hash aggregation
    if func == "bool_and":
        return [("b", "all", _SKIP, arg)]
    if func == "bool_or":
        return [("b", "any", _SKIP, arg)]
    if func in _GATHERED:  # the group's values in row order, and the ordering values beside them
        return [("l", "list", None, arg)] + [(f"o{i}", "list", None, key) for i, key in enumerate(call.by)]
    raise QueryFailed(f"unknown aggregate {func}; this is a planner bug")


def _prepare(table: pa.Table, calls: tuple[AggCall, ...]) -> pa.Table:
    """Cast inputs whose states need it: booleans summed as integers, decimals' variance taken over doubles.

    An integer summed or averaged also gets a double copy, whose sum tells
    whether the integer sum fits in int64, unless its values are too small
    for any sum of them to leave int64 (the final merge checks the sum of
    the fragments' sums itself).
    """
    for call in calls:
        if call.arg is None:
            continue
        column = table.column(call.arg)
        if call.func in ("sum", "avg") and pa.types.is_integer(column.type) \
                and f"{call.arg}{_AS_DOUBLE}" not in table.column_names and _may_overflow(column):
            table = table.append_column(f"{call.arg}{_AS_DOUBLE}", column.cast(pa.float64(), safe=False))
        if call.func in ("sum", "avg") and pa.types.is_boolean(column.type):
            table = table.set_column(table.schema.get_field_index(call.arg), call.arg, column.cast(pa.int64()))
        elif call.func in ("stddev_samp", "stddev_pop", "var_samp", "var_pop") and pa.types.is_decimal(column.type) \
                and f"{call.arg}{_MOMENTS}" not in table.column_names:  # a copy: min(x) and sum(x) stay exact
            table = table.append_column(f"{call.arg}{_MOMENTS}", column.cast(pa.float64()))
    return table


def _may_overflow(column: pa.ChunkedArray) -> bool:
    """Whether some sum of ``column``'s integers could leave int64 (its largest magnitude times its count)."""
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is None:
        return False
    return max(abs(low), abs(high)) * (len(column) - column.null_count) >= 2**63


def partial(table: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...]) -> pa.Table:
    """One row of state columns (``<aggregate>__<state>``) per group of ``keys``."""
    distinct_args = [call.arg for call in calls
                     if call.arg is not None and (call.distinct or call.func in ("count_distinct", "approx_count_distinct"))]
    table = signed_zeros_as_one(_prepare(table, calls), (*keys, *distinct_args))  # -0.0 and 0.0: one value
    specs, names, seen = [], [], {}
    for call in calls:
        for suffix, func, options, column in _state_specs(call, table.schema):
            signature = (func, column, repr(options))
            if signature not in seen:
                seen[signature] = len(specs)
                specs.append(([] if column is None else column, func, options) if options is not None
                             else ([] if column is None else column, func))
            names.append((f"{call.name}__{suffix}", func if column is None else f"{column}_{func}"))
    histograms = [call for call in calls if call.func in HISTOGRAMS]
    if histograms and keys:  # the row numbers of each group, to tell every row's group
        table = table.append_column(_ROW, _arange(table.num_rows))
        specs.append((_ROW, "list"))
    grouped = table.group_by(list(keys), use_threads=False).aggregate(specs) if keys else _one_group(table, specs)
    columns, built = {}, {}
    for name, output in names:  # Acero names them <column>_<function>
        suffix = name.rsplit("__", 1)[1]
        if suffix in _SKETCHES:  # one sketch per argument, shared by every call over it
            if (suffix, output) not in built:
                built[(suffix, output)] = _SKETCHES[suffix](_combined(grouped.column(output)))
            columns[name] = built[(suffix, output)]
        else:
            columns[name] = grouped.column(output)
    if histograms:
        count = grouped.num_rows if keys else 1
        rows = _group_of_rows(grouped.column(f"{_ROW}_list"), table.num_rows).to_numpy(zero_copy_only=False) \
            if keys else np.zeros(table.num_rows, dtype=np.int64)
        codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per value column: made once for all its masks
        for call in histograms:
            key = ("dd", call.arg, *call.by)  # (apart from the sketches' (suffix, output) keys)
            if key not in built:
                if call.arg not in codes:
                    codes[call.arg] = sketches.dd_codes(table.column(call.arg))
                mask = pc.fill_null(table.column(call.by[0]), False).to_numpy(zero_copy_only=False) \
                    if call.by else None
                built[key] = sketches.dd_states(None, rows, count, mask, codes[call.arg])
            columns[f"{call.name}__dd"] = built[key]
    out = {k: grouped.column(k) for k in keys}
    out.update(columns)
    if not out:
        return pa.table({_KEY: pa.array(np.zeros(grouped.num_rows, dtype=np.int8))})
    return pa.table(out)


def _one_group(table: pa.Table, specs: list[tuple]) -> pa.Table:
    """The states of a global aggregate, one row named as Acero names them.

    Acero's scalar aggregation does what it can (many times faster than a
    hash aggregation over a constant key); the distinct values and the
    value lists, which only its hash kernels collect, are made directly.
    """
    scalar = [spec for spec in specs if spec[1] not in ("distinct", "list")]
    grouped = table.group_by([], use_threads=False).aggregate(scalar) if scalar else pa.table({})
    columns = {name: grouped.column(name) for name in grouped.column_names}
    for spec in specs:
        column, func = spec[0], spec[1]
        if func == "distinct":
            values = _unique(table.column(column))
            columns[f"{column}_distinct"] = _one_list(values.drop_null() if values.null_count else values)
        elif func == "list":
            columns[f"{column}_list"] = _one_list(_combined(table.column(column)))
    return pa.table(columns)


def _unique(column: pa.ChunkedArray) -> pa.Array:
    """The distinct values of ``column``; of a dictionary column, those its indices use, as plain values."""
    if not pa.types.is_dictionary(column.type):
        return pc.unique(column)
    used = [chunk.dictionary.take(pc.unique(chunk.indices)) for chunk in column.chunks]
    return pc.unique(pa.chunked_array(used, column.type.value_type)) if used \
        else pa.array([], column.type.value_type)


def _one_list(values: pa.Array) -> pa.Array:
    """A one-row list array holding ``values``."""
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)


def final(gathered: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...],
          schema: pa.Schema | None = None, whole: bool = False) -> pa.Table:
    """Merge partial states (one row per fragment and group) into one row per group.

    One Acero hash aggregation over the states does the merge: sums,
    counts, min/max and all/any directly.  For the states Acero cannot
    combine (variance moments, distinct values, quantile values, sketches)
    the same pass lists each group's state rows, and array kernels (and the
    sketch library) reduce them per group.  ``schema`` is that of the rows
    the partial states were computed from.  ``whole`` says the states are
    one partial's (each group on one row): they are finished without a merge.
    """
    if whole and (keys or gathered.num_rows == 1):
        return _finish_whole(_double_sums(gathered, calls), keys, calls, schema)
    table, group_keys = gathered, list(keys)
    if not keys:  # one group, even over no states: a row of NULL states stands for "nothing"
        if _KEY in table.column_names:  # states of no aggregate at all (SELECT 1 HAVING ...): only a row count
            table = table.drop_columns([_KEY])
        table = table.append_column(_KEY, pa.array(np.zeros(table.num_rows, dtype=np.int8)))
        table = pa.concat_tables([table, _null_row(table.schema)])
        group_keys = [_KEY]
    table = _double_sums(table, calls)
    specs, seen = [], set()
    for call in calls:
        for suffix, func, options in _merge_specs(call, table.schema):
            column = f"{call.name}__{suffix}"
            if (column, func) not in seen:
                seen.add((column, func))
                specs.append((column, func, options) if options is not None else (column, func))
    listed = any(call.func in _LISTED or call.distinct for call in calls)
    if listed:
        table = table.append_column(_ROW, _arange(table.num_rows))
        specs.append((_ROW, "list"))
    merged = table.group_by(group_keys, use_threads=False).aggregate(specs)
    ids = _group_of_rows(merged.column(f"{_ROW}_list"), table.num_rows) if listed else None
    out: dict[str, pa.Array | pa.ChunkedArray] = {k: merged.column(k) for k in keys}
    for call in calls:
        out[call.name] = _finish(merged, call, table, ids, schema)
    return pa.table(out) if out else pa.table({_KEY: merged.column(_KEY)}).select([])


def _finish_whole(states: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...],
                  schema: pa.Schema | None) -> pa.Table:
    """Finish the states of one partial: each row is a group, so each state is already its group's merge."""
    merged = {k: states.column(k) for k in keys}
    for call in calls:
        for suffix, func, _ in _merge_specs(call, states.schema):
            merged[f"{call.name}__{suffix}_{func}"] = states.column(f"{call.name}__{suffix}")
    merged_table = pa.table(merged) if merged else pa.table({_KEY: pa.array(np.zeros(states.num_rows, np.int8))})
    ids = _arange(states.num_rows)
    out: dict[str, pa.Array | pa.ChunkedArray] = {k: states.column(k) for k in keys}
    for call in calls:
        if call.func == "count_distinct" and not call.distinct:  # the partial's distinct values, NULLs left out
            out[call.name] = pc.list_value_length(_combined(states.column(f"{call.name}__d"))).cast(pa.int64())
        elif call.func == "dd_histogram":  # each group's entries, as they are
            out[call.name] = states.column(f"{call.name}__dd")
        else:
            out[call.name] = _finish(merged_table, call, states, ids, schema)
    return pa.table(out) if out else pa.table({_KEY: merged_table.column(_KEY)}).select([])


def _double_sums(states: pa.Table, calls: tuple[AggCall, ...]) -> pa.Table:
    """``states`` with a double sum beside every integer sum, so that the merge can tell a total outside int64.

    A fragment whose values could not overflow sent no double sum: its
    integer sum is exact, and stands in.
    """
    for call in calls:
        if call.func not in ("sum", "avg") or call.distinct or f"{call.name}__s" not in states.column_names:
            continue
        sums = states.column(f"{call.name}__s")
        if not pa.types.is_integer(sums.type):
            continue
        doubles = sums.cast(pa.float64(), safe=False)
        name = f"{call.name}__f"
        if name in states.column_names:
            index = states.schema.get_field_index(name)
            states = states.set_column(index, name, pc.coalesce(states.column(name), doubles))
        else:
            states = states.append_column(name, doubles)
    return states


_ROW = "__row"
# log-bucket histograms: the same states, finished as a quantile or as the histogram itself (what a monitor rollup
# adds up over the groups each monitor keeps)
HISTOGRAMS = ("approx_quantile_dd", "dd_histogram")
_GATHERED = ("mode", "arg_max", "arg_min", "string_agg", "list")
_LISTED = ("stddev_samp", "stddev_pop", "var_samp", "var_pop", "count_distinct", "quantile_cont", "quantile_disc",
           "approx_count_distinct", "approx_quantile") + HISTOGRAMS + _GATHERED


def _group_of_rows(rows: pa.ChunkedArray | pa.Array, count: int) -> pa.Array:
    """The group of every state row, from the row numbers the merge listed per group."""
    rows = _combined(rows)
    ids = np.zeros(count, dtype=np.int64)
    ids[pc.list_flatten(rows).to_numpy(zero_copy_only=False)] = pc.list_parent_indices(rows).to_numpy(zero_copy_only=False)
    return pa.array(ids)


def _null_row(schema: pa.Schema) -> pa.Table:
    return pa.table({f.name: pa.nulls(1, f.type) if f.name != _KEY else pa.array([0], pa.int8()) for f in schema},
                    schema=schema)


_MOMENTS = ("stddev_samp", "stddev_pop", "var_samp", "var_pop")


def _merge_specs(call: AggCall, schema: pa.Schema) -> list[tuple[str, str, object]]:
    """(state suffix, hash function, options) that merge one aggregate's partial states."""
    func = call.func
    if call.distinct:
        return []  # the distinct values, reduced from the state rows the pass lists per group
    if func in ("count_star", "count"):
        return [("n", "sum", _SKIP)]
    if func in ("sum", "avg"):
        specs = [("s", "sum", _SKIP)]
        if f"{call.name}__f" in schema.names:
            specs.append(("f", "sum", _SKIP))
        return specs + ([("n", "sum", _SKIP)] if func == "avg" else [])
    if func in ("min", "max"):
        return [("m", func, _SKIP)]
    if func == "bool_and":
        return [("b", "all", _SKIP)]
    if func == "bool_or":
        return [("b", "any", _SKIP)]
    if func in _LISTED:
        return []  # reduced from the state rows the pass lists per group
    raise QueryFailed(f"unknown aggregate {func}; this is a planner bug")


def _finish(merged: pa.Table, call: AggCall, states: pa.Table, ids: pa.Array | None,
            schema: pa.Schema | None) -> pa.Array | pa.ChunkedArray:
    """One aggregate's result per group, from the merged columns (Acero names them <column>_<function>)."""
    name, func, count = call.name, call.func, merged.num_rows

    def column(suffix: str, kernel: str):
        return merged.column(f"{name}__{suffix}_{kernel}")

    if call.distinct and func != "list":
        return _merge_distinct(states, call, ids, count)
    if func in ("count_star", "count"):
        return column("n", "sum").fill_null(0)
    if func in ("sum", "avg"):
        sums = column("s", "sum")
        too_large = None
        if f"{name}__f_sum" in merged.column_names:
            too_large = pc.fill_null(pc.greater_equal(pc.abs(column("f", "sum")), _INT64_LIMIT), False)
        if func == "sum":
            if too_large is not None and pc.any(too_large).as_py():
                raise QueryFailed("SUM of integers exceeds the BIGINT range (about ±9.2e18) in at least one group; "
                                  "CAST its argument to DOUBLE or DECIMAL to sum it")
            return sums
        total = column("n", "sum")
        sums = sums.cast(pa.float64(), safe=False)
        if too_large is not None:
            sums = pc.if_else(too_large, column("f", "sum"), sums)
        empty = pc.fill_null(pc.equal(total, 0), True)
        return pc.if_else(empty, pa.scalar(None, pa.float64()), pc.divide(sums, total.cast(pa.float64())))
    if func in ("min", "max"):
        return column("m", func)
    if func in ("bool_and", "bool_or"):
        return column("b", "all" if func == "bool_and" else "any")
    if func in _MOMENTS:
        return _merge_moments(states, name, func, ids, count)
    if func == "count_distinct":
        values, value_ids = _flatten(states.column(f"{name}__d"), ids)
        table = pa.table({"g": pa.concat_arrays([value_ids, _arange(count)]),
                          "v": pa.concat_arrays([values, pa.nulls(count, values.type)])})
        counted = table.group_by("g", use_threads=False).aggregate([("v", "count_distinct", _ONLY_VALID)]).sort_by("g")
        return counted.column("v_count_distinct")
    if func in ("quantile_cont", "quantile_disc"):
        values, value_ids = _flatten(states.column(f"{name}__l"), ids)
        return quantiles(values, value_ids, count, call.params[0], func == "quantile_cont")
    if func in _GATHERED:
        values, value_ids = _flatten(states.column(f"{name}__l"), ids)
        by = [_flatten(states.column(f"{name}__o{i}"), ids)[0] for i in range(len(call.by))]
        return gathered(call, values, by, value_ids, count)
    if func == "approx_count_distinct":
        return sketches.hll_estimates(_per_group(states.column(f"{name}__h"), ids, count))
    if func == "dd_histogram":
        return _entries_per_group(_combined(states.column(f"{name}__dd")), _combined(merged.column(f"{_ROW}_list")))
    if func == "approx_quantile_dd":
        entries, entry_ids = _flatten(states.column(f"{name}__dd"), ids)
        return sketches.dd_quantiles(entries, entry_ids, count, call.params[0])
    if func == "approx_quantile":
        known = schema is not None and call.arg in schema.names
        lists = _per_group(states.column(f"{name}__k"), ids, count)
        return sketches.kll_quantiles(lists, call.params[0], schema.field(call.arg).type if known else pa.float64())
    raise QueryFailed(f"unknown aggregate {func}; this is a planner bug")


def _entries_per_group(lists: pa.Array, rows: pa.Array) -> pa.Array:
    """Each group's histogram entries in one list: the entry lists of its state ``rows``, one after the other (a
    bucket may come more than once: its counts are to be added up)."""
    taken = lists.take(pc.list_flatten(rows))
    offsets = taken.offsets.to_numpy(zero_copy_only=False)[rows.offsets.to_numpy(zero_copy_only=False)]
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), taken.values)


def _merge_distinct(states: pa.Table, call: AggCall, ids: pa.Array, count: int) -> pa.Array:
    """An aggregate over each group's distinct values: the union of the fragments' distinct lists, once each."""
    values, value_ids = _flatten(states.column(f"{call.name}__d"), ids)
    pairs = pa.table({"g": value_ids, "v": values}).group_by(["g", "v"], use_threads=False).aggregate([])
    plain = dataclasses.replace(call, arg="v", distinct=False, by=("v",) if call.by else ())
    merged = final(partial(pairs, ("g",), (plain,)), ("g",), (plain,))
    where = np.full(count, -1, dtype=np.int64)
    where[merged.column("g").to_numpy()] = np.arange(merged.num_rows)
    return merged.column(call.name).take(pa.array(where, mask=where < 0))


def _flatten(lists: pa.ChunkedArray, ids: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The values of per-row lists, and the group each value belongs to."""
    lists = _combined(lists)
    values = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    if _identity(ids):  # one state row per group (a partial finished whole): the parent is the group
        return values, parents
    return values, ids.take(parents)


def _identity(ids: pa.Array) -> bool:
    """Whether ``ids`` is 0, 1, 2, ...: each state row is its own group."""
    return len(ids) == 0 or (ids[0].as_py() == 0 and ids[len(ids) - 1].as_py() == len(ids) - 1
                             and pc.all(pc.equal(ids, _arange(len(ids)))).as_py())


def _per_group(column: pa.ChunkedArray, ids: pa.Array, count: int) -> pa.Array:
    """The state rows of ``column`` as one list per group."""
    groups = ids.to_numpy(zero_copy_only=False)
    order = np.argsort(groups, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=count))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), _combined(column).take(pa.array(order)))


def _merge_moments(states: pa.Table, name: str, func: str, ids: pa.Array, count: int) -> pa.Array:
    """Chan's parallel merge of (n, mean, M2) states: M2 = sum M2_i + sum n_i (mean_i - mean)^2."""
    groups = ids.to_numpy(zero_copy_only=False)

    def numbers(suffix: str) -> np.ndarray:
        values = _combined(states.column(f"{name}__{suffix}")).cast(pa.float64())
        return np.nan_to_num(values.to_numpy(zero_copy_only=False).astype(np.float64))

    n, mean, variance = numbers("n"), numbers("mean"), numbers("m2")  # the partial holds the population variance
    total = np.bincount(groups, weights=n, minlength=count)
    group_mean = np.bincount(groups, weights=n * mean, minlength=count) / np.where(total == 0.0, 1.0, total)
    m2 = np.bincount(groups, weights=variance * n + n * (mean - group_mean[groups]) ** 2, minlength=count)
    denominator = total - (1.0 if func in ("stddev_samp", "var_samp") else 0.0)
    defined = denominator > 0.0
    result = np.maximum(m2 / np.where(defined, denominator, 1.0), 0.0)
    result = np.sqrt(result) if func.startswith("stddev") else result
    return pa.array(result, pa.float64(), mask=~defined)
