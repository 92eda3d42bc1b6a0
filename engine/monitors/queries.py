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
unbounded query).  Only segments that straddle a window edge, and segments
not seen before, are read; the cached and fresh partials are merged by the
windowed plan's own final step.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time

import pyarrow as pa

from engine.execution.local import fragment_scan, run_locally
from engine.execution.operators import Execution, concat, execute
from engine.execution.scan import SegmentReader
from engine.query import QueryEngine
from planner.logical import Gather, Plan
from storage.catalog import Catalog
from storage.objectstore import ObjectStore

CACHE_ENTRIES = 100_000
PLAN_SECONDS = 30.0  # how long the plan of an unbounded query is reused (it only runs over given segments)


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
        self._plans: dict[str, tuple[float, Plan]] = {}

    def sql(self, query: str) -> pa.Table:
        planned = self.engine.plan(query)
        return run_locally(planned.optimized, self.reader)

    def window(self, windowed: str, unbounded: str, start_us: int, end_us: int) -> pa.Table:
        """``windowed`` (``unbounded`` limited to event times [start_us, end_us)), reusing cached segment partials."""
        plan = self.engine.plan(windowed).optimized
        cached_plan = self._plans.get(unbounded)
        if cached_plan is None or time.monotonic() - cached_plan[0] > PLAN_SECONDS:
            if len(self._plans) > 10_000:
                self._plans.clear()
            cached_plan = self._plans[unbounded] = (time.monotonic(), self.engine.plan(unbounded).optimized)
        whole = cached_plan[1]
        gather, whole_gather = _single_gather(plan), _single_gather(whole)
        if gather is None or whole_gather is None:
            return run_locally(plan, self.reader)
        scan = fragment_scan(gather.input)
        if scan is None or not scan.segments:
            return run_locally(plan, self.reader)
        fingerprint = hashlib.sha1(f"{scan.source.meta.path}\n{unbounded}".encode()).hexdigest()
        parts = []
        for segment in scan.segments:
            inside = (segment.min_time is not None and segment.max_time is not None
                      and start_us <= segment.min_time and segment.max_time < end_us)
            if not inside:
                parts.append(execute(gather.input, Execution(reader=self.reader, segments=(segment,))))
                continue
            key = (segment.id, fingerprint)
            with self._lock:
                cached = self.partials.get(key)
                if cached is not None:
                    self.partials.move_to_end(key)
                    self.hits += 1
            if cached is None:
                cached = execute(whole_gather.input, Execution(reader=self.reader, segments=(segment,)))
                with self._lock:
                    self.misses += 1
                    self.partials[key] = cached
                    while len(self.partials) > self.cache_entries:
                        self.partials.popitem(last=False)
            parts.append(cached)
        try:
            gathered = concat(parts)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # partial shapes differ: plan the window as a whole
            return run_locally(plan, self.reader)
        run = Execution(reader=self.reader)
        run.gathered[id(gather)] = gathered
        return execute(plan, run)

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


def _single_gather(plan: Plan) -> Gather | None:
    """The plan's only exchange, if it has exactly one (a scan below it); else None."""
    gathers = [node for node in plan.walk() if isinstance(node, Gather)]
    return gathers[0] if len(gathers) == 1 else None
