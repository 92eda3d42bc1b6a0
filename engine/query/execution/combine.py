"""Partial aggregate states merged into partial states, so that merged blocks can be cached and merged again.

A sliding window over many small segments merges the partial states of
every segment at every evaluation.  :func:`combine` merges the states of
many segments into one partial per group (what one partial over all their
rows would give, up to the sketches' own merging), so a caller can keep
pre-merged blocks of segments (:mod:`engine.monitors.queries` keeps them per
span of event time) and a window merges a few blocks instead of every
segment.  The final merge (:func:`engine.query.execution.aggregate.final`)
takes combined states like any others.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.query.execution import sketches
from engine.query.execution.aggregate import (
    HISTOGRAMS, _KEY, _MOMENTS, _ROW, _arange, _combined, _double_sums, _flatten, _group_of_rows, _merge_specs,
    _per_group,
)
from planner.logical import AggCall


_COMBINED_LISTS = ("approx_quantile", "approx_count_distinct") + HISTOGRAMS + _MOMENTS


def combine(states: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...]) -> pa.Table | None:
    """Partial states merged into partial states: one row per group, as one partial over all their rows gives.

    What a final merge does, stopping before the results: sums, counts,
    min/max and all/any are merged by one Acero pass, variance moments by
    Chan's merge, sketches by the sketch library's union.  A merged partial
    can be cached and merged again like any other (pre-merged blocks of
    segments).  None when a state cannot be merged into one row (the value
    lists of exact quantiles and distinct aggregates).
    """
    if any(call.distinct or call.func in ("count_distinct", "quantile_cont", "quantile_disc") for call in calls):
        return None
    table, group_keys = _double_sums(states, calls), list(keys)
    if not keys:
        table = table.append_column(_KEY, pa.array(np.zeros(table.num_rows, dtype=np.int8)))
        group_keys = [_KEY]
    specs, names, seen = [], [], set()
    for call in calls:
        for suffix, func, options in _merge_specs(call, table.schema):
            column = f"{call.name}__{suffix}"
            if column not in seen:
                seen.add(column)
                specs.append((column, func, options) if options is not None else (column, func))
                names.append((column, f"{column}_{func}"))
    listed = any(call.func in _COMBINED_LISTS for call in calls)
    if listed:
        table = table.append_column(_ROW, _arange(table.num_rows))
        specs.append((_ROW, "list"))
    merged = table.group_by(group_keys, use_threads=False).aggregate(specs)
    count = merged.num_rows
    ids = _group_of_rows(merged.column(f"{_ROW}_list"), table.num_rows) if listed else None
    out: dict[str, pa.Array | pa.ChunkedArray] = {k: merged.column(k) for k in keys}
    for column, acero_name in names:
        out[column] = merged.column(acero_name)
    for call in calls:
        prefix = f"{call.name}__"
        if call.func in _MOMENTS and f"{prefix}m2" not in out:
            out.update(_combined_moments(table, prefix, ids, count))
        elif call.func == "approx_quantile" and f"{prefix}k" not in out:
            out[f"{prefix}k"] = sketches.kll_unions(_per_group(table.column(f"{prefix}k"), ids, count))
        elif call.func in HISTOGRAMS and f"{prefix}dd" not in out:
            entries, entry_ids = _flatten(table.column(f"{prefix}dd"), ids)
            out[f"{prefix}dd"] = sketches.dd_unions(entries, entry_ids, count)
        elif call.func == "approx_count_distinct" and f"{prefix}h" not in out:
            out[f"{prefix}h"] = sketches.hll_unions(_per_group(table.column(f"{prefix}h"), ids, count))
    if not out:
        return pa.table({_KEY: pa.array(np.zeros(count, dtype=np.int8))})
    return pa.table(out)


def _combined_moments(states: pa.Table, prefix: str, ids: pa.Array, count: int) -> dict[str, pa.Array]:
    """(n, mean, population variance) states of each group merged by Chan's rule, as the partial names them."""
    groups = ids.to_numpy(zero_copy_only=False)

    def numbers(suffix: str) -> np.ndarray:
        values = _combined(states.column(f"{prefix}{suffix}")).cast(pa.float64())
        return np.nan_to_num(values.to_numpy(zero_copy_only=False).astype(np.float64))

    n, mean, variance = numbers("n"), numbers("mean"), numbers("m2")
    total = np.bincount(groups, weights=n, minlength=count)
    empty = total == 0.0
    safe = np.where(empty, 1.0, total)
    group_mean = np.bincount(groups, weights=n * mean, minlength=count) / safe
    m2 = np.bincount(groups, weights=variance * n + n * (mean - group_mean[groups]) ** 2, minlength=count)
    return {f"{prefix}n": pa.array(total.astype(np.int64), pa.int64()),
            f"{prefix}mean": pa.array(group_mean, pa.float64(), mask=empty),
            f"{prefix}m2": pa.array(np.maximum(m2 / safe, 0.0), pa.float64(), mask=empty)}
