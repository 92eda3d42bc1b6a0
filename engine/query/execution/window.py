"""Window functions on an Arrow table, vectorised.

Per call: sort by PARTITION BY and ORDER BY, mark where partitions and
peer groups (rows equal on the ORDER BY keys) start, and derive every
function from positions: ranks from those marks, frame sums from prefix
sums, MIN/MAX from running maxima over value ranks (forwards for frames
that start at the partition start, backwards for frames that end at its
end, a sparse table of power-of-two spans otherwise), LAG/LEAD by shifted positions.  Results are scattered back to
the input's row order.  No Python loop runs per row.
"""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.query.execution.group_values import gathered, quantiles
from planner.logical import AggCall, SortKey, WindowCall


def sort_order(table: pa.Table, keys: list[SortKey]) -> np.ndarray:
    """Row indices in the order of ``keys`` (each key with its own NULLS FIRST/LAST)."""
    if not keys or table.num_rows <= 1:
        return np.arange(table.num_rows, dtype=np.int64)
    work, sort_keys = {}, []
    for index, key in enumerate(keys):
        column = table.column(key.column)
        if column.null_count:
            work[f"n{index}"] = pc.is_null(column)
            sort_keys.append((f"n{index}", "descending" if key.nulls_first else "ascending"))
        work[f"k{index}"] = column
        sort_keys.append((f"k{index}", "descending" if key.descending else "ascending"))
    return pc.sort_indices(pa.table(work), sort_keys=sort_keys).to_numpy()


def _changes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where a row differs from the previous one (NULL equals NULL); row 0 is True."""
    n = len(column)
    out = np.ones(n, dtype=bool)
    if n <= 1:
        return out
    a, b = column.slice(1), column.slice(0, n - 1)
    differ = pc.fill_null(pc.not_equal(a, b), False).to_numpy(zero_copy_only=False)
    nulls = pc.is_null(column).to_numpy(zero_copy_only=False)
    out[1:] = differ | (nulls[1:] != nulls[:-1])
    return out


def _starts_of(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: index of its group's first row, one past its last row, and the group number."""
    n = len(flags)
    ids = np.cumsum(flags) - 1
    starts = np.flatnonzero(flags)
    ends = np.append(starts[1:], n)
    return starts[ids], ends[ids], ids


def window(table: pa.Table, calls: tuple[WindowCall, ...]) -> pa.Table:
    """``table`` with one column per call appended."""
    for call in calls:
        table = table.append_column(call.name, _compute(table, call))
    return table


def _compute(table: pa.Table, call: WindowCall) -> pa.Array:
    n = table.num_rows
    if n == 0:
        from planner.rules.compile_expressions import window_type

        arg_type = table.schema.field(call.args[0]).type if call.args else None
        return pa.array([], window_type(call.func, arg_type))
    keys = [SortKey(p) for p in call.partition] + list(call.order)
    order = sort_order(table, keys)
    ordered = table.take(pa.array(order))
    part = np.zeros(n, dtype=bool)
    part[0] = True
    for name in call.partition:
        part |= _changes(ordered.column(name))
    peer = part.copy()
    for key in call.order:
        peer |= _changes(ordered.column(key.column))
    index = np.arange(n, dtype=np.int64)
    gstart, gend, gid = _starts_of(part)
    pstart, pend, _ = _starts_of(peer)
    values = _function(call, ordered, index, gstart, gend, gid, pstart, pend, peer)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = index
    return values.take(pa.array(inverse))


def _frame(call: WindowCall, ordered: pa.Table, index, gstart, gend, pstart, pend,
           peer=None) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive first and last row of each row's frame (first > last: empty)."""
    kind, start, end = call.frame
    last_row = gend - 1
    if kind == "groups":
        return _group_offsets(call, peer, gstart, gend)
    if kind == "range" and (start not in (None, 0) or end not in (None, 0)):
        return _range_offsets(call, ordered, gstart, gend, pstart, pend)
    if kind == "range":
        lo = gstart if start is None else pstart
        hi = last_row if end is None else pend - 1
        return lo, hi
    lo = gstart if start is None else np.maximum(index + start, gstart)
    hi = last_row if end is None else np.minimum(index + end, last_row)
    return lo, hi


def _range_offsets(call: WindowCall, ordered: pa.Table, gstart, gend, pstart, pend) -> tuple[np.ndarray, np.ndarray]:
    """Frames of RANGE offsets: the rows whose ORDER BY key lies within the offsets of the row's own key.

    Within a partition the keys are sorted, so each bound is one binary
    search (one ``searchsorted`` per partition).  A row whose key is NULL
    frames its NULL peers, as in DuckDB; a descending key flips the sides.
    """
    kind, start, end = call.frame
    start, end = (b // dt.timedelta(microseconds=1) if isinstance(b, dt.timedelta) else b for b in (start, end))
    key = call.order[0]
    column = ordered.column(key.column)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):  # offsets are microseconds
        column = column.cast(pa.timestamp("us")).cast(pa.int64())
    elif pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    nulls = pc.is_null(column).to_numpy(zero_copy_only=False)
    values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.float64)
    if key.descending:
        values = -values
    lo = gstart.copy() if start is None else pstart.copy()  # a NULL key's frame: its peers, or to the edge
    hi = gend - 1 if end is None else pend - 1
    for first in np.unique(gstart):
        last = int(gend[first])
        rows = np.arange(first, last)[~nulls[first:last]]
        if not len(rows):
            continue
        keys = values[rows]
        here = values[rows]
        if start is None:
            lo[rows] = first
        else:
            lo[rows] = rows[0] + np.searchsorted(keys, here + start, side="left")
        if end is None:
            hi[rows] = last - 1
        else:
            hi[rows] = rows[0] + np.searchsorted(keys, here + end, side="right") - 1
    return lo, hi


def _group_offsets(call: WindowCall, peer: np.ndarray, gstart, gend) -> tuple[np.ndarray, np.ndarray]:
    """GROUPS frames: offsets count peer groups (rows equal on the ORDER BY keys), within the partition."""
    _, start, end = call.frame
    group = np.cumsum(peer) - 1  # each row's peer group, numbered across partitions
    starts = np.flatnonzero(peer)  # the first row of each peer group
    ends = np.append(starts[1:], len(peer))  # one past its last row
    first, last = group[gstart], group[gend - 1]  # the partition's first and last peer group
    low = first if start is None else np.clip(group + int(start), first, None)
    high = last if end is None else np.clip(group + int(end), None, last)
    lo = np.where(low > last, gend, starts[np.minimum(low, len(starts) - 1)])
    hi = np.where(high < first, gstart - 1, ends[np.maximum(high, 0)] - 1)
    return lo, hi


def _take(values: pa.ChunkedArray | pa.Array, positions: np.ndarray, valid: np.ndarray) -> pa.Array:
    indices = pa.array(np.where(valid, positions, 0), mask=~valid)
    return values.take(indices)


def _function(call: WindowCall, ordered: pa.Table, index, gstart, gend, gid, pstart, pend, peer) -> pa.Array:
    func = call.func
    if func == "row_number":
        return pa.array(index - gstart + 1)
    if func == "rank":
        return pa.array(pstart - gstart + 1)
    if func == "percent_rank":  # (rank - 1) / (rows in the partition - 1), 0 for a partition of one row
        size = (gend - gstart - 1).astype(np.float64)
        return pa.array(np.where(size > 0, (pstart - gstart) / np.maximum(size, 1.0), 0.0))
    if func == "cume_dist":  # rows up to and including the row's peers, over the partition's rows
        return pa.array((pend - gstart) / (gend - gstart).astype(np.float64))
    if func == "dense_rank":
        running = np.cumsum(peer)
        return pa.array(running - running[gstart] + 1)
    if func == "ntile":
        buckets = max(int(call.params[0]), 1)
        size = gend - gstart
        position = index - gstart
        q, r = size // buckets, size % buckets
        big = r * (q + 1)
        result = np.where(position < big, position // (q + 1), r + (position - big) // np.maximum(q, 1))
        return pa.array(result + 1)
    if func in ("lag", "lead"):
        offset = int(call.params[0])
        target = index - offset if func == "lag" else index + offset
        valid = (target >= gstart) & (target < gend)
        values = ordered.column(call.args[0])
        result = _take(values, target, valid)
        if len(call.args) > 1:
            default = ordered.column(call.args[1])
            if not default.type.equals(result.type):
                default = default.cast(result.type)
            result = pc.if_else(pa.array(valid), result, default)
        return result
    if func in ("quantile_cont", "quantile_disc"):  # over whole partitions: one quantile per partition
        values = ordered.column(call.args[0])
        values = pa.concat_arrays(values.chunks) if isinstance(values, pa.ChunkedArray) else values
        per_partition = quantiles(values, pa.array(gid), int(gid[-1]) + 1, call.params[0], func == "quantile_cont")
        return per_partition.take(pa.array(gid))
    if func in ("mode", "arg_max", "arg_min", "string_agg", "list"):  # over whole partitions, like the aggregates
        columns = [ordered.column(name) for name in call.args]
        columns = [pa.concat_arrays(c.chunks) if isinstance(c, pa.ChunkedArray) else c for c in columns]
        spec = AggCall(call.name, func, call.args[0], call.params, by=call.args[1:])
        per_partition = gathered(spec, columns[0], columns[1:], pa.array(gid), int(gid[-1]) + 1)
        return per_partition.take(pa.array(gid))
    lo, hi = _frame(call, ordered, index, gstart, gend, pstart, pend, peer)
    valid = lo <= hi
    if func == "first_value":
        return _take(ordered.column(call.args[0]), lo, valid)
    if func == "last_value":
        return _take(ordered.column(call.args[0]), hi, valid)
    if func == "nth_value":  # the frame's n-th row, NULL when the frame is shorter
        target = lo + int(call.params[0]) - 1
        return _take(ordered.column(call.args[0]), target, valid & (target <= hi))
    if func == "count_star":
        return pa.array(np.where(valid, hi - lo + 1, 0))
    values = ordered.column(call.args[0])
    if func in ("sum", "avg", "count"):
        return _sums(func, values, lo, hi, valid)
    if func in ("min", "max"):
        return _extreme(func, values, lo, hi, valid, gid, gstart, gend)
    raise ValueError(f"unknown window function {func}")


def _sums(func: str, values, lo, hi, valid) -> pa.Array:
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    counts = np.concatenate([[0], np.cumsum(present)])
    count = np.where(valid, counts[np.minimum(hi + 1, len(present))] - counts[np.minimum(lo, len(present))], 0)
    if func == "count":
        return pa.array(count)
    if pa.types.is_decimal(values.type) and func == "sum":
        return _decimal_sums(values, lo, hi, valid & (count > 0))
    integer = pa.types.is_integer(values.type) or pa.types.is_boolean(values.type)
    numbers = pc.fill_null(values.cast(pa.int64() if integer else pa.float64()), 0).to_numpy(zero_copy_only=False)
    sums = np.concatenate([[0], np.cumsum(numbers)])
    total = sums[np.minimum(hi + 1, len(numbers))] - sums[np.minimum(lo, len(numbers))]
    empty = ~valid | (count == 0)
    if func == "sum":
        return pa.array(np.where(empty, 0, total), mask=empty)
    return pa.array(np.where(empty, 0.0, total / np.maximum(count, 1)), mask=empty)


def _decimal_sums(values, lo, hi, present) -> pa.Array:
    """Exact frame sums of decimals, as DECIMAL(38, s) like DuckDB: prefix sums of the unscaled integers."""
    scale = values.type.scale
    unscaled = np.array([0 if v is None else int(v.scaleb(scale)) for v in values.to_pylist()], dtype=object)
    sums = np.concatenate([np.array([0], dtype=object), np.cumsum(unscaled)]) if len(unscaled) else np.zeros(1, object)
    n = len(unscaled)
    total = sums[np.minimum(hi + 1, n)] - sums[np.minimum(lo, n)]
    result = [decimal.Decimal(int(t)).scaleb(-scale) if ok else None for t, ok in zip(total, present)]
    return pa.array(result, pa.decimal128(38, scale))


def _extreme(func: str, values, lo, hi, valid, gid, gstart, gend) -> pa.Array:
    """MIN/MAX over frames, as the largest rank of the values (ordered so the wanted extreme ranks highest) in each frame."""
    n = len(values)
    rank = pc.rank(values, sort_keys=[("", "descending" if func == "min" else "ascending", "at_start")],
                   tiebreaker="dense").to_numpy(zero_copy_only=False).astype(np.int64)
    nulls = pc.is_null(values).to_numpy(zero_copy_only=False)
    rank = np.where(nulls, 0, rank - (1 if nulls.any() else 0))
    top = int(rank.max()) + 1 if n else 1
    where_rank = np.zeros(top, dtype=np.int64)
    where_rank[rank] = np.arange(n)
    lo, hi = np.clip(lo, 0, n - 1), np.clip(hi, 0, n - 1)
    if np.all(lo == gstart):  # frames from the partition start: a running maximum, restarted per partition
        keyed = gid * (top + 1) + rank
        best = (np.maximum.accumulate(keyed) - gid * (top + 1))[hi]
    elif np.all(hi[valid] == gend[valid] - 1):  # frames to the partition end: the same, from the end backwards
        later = (gid[-1] - gid) * (top + 1)
        keyed = (later + rank)[::-1]
        best = (np.maximum.accumulate(keyed)[::-1] - later)[lo]
    else:
        best = _sparse_max(rank, lo, np.maximum(hi, lo))
    ok = valid & (best > 0)
    return _take(values, where_rank[best], ok)


def _sparse_max(rank: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The maximum of ``rank[lo..hi]`` for every row: a sparse table of maxima over power-of-two spans."""
    n = len(rank)
    width = hi - lo + 1
    levels = [rank]
    while (1 << len(levels)) <= int(width.max()):
        previous, step = levels[-1], 1 << (len(levels) - 1)
        level = previous.copy()
        level[: n - step] = np.maximum(previous[: n - step], previous[step:])
        levels.append(level)
    level = np.zeros(n, dtype=np.int64)
    for k in range(1, len(levels)):
        level[width >= (1 << k)] = k
    table = np.stack(levels)
    return np.maximum(table[level, lo], table[level, hi - (1 << level) + 1])
