"""The one seam between monitors and the query engine: SQL text in, Arrow out.

Scheduler actors run their (small, windowed) monitor queries in their own
process: the engine plans them against the warehouse and executes the plan
locally, with no worker pool per scheduler.  Everything else in
``engine.monitors`` calls only ``LocalQueries.sql`` / ``LocalQueries.window``
(or a session's ``sql``), so a change to the query engine's layout touches
this module alone.

Incremental windows (:meth:`LocalQueries.window`): a sliding window mostly
covers segments it covered one slot ago.  Segments are immutable, so the
partial aggregate of a segment that lies wholly inside the window is the
partial aggregate of the *unbounded* query over that segment, whatever the
window's exact bounds; it is cached by (segment id, fingerprint of the
unbounded query).  Only segments that straddle a window edge (read through
the same fragment with the window added to its scan filter), and segments
not seen before, are read; the partials are merged by the plan's own final
step.  The unbounded query is planned once, not at every slot (planning
cost ten times what evaluating a window over cached partials does), and
planned again only when the table's metadata or schema changed.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from engine.query.api import QueryEngine
from engine.query.execution.operators import Execution, concat, execute
from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_locally
from planner.fragments import stage_scan as fragment_scan
from planner.logical import Aggregate, Gather, Plan, Project, Scan
from storage.catalog import Catalog
from storage.objectstore import ObjectStore

CACHE_ENTRIES = 100_000


class LocalQueries:
    """Runs queries of one namespace in this process (snapshot, footer and partial-aggregate caches kept)."""

    def __init__(self, store: ObjectStore, namespace: str, cache_entries: int = CACHE_ENTRIES) -> None:
        self.engine = QueryEngine(store, Catalog(store), namespace)
        self.reader = SegmentReader(store)
        self.partials: collections.OrderedDict[tuple[str, str], pa.Table] = collections.OrderedDict()
        self.cache_entries = cache_entries
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._plans: dict[str, Plan] = {}
        self._pruned: dict[tuple[str, tuple[str, ...]], tuple[Plan, Plan]] = {}

    def sql(self, query: str) -> pa.Table:
        planned = self.engine.plan(query)
        return run_locally(planned.optimized, self.reader)

    def window(self, windowed: str, unbounded: str, start_us: int, end_us: int,
               columns: tuple[str, ...] | None = None) -> pa.Table:
        """``windowed`` (``unbounded`` limited to event times [start_us, end_us)), reusing cached segment partials.

        The unbounded query is planned once (and again when the table's
        metadata or schema changes); each slot only binds its window: the live segments
        overlapping it come from the table's current snapshot, whole ones
        give their cached partials, edge ones are read through the same
        fragment with the window added to its scan filter.
        """
        whole = self._plans.get(unbounded)
        if whole is None:
            if len(self._plans) > 10_000:
                self._plans.clear()
            whole = self._plans[unbounded] = self.engine.plan(unbounded).optimized
        gather = _single_gather(whole)
        scan = fragment_scan(gather.input) if gather is not None else None
        if scan is not None and not _current(scan, self.engine.resolve(scan.source.meta.name)):
            whole = self._plans[unbounded] = self.engine.plan(unbounded).optimized  # the table changed under it
            gather = _single_gather(whole)
            scan = fragment_scan(gather.input) if gather is not None else None
        edge = _window_scan(scan, start_us, end_us) if scan is not None else None
        if edge is None:  # a shape this path does not know: plan the window as a whole
            return self.sql(windowed)
        source = self.engine.resolve(scan.source.meta.name)
        fingerprint = hashlib.sha1(f"{scan.source.meta.path}\n{unbounded}".encode()).hexdigest()
        edge_fragment = _replace_scan(gather.input, scan, edge)
        parts = []
        for segment in source.segments:
            if segment.min_time is not None and (segment.max_time < start_us or segment.min_time >= end_us):
                continue  # outside the window
            inside = segment.min_time is not None and start_us <= segment.min_time and segment.max_time < end_us
            if not inside:
                parts.append(execute(edge_fragment, Execution(reader=self.reader, segments=(segment,))))
                continue
            parts.append(self._partial(gather.input, segment, fingerprint))
        if not parts:
            parts.append(execute(edge_fragment, Execution(reader=self.reader, segments=())))
        try:
            gathered = concat(parts)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # partial shapes differ: plan the window as a whole
            return self.sql(windowed)
        run = Execution(reader=self.reader)
        run.gathered[id(gather)] = gathered
        if columns is not None:  # merge only the states of the columns asked for; the partials stay shared
            key = (unbounded, columns)
            pruned = self._pruned.get(key)
            if pruned is None or pruned[0] is not whole:
                if len(self._pruned) > 10_000:
                    self._pruned.clear()
                pruned = self._pruned[key] = (whole, _only(whole, frozenset(columns)) or whole)
            return execute(pruned[1], run)
        return execute(whole, run)

    def _partial(self, fragment: Plan, segment, fingerprint: str) -> pa.Table:
        key = (segment.id, fingerprint)
        with self._lock:
            cached = self.partials.get(key)
            if cached is not None:
                self.partials.move_to_end(key)
                self.hits += 1
                return cached
        cached = execute(fragment, Execution(reader=self.reader, segments=(segment,)))
        with self._lock:
            self.misses += 1
            self.partials[key] = cached
            while len(self.partials) > self.cache_entries:
                self.partials.popitem(last=False)
        return cached

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


def _current(scan: Scan, source) -> bool:
    """Whether ``scan`` was planned against the table as ``source`` has it now (metadata and schema)."""
    meta, schema = getattr(source, "meta", None), getattr(source, "schema", None)
    return meta == scan.source.meta and schema is not None and schema.equals(scan.source.schema)


def _window_scan(scan: Scan, start_us: int, end_us: int) -> Scan | None:
    """``scan`` also keeping only event times in [start_us, end_us); None if its time column is not a timestamp."""
    meta = scan.source.meta
    names = scan.source.schema.names
    if meta.time_column not in names:
        return None
    kind = scan.source.schema.field(meta.time_column).type
    if not pa.types.is_timestamp(kind):
        return None
    bound = lambda micros: pa.scalar(micros, pa.timestamp("us", tz=kind.tz)).cast(kind)  # noqa: E731
    column = pc.field(meta.time_column)
    window = (column >= bound(start_us)) & (column < bound(end_us))
    text = exp.and_(exp.GTE(this=exp.column(meta.time_column), expression=exp.Literal.number(start_us)),
                    exp.LT(this=exp.column(meta.time_column), expression=exp.Literal.number(end_us)))
    return replace(
        scan,
        filter=exp.and_(scan.filter, text) if scan.filter is not None else text,
        compiled=(scan.compiled & window) if scan.compiled is not None else window,
        time_range=(start_us, end_us - 1),
    )


def _only(plan: Plan, keep: frozenset[str]) -> Plan | None:
    """``plan``'s part above its gather computing only the output columns ``keep``; None where it cannot tell.

    The gather and everything below it are the same objects, so gathered
    partials (looked up by the gather's identity) still apply.
    """
    if isinstance(plan, Project):
        index = [i for i, name in enumerate(plan.names) if name in keep]
        needed = frozenset(column.name for i in index for column in plan.exprs[i].find_all(exp.Column))
        child = _only(plan.input, needed)
        if child is None:
            return None
        compiled = tuple(plan.compiled[i] for i in index) if plan.compiled is not None else None
        return replace(plan, input=child, names=tuple(plan.names[i] for i in index),
                       exprs=tuple(plan.exprs[i] for i in index), compiled=compiled)
    if isinstance(plan, Aggregate) and plan.mode == "final" and isinstance(plan.input, Gather):
        return replace(plan, aggregates=tuple(call for call in plan.aggregates if call.name in keep))
    return None


def _replace_scan(plan: Plan, old: Scan, new: Scan) -> Plan:
    """``plan`` with the scan ``old`` replaced by ``new`` (a fragment is a chain of one-input operators)."""
    if plan is old:
        return new
    child = getattr(plan, "input", None)
    if child is None:
        return plan
    return replace(plan, input=_replace_scan(child, old, new))


def _single_gather(plan: Plan) -> Gather | None:
    """The plan's only exchange, if it has exactly one (a scan below it); else None."""
    gathers = [node for node in plan.walk() if isinstance(node, Gather)]
    return gathers[0] if len(gathers) == 1 else None
