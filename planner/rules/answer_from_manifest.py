"""Answer ``count(*)`` and ``min``/``max`` of a column from the manifest, reading no segment.

A global aggregate (no GROUP BY) made only of ``count(*)``, and ``min``,
``max`` or ``count`` of the table's time column or of any integer, date or
timestamp column (whose manifest bounds are exact: computed from the
values when the segment was written), over a scan whose filter (if any)
is only a time range that every kept segment lies wholly inside, is
computed from the segments' manifest entries (rows, min/max time, per-column
bounds and null counts) and replaced by its one-row answer: no fragment is
sent anywhere.  Any other shape, or a segment without statistics for the
column, is left to the scan.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from sqlglot import exp

from planner.context import PlanContext
from planner.expressions import ExpressionCompiler
from planner.logical import Aggregate, Memory, Plan, Project, Scan
from planner.predicates import bound, conjuncts
from planner.rules.extract_time_range import micros_of
from planner.rules.prune_segments import manifest_of

_TIME_OPS = ("eq", "gt", "gte", "lt", "lte", "between")
_UNITS = ("s", "ms", "us")  # manifest times are microseconds: exact for these units


def answer_from_manifest(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(answer_from_manifest(child, context) for child in plan.inputs))
    if not isinstance(plan, Aggregate) or plan.keys or plan.mode != "single" or not plan.aggregates:
        return plan
    scan, columns = _source(plan.input)
    if scan is None or scan.segments is None or scan.limit is not None:
        return plan
    time_column = scan.source.meta.time_column
    field = scan.source.schema.field(time_column) if scan.source.schema.get_field_index(time_column) >= 0 else None
    if field is None or not pa.types.is_timestamp(field.type) or field.type.unit not in _UNITS:
        return plan
    bounded: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
    for call in plan.aggregates:
        if call.func == "count_star":
            continue
        stored = columns.get(call.arg)
        if call.func not in ("min", "max", "count") or stored is None:
            return plan
        if stored != time_column and stored not in bounded:
            found = _column_bounds(scan, stored)
            if found is None:
                return plan
            bounded[stored] = found
    if not _only_time_range(scan, time_column, context):
        return plan
    segments = scan.segments
    rows, nulls, low, high, known = _arrays(scan, time_column)
    if np.any((rows > 0) & ~known):
        return plan
    if scan.filter is not None and np.any(nulls > 0):
        return plan  # NULL times fail the filter: the manifest cannot say how many rows pass
    answer = {}
    timed = rows > nulls
    for call in plan.aggregates:
        if call.func == "count_star":
            answer[call.name] = pa.array([int(rows.sum())], pa.int64())
        elif columns[call.arg] in bounded:
            answer[call.name] = _bounded_answer(call.func, rows, *bounded[columns[call.arg]],
                                                scan.source.schema.field(columns[call.arg]).type)
        elif call.func == "count":
            answer[call.name] = pa.array([int((rows - nulls).sum())], pa.int64())
        else:
            value = None
            if timed.any():
                value = int(low[timed].min()) if call.func == "min" else int(high[timed].max())
            micros = pa.array([value], pa.timestamp("us", tz=field.type.tz))
            answer[call.name] = micros.cast(field.type)
    table = pa.table(answer)
    name = f"manifest of {scan.source.meta.namespace}.{scan.source.name} ({len(segments)} segments)"
    return Memory(name, table)


def _exact(type_: pa.DataType) -> bool:
    """Whether the manifest's min/max of a column of ``type_`` are exact values of it (never NaN, never cut)."""
    return (pa.types.is_integer(type_) or pa.types.is_date(type_)
            or (pa.types.is_timestamp(type_) and type_.unit in _UNITS))


def _column_bounds(scan: Scan, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None:
    """(present, NULL counts, mins, maxes) of column ``name`` per kept segment; None unless all are known exactly."""
    index = scan.source.schema.get_field_index(name)
    if index < 0 or not _exact(scan.source.schema.field(index).type):
        return None  # (a segment's type only ever widens to the table's: an integer table column was never a float)
    if scan.segments is scan.source.segments:
        present, known, nulls, has_bounds, lows, highs = manifest_of(scan.source).column(name)
        rows = manifest_of(scan.source).rows
    else:
        segments = scan.segments
        rows = np.array([s.rows for s in segments], dtype=np.int64)
        present = np.array([name in s.schema.names for s in segments], dtype=bool)
        stats = [s.columns.get(name) if p else None for s, p in zip(segments, present)]
        known = np.array([c is not None for c in stats], dtype=bool)
        nulls = np.array([c.null_count if c is not None else 0 for c in stats], dtype=np.int64)
        has_bounds = np.array([c is not None and c.min is not None and c.max is not None for c in stats], dtype=bool)
        lows = np.array([c.min if c is not None else None for c in stats], dtype=object)
        highs = np.array([c.max if c is not None else None for c in stats], dtype=object)
    if np.any(present & ~known & (rows > 0)):
        return None
    valued = present & (rows > nulls)
    if np.any(valued & ~has_bounds):
        return None
    nulls = np.where(present, nulls, rows)  # a segment written before the column existed holds only NULLs
    return valued, nulls, lows[valued], highs[valued]


def _bounded_answer(func: str, rows: np.ndarray, valued: np.ndarray, nulls: np.ndarray, lows: np.ndarray,
                    highs: np.ndarray, type_: pa.DataType) -> pa.Array:
    """``func`` (min, max or count) of a column from its per-segment bounds and NULL counts."""
    if func == "count":
        return pa.array([int((rows - nulls).sum())], pa.int64())
    if not valued.any():
        return pa.nulls(1, type_)
    value = min(lows) if func == "min" else max(highs)
    return pa.array([value], type_)


def _source(plan: Plan) -> tuple[Scan | None, dict[str, str]]:
    """The scan below ``plan`` and, for each column the aggregate sees, the stored column it is."""
    if isinstance(plan, Scan):
        return plan, {name: name for name in plan.columns}
    if isinstance(plan, Project) and isinstance(plan.input, Scan):
        names = {}
        for name, expr in zip(plan.names, plan.exprs):
            if isinstance(expr, exp.Column):
                names[name] = expr.name
        return plan.input, names
    return None, {}


def _only_time_range(scan: Scan, time_column: str, context: PlanContext) -> bool:
    """Whether the scan's filter is only a time range that every kept segment lies wholly inside."""
    if scan.filter is None:
        return True
    if scan.time_range is None:
        return False
    compiler = ExpressionCompiler(scan.source.schema, context.now)
    for node in conjuncts(scan.filter):
        found = bound(node, compiler)
        if found is None or found.column != time_column or found.op not in _TIME_OPS:
            return False
        if any(micros_of(v) is None for v in found.values):
            return False
    low, high = scan.time_range
    return all((low is None or s.min_time >= low) and (high is None or s.max_time <= high)
               for s in scan.segments if s.rows)


def _arrays(scan: Scan, time_column: str) -> tuple[np.ndarray, ...]:
    """Rows, NULL times, min and max time, and whether both times are known, of the scan's segments."""
    if scan.segments is scan.source.segments:  # the whole table: the snapshot's arrays, built once
        manifest = manifest_of(scan.source)
        nulls = np.where(manifest.column(time_column)[1], manifest.column(time_column)[2], 0)
        return manifest.rows, nulls, manifest.low, manifest.high, manifest.known
    segments = scan.segments
    return (np.array([s.rows for s in segments], dtype=np.int64),
            np.array([_nulls(s, time_column) for s in segments], dtype=np.int64),
            np.array([s.min_time or 0 for s in segments], dtype=np.int64),
            np.array([s.max_time or 0 for s in segments], dtype=np.int64),
            np.array([s.min_time is not None and s.max_time is not None for s in segments], dtype=bool))


def _nulls(segment, column: str) -> int:
    stats = segment.columns.get(column)
    return stats.null_count if stats is not None else 0
