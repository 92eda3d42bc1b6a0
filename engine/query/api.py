"""The query API a session calls: ``sql()`` and ``explain()``.

The :class:`QueryEngine` resolves table names to snapshots (kept per table
and refreshed by reading only the commits made since, so an unchanged
table costs one probe per partition), plans with :mod:`planner`, and runs the plan on the
session's worker pool, which it starts when the first plan needs it
(planning alone, a plain EXPLAIN or a syntax error, starts no worker) and
keeps.  A stage estimated to read under ``local_bytes`` of stored column
bytes runs in this process with the engine's own segment reader (whose
footer cache is kept for the session): for small reads a Ray round trip
costs more than the scan.  Set ``local_bytes = 0`` to send every stage to
the workers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pyarrow as pa

from engine.collector import freeze_long_lived
from engine.external import as_arrow
from engine.query.execution.scan import SegmentReader
from engine.query.plans import PlanCache
from engine.query.scheduler import LOCAL_BYTES, run_plan
from engine.query.stats import QueryStats
from engine.query.workers import WorkerPool, pool_size
from planner.context import PlanContext
from planner.explain import explain as render_explain
from planner.fragments import TARGET_FRAGMENT_BYTES
from planner.logical import Memory, TableSource
from planner.planning import QueryPlan, plan_query
from planner.qualify import TableFunction
from storage.catalog import Catalog, TableMeta, validate_name
from storage.errors import QueryFailed, QueryTimeout, SegmentMissing, TableNotFound
from storage.objectstore import ObjectStore
from storage.snapshot import LiveSnapshot, Snapshot

META_SECONDS = 5.0


class QueryEngine:
    """Plans and runs queries against one namespace of one warehouse."""

    def __init__(
        self,
        store: ObjectStore,
        catalog: Catalog,
        namespace: str,
        timeout: float | None = None,
        workers: int | None = None,
        table_function: TableFunction | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.namespace = namespace
        self.timeout = timeout
        self.workers = workers
        self.table_function = table_function  # reads read_parquet()/read_csv()/read_json(); checked by the session
        self.fault_delay = 0.0  # seconds each fragment waits before running; for fault-injection tests
        self.fragment_bytes = TARGET_FRAGMENT_BYTES  # segment bytes per fragment
        self.local_bytes = LOCAL_BYTES  # a stage estimated to read less runs in this process (0: never)
        self._reader: SegmentReader | None = None
        self.plans = PlanCache()  # plans of queries asked again over unchanged tables (size 0: plan every time)
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()
        self.footer_lookups = 0  # segment footers the queries of this engine needed (for /metrics)
        self.footer_hits = 0  # of which the workers' footer cache already held
        self._planned_workers: int | None = None
        self._meta: dict[str, tuple[TableMeta, float]] = {}
        self._live: dict[str, LiveSnapshot] = {}
        self._sources: dict[str, tuple[Snapshot, TableSource]] = {}
        self.registered: dict[str, pa.Table] = {}
        self.broadcast_bytes = PlanContext.broadcast_bytes
        self.memory_limit: int | None = None  # bytes a query may hold per process (None: unbounded); see sql()

    # -- tables ---------------------------------------------------------------------
    def meta(self, name: str) -> TableMeta:
        cached = self._meta.get(name)
        if cached is not None and time.monotonic() - cached[1] < META_SECONDS:
            return cached[0]
        meta = self.catalog.table(self.namespace, name)
        self._meta[name] = (meta, time.monotonic())
        return meta

    def forget(self, name: str | None = None) -> None:
        """Drop cached metadata (of one table, or all)."""
        self.plans.clear()
        if name is None:
            self._meta.clear()
            self._live.clear()
            self._sources.clear()
        else:
            self._meta.pop(name, None)
            self._live.pop(name, None)
            self._sources.pop(name, None)

    def register(self, name: str, data: Any) -> None:
        """Make ``data`` (pyarrow Table or pandas DataFrame) queryable as table ``name``."""
        self.registered[validate_name(name, "table")] = as_arrow(data)
        self.plans.clear()

    def resolve(self, name: str) -> TableSource | Memory:
        """The table as of its latest snapshot (refreshed by reading only the commits made since the last query)."""
        if name in self.registered:
            return Memory(name, self.registered[name])
        try:
            meta = self.meta(name)
        except TableNotFound:
            self.forget(name)
            raise
        live = self._live.get(name)
        if live is None or live.meta != meta:
            live = self._live[name] = LiveSnapshot(self.store, meta)
        snapshot = live.refresh()
        cached = self._sources.get(name)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        schema = snapshot.schema
        if not schema.names and meta.schema is not None:
            schema = meta.schema
        source = TableSource(meta, schema, snapshot.segments, dict(snapshot.versions))
        self._sources[name] = (snapshot, source)
        freeze_long_lived()  # a new snapshot's many manifest entries among them
        return source

    # -- queries --------------------------------------------------------------------------
    @property
    def pool(self) -> WorkerPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = WorkerPool(self.store, self.workers)
            return self._pool

    @property
    def reader(self) -> SegmentReader:
        """The segment reader of the stages run in this process (footers cached for the session)."""
        with self._pool_lock:
            if self._reader is None:
                self._reader = SegmentReader(self.store)
            return self._reader

    def plan(self, query: str, dialect: str | None = None) -> QueryPlan:
        """Plan ``query``; this starts no worker (the pool starts when a plan first runs)."""
        with self._pool_lock:
            if self._pool is not None:
                workers = len(self._pool.names)
            else:  # asking the cluster costs milliseconds: once per session
                if self._planned_workers is None:
                    self._planned_workers = pool_size(self.workers)
                workers = self._planned_workers
        context = PlanContext(broadcast_bytes=self.broadcast_bytes, buckets=workers)
        key = (query, dialect, self.namespace, self.broadcast_bytes, workers, id(self.table_function))
        return self.plans.plan(key, query, self.resolve, lambda resolve: plan_query(
            query, resolve, self.namespace, dialect, context, self.table_function, self._rows_of))

    def _rows_of(self, planned: QueryPlan) -> pa.Table:
        """The rows of a plan the planner needs run first (a round of a recursive CTE)."""
        return self._run(planned, None, time.monotonic())[0]

    def sql(self, query: str, dialect: str | None = None, timeout: float | None = None,
            memory_limit: int | None = None) -> pa.Table:
        """Run ``query``; an ``EXPLAIN [ANALYZE]`` query returns its plan as a one-column table.

        ``memory_limit`` (else the engine's ``memory_limit``) bounds the bytes the
        query holds in any one process; past it, :class:`QueryTooLarge`.
        """
        started = time.monotonic()
        planned = self.plan(query, dialect)
        if planned.statement.explain:
            text = self._explain(planned, planned.statement.analyze, timeout, started, memory_limit)
            return pa.table({"explain": pa.array(text.split("\n"), pa.string())})
        try:
            table, _ = self._run(planned, timeout, started, memory_limit)
        except SegmentMissing:
            # The snapshot was read before a vacuum took one of its removed segments (a reader whose cached
            # snapshot fell behind).  Nothing was returned yet, so the query runs once more on the latest
            # snapshot: its answer is then that of a snapshot taken while it ran.  Still missing there, the
            # segment is lost (the table is damaged) and SegmentMissing stands.
            self.forget()
            table, _ = self._run(self.plan(query, dialect), timeout, started, memory_limit)
        return table

    def explain(self, query: str, analyze: bool = False, dialect: str | None = None, timeout: float | None = None,
                memory_limit: int | None = None) -> str:
        started = time.monotonic()
        planned = self.plan(query, dialect)
        return self._explain(planned, analyze or planned.statement.analyze, timeout, started, memory_limit)

    def _explain(self, planned: QueryPlan, analyze: bool, timeout: float | None, started: float,
                 memory_limit: int | None = None) -> str:
        analysis = None
        if analyze:
            _, stats = self._run(planned, timeout, started, memory_limit)
            analysis = stats.as_dict()
        return render_explain(planned.logical, planned.optimized, analysis)

    def _run(self, planned: QueryPlan, timeout: float | None, started: float,
             memory_limit: int | None = None) -> tuple[pa.Table, QueryStats]:
        timeout = timeout if timeout is not None else self.timeout
        memory_limit = memory_limit if memory_limit is not None else self.memory_limit
        planning = time.monotonic() - started
        if timeout is not None and planning > timeout:
            raise QueryTimeout(f"the query ran over its timeout of {timeout:g} s while being planned; pass a larger timeout=")
        try:
            table, stats = run_plan(planned.optimized, lambda: self.pool, timeout, started, self.fault_delay,
                                    self.fragment_bytes, self.reader, self.local_bytes, memory_limit)
        except pa.ArrowException as error:  # an expression failed on the data here (a division by zero)
            raise QueryFailed(f"the query failed on its data: {str(error).splitlines()[0]}") from None
        stats.planning_seconds = planning
        fragments = [f for stage in stats.stages for f in stage.fragments]
        with self._pool_lock:
            self.footer_lookups += sum(f["segments"] for f in fragments)
            self.footer_hits += sum(f["footer_hits"] for f in fragments)
        return table, stats

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
