"""Running a compiled plan (or a fragment of one) on Arrow tables.

:func:`execute` evaluates a plan tree bottom up.  A scan with the
projection above it is one read: the projected expressions and the filter
go into the Parquet scanner together.  A ``Gather`` is not crossed here:
its rows are handed in through ``gathered`` (the coordinator merges
fragment results that way; a worker runs the part below it).
Pure pyarrow: no Ray, so it is tested directly.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
from sqlglot import exp

from engine.query.execution import aggregate
from engine.query.execution.dictionary_keys import decoded, dictionary_read, filtered, read_columns, unified
from engine.query.execution.join import join, set_operation
from engine.query.execution.memory import MemoryBudget, readahead, table_bytes
from engine.query.execution.scan import NO_VALUES, UNBOUNDED, ScanStats, SegmentReader, segment_bound
from engine.query.execution.window import window
from planner.dispatch import OperatorTable
from planner.logical import (
    Aggregate, Broadcast, Filter, Gather, Join, Limit, Memory, Plan, Project, Scan, SetOp, Shuffle, Sort, SortKey, Values,
    Window,
)
from storage.errors import QueryTimeout


@dataclass
class Execution:
    """What an execution needs besides the plan, and what it measured."""

    reader: SegmentReader | None = None
    segments: tuple | None = None  # the fragment's segments; None = the scan's own list
    gathered: dict[int, pa.Table] = field(default_factory=dict)
    deadline: float | None = None
    cancelled: Callable[[], bool] | None = None
    scan: ScanStats = field(default_factory=ScanStats)
    inputs: dict[str, pa.Table] = field(default_factory=dict)  # exchange key -> rows this fragment reads
    whole: set[int] = field(default_factory=set)  # Gathers (by node id) whose rows one fragment produced
    memory: MemoryBudget | None = None  # the query's memory bound in this process (shared by its fragments here)
    held: int = 0  # bytes this execution has charged to ``memory`` and not yet released
    threads: int = 1  # an aggregate over several segments reads its input on this many threads (unbounded memory)

    def charge(self, nbytes: int, what: str) -> None:
        """Hold ``nbytes`` of the query's memory for ``what`` (until the operator holding it finishes)."""
        if self.memory is not None:
            self.memory.charge(nbytes, what)
            self.held = max(0, self.held + nbytes)

    def release_all(self) -> None:
        """Give back everything this execution holds (its result has been handed on)."""
        if self.memory is not None:
            self.memory.release(self.held)
        self.held = 0

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryTimeout("the query ran over its time limit and was cancelled")
        if self.cancelled is not None and self.cancelled():
            raise QueryTimeout("the query was cancelled")


EXECUTE: OperatorTable[pa.Table] = OperatorTable("execute")


def execute(plan: Plan, run: Execution) -> pa.Table:
    """The rows ``plan`` produces (below a Gather, those of ``run``'s segments only).

    With a memory budget, the output is charged while the inputs are still
    held (the operator's peak), then the inputs are released.
    """
    run.check()
    if run.memory is None:
        return EXECUTE(plan, run)
    before = run.held
    table = EXECUTE(plan, run)
    run.charge(table_bytes(table), f"the output of {type(plan).__name__}")
    inputs = run.held - before - table_bytes(table)
    run.memory.release(inputs)
    run.held -= inputs
    return table


def _input(plan: Plan, run: Execution) -> pa.Table:
    table = execute(plan.inputs[0], run)
    run.check()
    return table


def _fused_scan(plan: Plan) -> bool:
    """Whether ``plan`` is a projection straight over a scan (read as one Parquet scan)."""
    return isinstance(plan, Project) and isinstance(plan.input, Scan)


@EXECUTE.register(Gather)
def _gather(plan: Gather, run: Execution) -> pa.Table:
    return run.gathered[id(plan)]


@EXECUTE.register(Scan)
def _scan_only(plan: Scan, run: Execution) -> pa.Table:
    return _scan(plan, None, run)


@EXECUTE.register(Values)
def _values(plan: Values, run: Execution) -> pa.Table:
    return plan.compiled.select([n for n in plan.names])


@EXECUTE.register(Memory)
def _memory(plan: Memory, run: Execution) -> pa.Table:
    return plan.table


@EXECUTE.register(Broadcast, Shuffle)
def _exchange(plan: Broadcast | Shuffle, run: Execution) -> pa.Table:
    if plan.key in run.inputs:
        return run.inputs[plan.key]
    inner = Execution(reader=run.reader, gathered=run.gathered, deadline=run.deadline, cancelled=run.cancelled,
                      scan=run.scan, inputs=run.inputs, memory=run.memory)
    table = execute(plan.input, inner)
    run.held += inner.held  # what the inner execution still holds is this operator's input
    return table


@EXECUTE.register(Join)
def _join(plan: Join, run: Execution) -> pa.Table:
    left = execute(plan.left, run)
    right = execute(plan.right, run)
    run.check()
    return join(left, right, plan)


@EXECUTE.register(SetOp)
def _set_operation(plan: SetOp, run: Execution) -> pa.Table:
    parts = [execute(p, run) for p in plan.parts]
    run.check()
    return set_operation(parts, plan.kind, plan.distinct)


@EXECUTE.register(Project)
def _project(plan: Project, run: Execution) -> pa.Table:
    if isinstance(plan.input, Scan):
        return _scan(plan.input, plan, run)
    return project(_input(plan, run), plan.names, plan.compiled)


@EXECUTE.register(Filter)
def _filter(plan: Filter, run: Execution) -> pa.Table:
    return _input(plan, run).filter(plan.compiled)


@EXECUTE.register(Aggregate)
def _aggregate(plan: Aggregate, run: Execution) -> pa.Table:
    if plan.mode == "partial" and _counts_only(plan):
        return _count_from_manifest(plan, run)
    encoded = dictionary_read(plan) if plan.mode != "final" and run.memory is None else None

    def read(part: Execution) -> pa.Table:
        if encoded is None:
            return _input(plan, part)
        # strings read as dictionaries: filtered per distinct value, grouped by index
        columns, condition = read_columns(plan, encoded)
        scan = plan.input.input
        table = part.reader.read(scan.source.meta.path, scan.source.schema, part.segments if part.segments is not None
                                 else (scan.segments or ()), columns, condition, None, part.scan, part.check,
                                 stored_columns(scan), dictionary=encoded.columns)
        table = filtered(table, plan, encoded, unify=part is run)  # parts are unified once, together
        part.check()
        return table

    threaded = plan.mode != "final" and _splits(run) and _over_scan(plan.input)
    table = _on_threads(read, run) if threaded else read(run)
    if encoded is not None and threaded:  # the parts' dictionaries differ; grouping needs one
        table = unified(table, encoded.keys)
    if plan.mode == "partial":
        return decoded(aggregate.partial(table, plan.keys, plan.aggregates)) if encoded is not None \
            else aggregate.partial(table, plan.keys, plan.aggregates)
    if plan.mode == "final":  # states of one fragment hold each group once: nothing to merge
        whole = isinstance(plan.input, Gather) and id(plan.input) in run.whole
        return aggregate.final(table, plan.keys, plan.aggregates, plan.schema, whole)
    states = aggregate.partial(table, plan.keys, plan.aggregates)
    states = decoded(states) if encoded is not None else states
    return aggregate.final(states, plan.keys, plan.aggregates, plan.schema, whole=True)


def _splits(run: Execution) -> bool:
    """Whether :func:`_on_threads` splits ``run``'s read (a memory bound keeps it whole: one read, charged as it goes)."""
    return run.threads > 1 and run.memory is None and run.segments is not None and len(run.segments) > 1


def _over_scan(plan: Plan) -> bool:
    """Whether ``plan`` is projections and filters straight over the scan (whose segments a split divides)."""
    while isinstance(plan, (Project, Filter)):
        plan = plan.input
    return isinstance(plan, Scan)


def _on_threads(read: Callable[[Execution], pa.Table], run: Execution) -> pa.Table:
    """The same read over parts of ``run``'s segments on ``run.threads`` threads, concatenated.

    For an aggregate's input straight over the scan: reading, filtering and
    projecting split cleanly, while partial states computed per part would
    have to be merged again (as costly as the aggregation itself when nearly
    every key is distinct), so the parts' rows are aggregated once.  Only
    the scan's segments are divided: an input from an exchange would be
    read whole by every part.
    """
    parts = [dataclasses.replace(run, segments=group, scan=ScanStats(), threads=1)
             for group in split(run.segments, run.threads)]
    with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="petrel-read") as threads:
        tables = list(threads.map(read, parts))
    for part in parts:
        for name in ("segments", "rows_read", "bytes_read", "rows_out", "footer_hits"):
            setattr(run.scan, name, getattr(run.scan, name) + getattr(part.scan, name))
    if any(not t.schema.equals(tables[0].schema) for t in tables[1:]):
        tables = [decoded(t) for t in tables]  # a part whose segments store a string plainly read it plainly
    return concat(tables)


@EXECUTE.register(Sort)
def _sort(plan: Sort, run: Execution) -> pa.Table:
    if plan.limit is not None and _fused_scan(plan.input) and plan.input.input.limit is None:
        return _topk_scan(plan, run)
    return sort(_input(plan, run), plan.keys, plan.limit)


@EXECUTE.register(Limit)
def _limit(plan: Limit, run: Execution) -> pa.Table:
    if _fused_scan(plan.input):
        return _scan(plan.input.input, plan.input, run).slice(plan.offset, plan.limit)
    table = _input(plan, run)
    return table.slice(plan.offset, plan.limit) if plan.limit is not None else table.slice(plan.offset)


@EXECUTE.register(Window)
def _window(plan: Window, run: Execution) -> pa.Table:
    return window(_input(plan, run), plan.calls)


def _counts_only(plan: Aggregate) -> bool:
    """COUNT(*) with no keys straight over an unfiltered scan: the manifest has the answer."""
    below = plan.input.input if isinstance(plan.input, Project) else plan.input
    return (not plan.keys and isinstance(below, Scan) and below.filter is None and below.limit is None
            and all(a.func == "count_star" for a in plan.aggregates))


def _count_from_manifest(plan: Aggregate, run: Execution) -> pa.Table:
    below = plan.input.input if isinstance(plan.input, Project) else plan.input
    segments = run.segments if run.segments is not None else (below.segments or ())
    rows = sum(s.rows for s in segments)
    run.scan.segments += len(segments)
    states = {f"{a.name}__n": pa.array([rows], pa.int64()) for a in plan.aggregates}
    return pa.table(states) if states else pa.table({"__group": pa.array([0], pa.int8())})


def _topk_scan(plan: Sort, run: Execution) -> pa.Table:
    """ORDER BY ... LIMIT k over a scan, reading wide columns only where the top rows can be.

    First only the sort keys are read, which gives the k-th value of the
    first key; then the whole projection is read with ``key >= that value``
    (or ``<=``) added to the filter, so the reader skips every row group
    whose statistics rule it out.  Ties are kept, so the answer is the same.
    """
    projection, scan = plan.input, plan.input.input
    first = plan.keys[0]
    exprs = dict(zip(projection.names, projection.compiled))
    source = str(exprs[first.column])
    if source not in scan.source.schema.names or not pc.field(source).equals(exprs[first.column]):
        return sort(_scan(scan, projection, run), plan.keys, plan.limit)
    if source == scan.source.meta.time_column:
        ordered = _time_ordered_topk(plan, scan, projection, run, source)
        if ordered is not None:
            return ordered
    return _keys_first_topk(plan, scan, projection, run, source)


def _keys_first_topk(plan: Sort, scan: Scan, projection: Project, run: Execution, source: str) -> pa.Table:
    """The top rows of ``run``'s segments: the k-th value of the first key found first, then the rows at or before it.

    The first key is read alone, from the segments whose statistics can
    reach furthest first (see :func:`_kth_key`); then the whole projection
    is read with ``key >= k-th value`` (or ``<=``) added to the filter, from
    those segments only, so the reader also skips every row group whose
    statistics rule it out.  Ties are kept, so the answer is the same.
    """
    first = plan.keys[0]
    if first.nulls_first or plan.limit == 0 or not _bounded(scan.source.schema.field(source).type):
        return _keys_read_whole_topk(plan, scan, projection, run, source)
    threshold, segments = _kth_key(plan, scan, run, source)
    if threshold is None:  # fewer than k non-NULL keys: NULLs are among the top rows
        return sort(_scan(scan, projection, run), plan.keys, plan.limit)
    bound = pc.field(source) >= pc.scalar(threshold) if first.descending else pc.field(source) <= pc.scalar(threshold)
    narrowed = dataclasses.replace(scan, compiled=bound if scan.compiled is None else (scan.compiled & bound))
    return sort(_scan(narrowed, projection, dataclasses.replace(run, segments=segments)), plan.keys, plan.limit)


def _bounded(type_: pa.DataType) -> bool:
    """Whether Parquet's statistics of a column of ``type_`` compare as the values do (numbers, dates, times)."""
    return (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_date(type_)
            or (pa.types.is_timestamp(type_) and type_.unit in ("s", "ms", "us")))


def _kth_key(plan: Sort, scan: Scan, run: Execution, source: str) -> tuple[pa.Scalar | None, tuple]:
    """The k-th best value of the first sort key over ``run``'s segments, and the segments that can reach it.

    Segments are ranked by the bound their row groups' statistics put on
    the key (highest maximum first when descending), and only the key is
    read, in waves of 1, 2, 4, ... segments.  Once k values are kept, the
    k-th is passed to later waves as a filter, and a segment whose bound
    falls short of it is not read, nor is any ranked after it.  None when
    there are fewer than k non-NULL keys.
    """
    first, limit = plan.keys[0], plan.limit
    segments = run.segments if run.segments is not None else (scan.segments or ())
    unbounded, ranked = [], []
    for segment in segments:
        bound = segment_bound(run.reader.footer(scan.source.meta.path, segment, run.scan), source, first.descending)
        if bound is UNBOUNDED:
            unbounded.append(segment)
        elif bound is not NO_VALUES:
            ranked.append((bound, segment))
    ranked.sort(key=lambda pair: pair[0], reverse=first.descending)
    order = [(UNBOUNDED, s) for s in unbounded] + ranked
    key = pc.field(source)
    floating = pa.types.is_floating(scan.source.schema.field(source).type)
    keys_only = Project(scan, (first.column,), (key,), (key,))
    kept, threshold, position, wave = None, None, 0, 1
    while position < len(order) and (threshold is None or _reaches(order[position][0], threshold, first.descending)):
        chosen = tuple(s for bound, s in order[position:position + wave]
                       if threshold is None or _reaches(bound, threshold, first.descending))
        position, wave = position + wave, wave * 2
        if not chosen:  # ranked best first: none after these reaches the k-th value either
            break
        wanted = key.is_valid() if threshold is None else \
            (key >= pc.scalar(threshold) if first.descending else key <= pc.scalar(threshold))
        narrowed = dataclasses.replace(scan, compiled=wanted if scan.compiled is None else (scan.compiled & wanted))
        values = _scan(narrowed, keys_only, dataclasses.replace(run, segments=chosen)).column(0)
        values = values.combine_chunks() if kept is None else pa.concat_arrays([kept, *values.chunks])
        if floating:
            values = values.filter(pc.invert(pc.is_nan(values)))  # NaNs sort after every number
        if len(values) > limit:
            values = values.take(pc.top_k_unstable(values, limit) if first.descending
                                 else pc.bottom_k_unstable(values, limit))
        kept = values
        if len(kept) >= limit:
            threshold = pc.min(kept) if first.descending else pc.max(kept)
    if threshold is None:
        return None, tuple(segments)
    return threshold, tuple(s for bound, s in order if _reaches(bound, threshold, first.descending))


def _reaches(bound: object, threshold: pa.Scalar, descending: bool) -> bool:
    """Whether a segment whose statistics bound its key by ``bound`` may hold a value as good as ``threshold``."""
    if bound is UNBOUNDED:
        return True
    value = threshold.as_py()
    try:
        return bound >= value if descending else bound <= value
    except TypeError:  # a statistic of another type (the column's type changed): read the segment
        return True


def _keys_read_whole_topk(plan: Sort, scan: Scan, projection: Project, run: Execution, source: str) -> pa.Table:
    """The top rows of ``run``'s segments: the sort keys read first, then the rows at or before the k-th key."""
    first = plan.keys[0]
    exprs = dict(zip(projection.names, projection.compiled))
    key_names = tuple(dict.fromkeys(k.column for k in plan.keys))
    keys_only = Project(scan, key_names, tuple(exprs[n] for n in key_names), tuple(exprs[n] for n in key_names))
    candidates = sort(_scan(scan, keys_only, run), plan.keys, plan.limit)
    if candidates.num_rows < plan.limit or plan.limit == 0:
        return sort(_scan(scan, projection, run), plan.keys, plan.limit)
    threshold = candidates.column(first.column)[plan.limit - 1]
    if not threshold.is_valid:  # the k-th row has a NULL key: no bound to use
        return sort(_scan(scan, projection, run), plan.keys, plan.limit)
    bound = pc.field(source) >= pc.scalar(threshold) if first.descending else pc.field(source) <= pc.scalar(threshold)
    if first.nulls_first:
        bound = bound | pc.field(source).is_null()
    narrowed = dataclasses.replace(scan, compiled=bound if scan.compiled is None else (scan.compiled & bound))
    return sort(_scan(narrowed, projection, run), plan.keys, plan.limit)


def _time_ordered_topk(plan: Sort, scan: Scan, projection: Project, run: Execution, source: str) -> pa.Table | None:
    """ORDER BY the time column ... LIMIT k: segments read in time order, until no later one can hold a top row.

    Each segment's time range is in the manifest: once k rows are kept, a
    segment starting after the k-th time (ending before it, descending) is
    never read.  Ties on the time are kept (a segment starting at it is
    read), so the answer is the same.  None when the manifest cannot order
    the segments (a segment without times, NULL times sorted first).
    """
    first, limit = plan.keys[0], plan.limit
    segments = list(run.segments if run.segments is not None else (scan.segments or ()))
    type_ = scan.source.schema.field(source).type
    stored = _key_sources(plan, projection)
    if (first.nulls_first or limit == 0 or len(segments) < (1 if stored is not None else 2)
            or not pa.types.is_timestamp(type_)
            or type_.unit not in ("s", "ms", "us") or any(s.min_time is None or s.max_time is None for s in segments)):
        return None
    segments.sort(key=(lambda s: -s.max_time) if first.descending else (lambda s: s.min_time))
    kept: pa.Table | None = None
    for segment in segments:
        if kept is not None and kept.num_rows >= limit:
            threshold = kept.column(first.column)[limit - 1]
            if threshold.is_valid:
                micros = threshold.cast(pa.timestamp("us", tz=type_.tz)).value
                if (segment.max_time < micros) if first.descending else (segment.min_time > micros):
                    break  # this segment and every later one lie wholly after the k-th row
        one = dataclasses.replace(run, segments=(segment,))
        part = _keys_first_topk(plan, scan, projection, one, source) if stored is None \
            else _positional_topk(plan, scan, projection, one, segment, stored)
        kept = sort(part if kept is None else concat([kept, part]), plan.keys, limit)
    return kept


def topk_read_columns(plan: Plan) -> tuple[str, ...] | None:
    """The stored columns a stage rooted at ``plan`` reads whole, when it is a time-ordered top-k (else None).

    Such a stage reads only its sort keys and filter columns in full; the
    other columns only at the top rows (:func:`_positional_topk`), so its
    cost is that of the keys, however wide the projection.
    """
    if not (isinstance(plan, Sort) and plan.limit is not None and _fused_scan(plan.input)
            and plan.input.input.limit is None and not plan.keys[0].nulls_first):
        return None
    scan = plan.input.input
    sources = _key_sources(plan, plan.input)
    if sources is None or sources[plan.keys[0].column] != scan.source.meta.time_column:
        return None
    return tuple(_read_first(scan, sources))


def _read_first(scan: Scan, sources: dict[str, str]) -> list[str]:
    """The sort keys' stored columns and those the scan's filter tests: what a positional top-k reads whole."""
    tested = {part.name for column in (scan.filter.find_all(exp.Column) if scan.filter is not None else ())
              for part in column.parts}
    return list(dict.fromkeys([*sources.values(), *(c for c in scan.source.schema.names if c in tested)]))


def _key_sources(plan: Sort, projection: Project) -> dict[str, str] | None:
    """The stored column each sort key reads, when every key is a bare column (else None)."""
    exprs = dict(zip(projection.names, projection.compiled))
    sources = {}
    for key in plan.keys:
        expr = exprs.get(key.column)
        if expr is None or not pc.field(str(expr)).equals(expr):
            return None
        sources[key.column] = str(expr)
    return sources


def _positional_topk(plan: Sort, scan: Scan, projection: Project, run: Execution, segment, sources: dict[str, str]
                     ) -> pa.Table:
    """The top rows of one segment: its sort keys (and filter columns) read first, then only the top rows' columns.

    The keys are read row group by row group in time order (each group's
    time range is in its statistics) until no later group can hold a top
    row; they pick the row numbers of the top ``limit`` rows, and the
    projection's columns are read at those rows alone
    (:meth:`SegmentReader.read_positions`).  For a segment sorted by time
    that is one row group of keys and the first pages of the wide columns,
    however wide the table.
    """
    first, limit, path = plan.keys[0], plan.limit, scan.source.meta.path
    stored = _read_first(scan, sources)
    groups = run.reader.row_groups(path, segment, scan.source.meta.time_column)
    ordered = all(g.min_time is not None for g in groups)
    if ordered:
        groups.sort(key=(lambda g: -g.max_time) if first.descending else (lambda g: g.min_time))
    type_ = scan.source.schema.field(sources[first.column]).type
    kept: pa.Table | None = None
    for group in groups:
        if ordered and kept is not None and kept.num_rows >= limit:
            threshold = kept.column(first.column)[limit - 1]
            if threshold.is_valid:
                micros = threshold.cast(pa.timestamp("us", tz=type_.tz)).value
                if (group.max_time < micros) if first.descending else (group.min_time > micros):
                    break  # this group and every later one lie wholly after the k-th row
        run.check()
        keys = run.reader.read_group(path, scan.source.schema, segment, stored, group.index, run.scan)
        keys = keys.append_column(_POSITION, pa.array(np.arange(group.first, group.first + keys.num_rows)))
        if scan.compiled is not None:
            keys = keys.filter(scan.compiled)
        named = pa.Table.from_arrays([keys.column(s) for s in sources.values()] + [keys.column(_POSITION)],
                                     names=[*sources, _POSITION])
        kept = sort(named if kept is None else pa.concat_tables([kept, named]), plan.keys, limit)
    if kept is None:
        kept = pa.table({_POSITION: pa.array([], pa.int64())})
    rows = run.reader.read_positions(path, scan.source.schema, segment, list(scan.columns), kept.column(_POSITION),
                                     run.scan)
    run.scan.segments += 1
    return project(rows, projection.names, projection.compiled)


_POSITION = "__petrel_position"


def _scan(scan: Scan, projection: Project | None, run: Execution) -> pa.Table:
    segments = run.segments if run.segments is not None else (scan.segments or ())
    schema = scan.source.schema
    if projection is not None:
        columns = dict(zip(projection.names, projection.compiled))
    else:
        columns = {name: pc.field(name) for name in scan.columns}
    stored = stored_columns(scan)
    before = run.held
    bounded = {} if run.memory is None else {"charge": lambda n: run.charge(n, f"a scan of {scan.source.meta.name}"),
                                             "options": readahead(run.memory.limit)}
    if len(set(columns)) < len(columns):  # duplicate output names: read, then project
        table = run.reader.read(scan.source.meta.path, schema, segments, list(scan.columns), scan.compiled, scan.limit,
                                run.scan, run.check, stored, **bounded)
        table = project(table, projection.names, projection.compiled)
    else:
        table = run.reader.read(scan.source.meta.path, schema, segments, columns, scan.compiled, scan.limit, run.scan,
                                run.check, stored, **bounded)
    if run.memory is not None:  # the batches read are the table returned: the operator above charges it as one
        run.memory.release(run.held - before)
        run.held = before
    return table


def stored_columns(scan: Scan) -> list[str]:
    """The stored columns a scan reads: those it outputs and those its filter tests."""
    used = set(scan.columns)
    if scan.filter is not None:
        for column in scan.filter.find_all(exp.Column):
            used.update(part.name for part in column.parts)
    return [name for name in scan.source.schema.names if name in used]


def split(segments: tuple, parts: int) -> list[tuple]:
    """``segments`` dealt round robin into at most ``parts`` non-empty groups."""
    parts = max(1, min(parts, len(segments)))
    return [tuple(segments[i::parts]) for i in range(parts)] if segments else [()]


def concat(tables: list[pa.Table]) -> pa.Table:
    """Fragment results as one table (types widened where fragments differ; repeated names kept)."""
    if len(tables) == 1:
        return tables[0]
    names = tables[0].column_names
    if not names:  # Arrow's concatenation of tables without columns loses their rows
        return pa.table({"_": pa.nulls(sum(t.num_rows for t in tables))}).drop_columns(["_"])
    if len(set(names)) == len(names):
        if all(t.schema.equals(tables[0].schema) for t in tables[1:]):  # dictionary columns keep their own dictionaries
            return pa.concat_tables(tables)
        return pa.concat_tables(tables, promote_options="permissive")
    positional = [pa.Table.from_arrays(t.columns, names=[f"_{i}" for i in range(t.num_columns)]) for t in tables]
    merged = pa.concat_tables(positional, promote_options="permissive")
    return pa.Table.from_arrays(merged.columns, names=names)


def project(table: pa.Table, names: tuple[str, ...], exprs: tuple) -> pa.Table:
    """``exprs`` evaluated over ``table`` (Acero project), named ``names``."""
    columns = _plain_columns(table, exprs)
    if columns is not None:  # only renames: no need to run Acero
        return pa.Table.from_arrays([table.column(c) for c in columns], names=list(names))
    unique = [f"_{i}" for i in range(len(names))] if len(set(names)) < len(names) else list(names)
    declaration = acero.Declaration.from_sequence([
        acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
        acero.Declaration("project", acero.ProjectNodeOptions(list(exprs), unique)),
    ])
    result = declaration.to_table(use_threads=True)
    return result if unique == list(names) else pa.Table.from_arrays(result.columns, names=list(names))


def _plain_columns(table: pa.Table, exprs: tuple) -> list[str] | None:
    """The column names, when every expression is a bare reference to an existing column."""
    columns, names = [], set(table.column_names)
    for expr in exprs:
        name = str(expr)
        if name not in names or not pc.field(name).equals(expr):
            return None
        columns.append(name)
    return columns


def sort(table: pa.Table, keys: tuple[SortKey, ...], limit: int | None = None) -> pa.Table:
    """Rows ordered by ``keys`` (each with its own NULLS FIRST/LAST); the first ``limit`` with a limit."""
    if table.num_rows <= 1:
        return table
    work = {}
    sort_keys = []
    for index, key in enumerate(keys):
        column = table.column(key.column)
        if column.null_count:
            flag = f"__null{index}"
            work[flag] = pc.is_null(column)
            sort_keys.append((flag, "descending" if key.nulls_first else "ascending"))
        name = f"__key{index}"
        work[name] = column
        sort_keys.append((name, "descending" if key.descending else "ascending"))
    keyed = pa.table(work)
    if limit is not None and limit < table.num_rows:
        if limit == 0:
            return table.slice(0, 0)
        chosen = pc.select_k_unstable(keyed, limit, sort_keys)
        keyed, table = keyed.take(chosen), table.take(chosen)
    order = pc.sort_indices(keyed, sort_keys=sort_keys)
    return table.take(order)

