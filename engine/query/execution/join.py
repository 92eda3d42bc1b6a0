"""Joins and set operations on Arrow tables.

Matching runs in Acero's hash join, on the join keys and a row number of
each side only: payload columns (lists and structs included, which Acero
refuses) are then taken by those row numbers.  From the matched pairs every
join kind follows with vectorised index arithmetic: residual (non-equi)
conditions filter the pairs, outer joins add the rows no pair mentions,
semi and anti joins keep or drop the left rows that have a pair.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from planner import types as sqltypes
from planner.logical import Join
from storage.errors import QueryFailed


def _key_type(left: pa.DataType, right: pa.DataType) -> pa.DataType | None:
    """The type both sides' keys are compared in (None: as they are)."""
    if left.equals(right):
        return None
    numeric = lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if pa.types.is_integer(left) and pa.types.is_integer(right):
        return pa.int64()
    if numeric(left) and numeric(right):  # DECIMAL keys meet exactly, unless 38 digits may not hold both
        common = sqltypes.numeric_common(left, right)
        return common if pa.types.is_decimal(common) and common.precision < sqltypes.MAX_DECIMAL_DIGITS else pa.float64()
    if pa.types.is_dictionary(left) or pa.types.is_dictionary(right) or pa.types.is_string(left) or pa.types.is_large_string(left):
        return pa.string()
    if pa.types.is_date(left) and pa.types.is_timestamp(right):
        return right
    if pa.types.is_timestamp(left) and pa.types.is_date(right):
        return left
    return pa.string()


def _keys(left: pa.Table, right: pa.Table, plan: Join) -> tuple[pa.Table, pa.Table, list[str]]:
    """Key tables (keys and row numbers, rows with a NULL key dropped)."""
    names = [f"__k{i}" for i in range(len(plan.left_keys))]
    lcols, rcols = {}, {}
    for name, lk, rk in zip(names, plan.left_keys, plan.right_keys):
        a, b = left.column(lk), right.column(rk)
        common = _key_type(a.type, b.type)
        if common is not None:
            a, b = a.cast(common), b.cast(common)
        if pa.types.is_floating(a.type):  # -0.0 equals 0.0 (adding 0.0 turns the one into the other), as it groups
            a, b = pc.add(a, 0.0), pc.add(b, 0.0)
        lcols[name], rcols[name] = a, b
    if plan.null_equal:  # IS NOT DISTINCT FROM: both sides' keys as codes of one dictionary, NULL a code too
        for name in names:
            a, b = lcols[name], rcols[name]
            both = pa.chunked_array(list(_chunks(a)) + list(_chunks(b)), a.type)
            codes = pc.dictionary_encode(both.combine_chunks(), null_encoding="encode").indices  # Arrow cannot
            # combine dictionary chunks of decimals
            lcols[name], rcols[name] = codes.slice(0, len(a)), codes.slice(len(a))
    lcols["__l"] = pa.array(np.arange(left.num_rows, dtype=np.int64))
    rcols["__r"] = pa.array(np.arange(right.num_rows, dtype=np.int64))
    lt, rt = pa.table(lcols), pa.table(rcols)
    for name in names:
        if lt.column(name).null_count:
            lt = lt.filter(pc.is_valid(lt.column(name)))
        if rt.column(name).null_count:
            rt = rt.filter(pc.is_valid(rt.column(name)))
    return lt, rt, names


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _pairs(left: pa.Table, right: pa.Table, plan: Join) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers (left, right) of every matching pair."""
    if plan.left_keys:
        lt, rt, names = _keys(left, right, plan)
        if lt.num_rows == 0 or rt.num_rows == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        if lt.num_rows < rt.num_rows:  # Acero builds its hash table on the right input: make that the smaller
            matched = rt.join(lt, keys=names, right_keys=names, join_type="inner", use_threads=True)
        else:
            matched = lt.join(rt, keys=names, right_keys=names, join_type="inner", use_threads=True)
        li = matched.column("__l").to_numpy()
        ri = matched.column("__r").to_numpy()
    else:
        n, m = left.num_rows, right.num_rows
        if n * m > 200_000_000:
            raise QueryFailed(f"a join without equality conditions would pair {n} x {m} rows; add an equality condition")
        li = np.repeat(np.arange(n, dtype=np.int64), m)
        ri = np.tile(np.arange(m, dtype=np.int64), n)
    if plan.compiled is not None and len(li):
        both = _combine(left.take(li), right.take(ri))
        mask = _evaluate(both, plan.compiled)
        li, ri = li[mask], ri[mask]
    return li, ri


def _matched(left: pa.Table, right: pa.Table, plan: Join) -> np.ndarray:
    """Whether each left row has a match (Acero's semi join: each left row once, however many match)."""
    mark = np.zeros(left.num_rows, dtype=bool)
    lt, rt, names = _keys(left, right, plan)
    if lt.num_rows and rt.num_rows:
        if lt.num_rows < rt.num_rows:  # build the hash table on the smaller side
            found = rt.join(lt, keys=names, right_keys=names, join_type="right semi", use_threads=True)
        else:
            found = lt.join(rt, keys=names, right_keys=names, join_type="left semi", use_threads=True)
        mark[found.column("__l").to_numpy()] = True
    return mark


def _not_in(left: pa.Table, right: pa.Table, plan: Join) -> np.ndarray:
    """Which left rows ``probe NOT IN (subquery)`` keeps, by SQL's three-valued logic per correlation group.

    The last key pair is the probe and the subquery's value; the others
    (and the residual condition) correlate a left row with its group of
    subquery rows.  A row is kept when its group is empty; otherwise only
    when its probe is not NULL, the group holds no NULL value and no
    value equal to the probe.
    """
    n = left.num_rows
    probe, value = plan.left_keys[-1], plan.right_keys[-1]
    probe_null = pc.is_null(left.column(probe)).to_numpy(zero_copy_only=False)
    value_null = pc.is_null(right.column(value)).to_numpy(zero_copy_only=False)
    group = dataclasses.replace(plan, left_keys=plan.left_keys[:-1], right_keys=plan.right_keys[:-1])
    if plan.compiled is not None:  # non-equality correlation: test the (row, group member) pairs
        li, ri = _pairs(left, right, group)
        nonempty = np.zeros(n, dtype=bool)
        nonempty[li] = True
        probes, values = _comparable(left.column(probe).take(pa.array(li)), right.column(value).take(pa.array(ri)))
        equal = pc.fill_null(pc.equal(probes, values), False)
        blocked = value_null[ri] | equal.to_numpy(zero_copy_only=False)
        rejected = np.zeros(n, dtype=bool)
        rejected[li[blocked]] = True
        return ~nonempty | (~probe_null & ~rejected)
    if not group.left_keys:  # uncorrelated: one group, the whole subquery
        if right.num_rows == 0:
            return np.ones(n, dtype=bool)
        if value_null.any():
            return np.zeros(n, dtype=bool)
        return ~probe_null & ~_matched(left, right, plan)
    nonempty = _matched(left, right, group)
    null_groups = _matched(left, right.filter(pa.array(value_null)), group) if value_null.any() else np.zeros(n, bool)
    return ~nonempty | (~probe_null & ~null_groups & ~_matched(left, right, plan))


def _comparable(a, b):
    """Two columns cast to the type a join compares them in."""
    common = _key_type(a.type, b.type)
    return (a, b) if common is None else (a.cast(common), b.cast(common))


def _evaluate(table: pa.Table, predicate) -> np.ndarray:
    import pyarrow.acero as acero

    declaration = acero.Declaration.from_sequence([
        acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
        acero.Declaration("project", acero.ProjectNodeOptions([predicate], ["m"])),
    ])
    result = declaration.to_table(use_threads=True).column("m")
    return pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool)


def _combine(left: pa.Table, right: pa.Table) -> pa.Table:
    return pa.Table.from_arrays(left.columns + right.columns, names=left.column_names + right.column_names)


def _nulls(table: pa.Table, count: int) -> pa.Table:
    return table.take(pa.nulls(count, pa.int64())) if table.num_columns else pa.table({})


def join(left: pa.Table, right: pa.Table, plan: Join) -> pa.Table:
    """``left`` joined to ``right`` as ``plan`` says."""
    kind = plan.kind
    if kind == "single" and (plan.left_keys or plan.compiled is not None):  # a correlated scalar subquery
        li, ri = _pairs(left, right, plan)
        if len(np.unique(li)) != len(li):
            raise QueryFailed("a correlated scalar subquery returned more than one row for an outer row; "
                              "add an aggregate (max, min) or a condition that picks one row")
        index = np.full(left.num_rows, -1, dtype=np.int64)
        index[li] = ri
        return _combine(left, right.take(pa.array(index, mask=index < 0)))
    if kind == "single":
        if right.num_rows > 1:
            raise QueryFailed("a scalar subquery returned more than one row; add LIMIT 1 or an aggregate")
        values = right.take(pa.array([0] * left.num_rows if right.num_rows else [None] * left.num_rows, pa.int64()))
        return _combine(left, values)
    if kind == "anti_in":
        return left.filter(pa.array(_not_in(left, right, plan)))
    if kind in ("semi", "anti") and not plan.left_keys and plan.compiled is None:  # uncorrelated EXISTS
        return left if (right.num_rows > 0) == (kind == "semi") else left.slice(0, 0)
    if kind in ("semi", "anti") and plan.left_keys and plan.compiled is None:
        return left.filter(pa.array(_matched(left, right, plan) if kind == "semi" else ~_matched(left, right, plan)))
    li, ri = _pairs(left, right, plan)
    if kind in ("inner", "cross"):
        return _combine(left.take(li), right.take(ri))
    if kind in ("semi", "anti"):
        mark = np.zeros(left.num_rows, dtype=bool)
        mark[li] = True
        return left.filter(pa.array(mark if kind == "semi" else ~mark))
    parts = [_combine(left.take(li), right.take(ri))]
    if kind in ("left", "full"):
        mark = np.zeros(left.num_rows, dtype=bool)
        mark[li] = True
        missing = np.flatnonzero(~mark)
        if len(missing):
            parts.append(_combine(left.take(missing), _nulls(right, len(missing))))
    if kind == "full":
        mark = np.zeros(right.num_rows, dtype=bool)
        mark[ri] = True
        missing = np.flatnonzero(~mark)
        if len(missing):
            parts.append(_combine(_nulls(left, len(missing)), right.take(missing)))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _as_column_type(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    """``column`` as the set operation's column type; a DECIMAL losing scale rounds half away from zero."""
    if pa.types.is_decimal(column.type) and pa.types.is_decimal(type_) and column.type.scale > type_.scale:
        column = pc.round(column, ndigits=type_.scale, round_mode="half_towards_infinity")  # ties away from zero
    return column.cast(type_)


def set_operation(parts: list[pa.Table], kind: str, distinct: bool, schema: pa.Schema | None = None) -> pa.Table:
    """UNION / INTERSECT / EXCEPT of tables with the same columns (by position)."""
    names = parts[0].column_names
    types = []
    for index in range(len(names)):
        found = [p.schema.field(index).type for p in parts]
        from planner.rules.compile_expressions import common_type

        types.append(common_type(found))
    aligned = []
    for part in parts:
        columns = [c if c.type.equals(t) or pa.types.is_null(t) else _as_column_type(c, t)
                   for c, t in zip(part.columns, types)]
        columns = [c.cast(t) if pa.types.is_null(c.type) and not pa.types.is_null(t) else c for c, t in zip(columns, types)]
        aligned.append(pa.Table.from_arrays(columns, names=names))
    if distinct or kind != "union":
        from engine.query.execution.group_values import signed_zeros_as_one

        aligned = [signed_zeros_as_one(t, names) for t in aligned]
    if kind == "union":
        table = pa.concat_tables(aligned)
        return _distinct(table) if distinct else table
    tagged = [t.append_column("__side", pa.array(np.full(t.num_rows, i, np.int8))) for i, t in enumerate(aligned[:2])]
    both = pa.concat_tables(tagged)
    both = both.append_column("__one", pa.array(np.ones(both.num_rows, np.int64)))
    both = both.append_column("__left", pc.cast(pc.equal(both.column("__side"), 0), pa.int64()))
    grouped = both.group_by(names, use_threads=False).aggregate([("__left", "sum"), ("__one", "sum")])
    left_count = grouped.column("__left_sum").to_numpy()
    right_count = grouped.column("__one_sum").to_numpy() - left_count
    if kind == "intersect":
        counts = np.minimum(left_count, right_count)
    elif distinct:  # EXCEPT: a row the right side has at all is gone, however often the left has it
        counts = ((left_count > 0) & (right_count == 0)).astype(np.int64)
    else:
        counts = np.maximum(left_count - right_count, 0)
    if distinct:
        counts = np.minimum(counts, 1)
    rows = grouped.select(names)
    return rows.take(pa.array(np.repeat(np.arange(rows.num_rows), counts)))


def _distinct(table: pa.Table) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.group_by(table.column_names, use_threads=False).aggregate([])
