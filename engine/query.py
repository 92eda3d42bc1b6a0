"""Queries for a session: ``sql()`` and ``explain()``.

The :class:`QueryEngine` resolves table names to snapshots (cached, and
revalidated with one listing per partition, so an unchanged table costs no
metadata reads), plans with :mod:`planner`, and runs the plan on the
session's worker pool, which it starts when the first plan runs (planning
alone, a plain EXPLAIN or a syntax error, starts no worker) and keeps.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pyarrow as pa

from engine.coordinator import QueryStats, WorkerPool, pool_size, run_plan
from planner.context import PlanContext
from planner.explain import explain as render_explain
from engine.external import as_arrow
from planner.fragments import TARGET_FRAGMENT_BYTES
from planner.logical import Memory, TableSource
from planner.planning import QueryPlan, plan_query
from planner.qualify import TableFunction
from storage.catalog import Catalog, TableMeta, validate_name
from storage.errors import QueryTimeout, TableNotFound
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.snapshot import load_snapshot

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
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()
        self._meta: dict[str, tuple[TableMeta, float]] = {}
        self._sources: dict[str, tuple[tuple[int, ...], TableSource]] = {}
        self.registered: dict[str, pa.Table] = {}
        self.broadcast_bytes = PlanContext.broadcast_bytes

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
        if name is None:
            self._meta.clear()
            self._sources.clear()
        else:
            self._meta.pop(name, None)
            self._sources.pop(name, None)

    def register(self, name: str, data: Any) -> None:
        """Make ``data`` (pyarrow Table or pandas DataFrame) queryable as table ``name``."""
        self.registered[validate_name(name, "table")] = as_arrow(data)

    def unregister(self, name: str) -> None:
        self.registered.pop(name, None)

    def resolve(self, name: str) -> TableSource | Memory:
        """The table as of its latest snapshot (reused while no partition moved)."""
        if name in self.registered:
            return Memory(name, self.registered[name])
        try:
            meta = self.meta(name)
        except TableNotFound:
            self.forget(name)
            raise
        latest = tuple(self._latest_version(meta, p) for p in range(meta.partitions))
        cached = self._sources.get(name)
        if cached is not None and cached[0] == latest and cached[1].meta == meta:
            return cached[1]
        snapshot = load_snapshot(self.store, meta)
        schema = snapshot.schema
        if not schema.names and meta.schema is not None:
            schema = meta.schema
        source = TableSource(meta, schema, snapshot.segments, dict(snapshot.versions))
        self._sources[name] = (tuple(snapshot.versions.get(p, -1) for p in range(meta.partitions)), source)
        return source

    def _latest_version(self, meta: TableMeta, partition: int) -> int:
        commits, checkpoints = PartitionLog(self.store, meta.path, partition).versions()
        return max(commits[-1] if commits else -1, checkpoints[-1] if checkpoints else -1)

    # -- queries --------------------------------------------------------------------------
    @property
    def pool(self) -> WorkerPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = WorkerPool(self.store, self.workers)
            return self._pool

    def plan(self, query: str, dialect: str | None = None) -> QueryPlan:
        """Plan ``query``; this starts no worker (the pool starts when a plan first runs)."""
        with self._pool_lock:
            workers = len(self._pool.names) if self._pool is not None else pool_size(self.workers)
        context = PlanContext(broadcast_bytes=self.broadcast_bytes, buckets=workers)
        return plan_query(query, self.resolve, self.namespace, dialect, context, self.table_function)

    def sql(self, query: str, dialect: str | None = None, timeout: float | None = None) -> pa.Table:
        """Run ``query``; an ``EXPLAIN [ANALYZE]`` query returns its plan as a one-column table."""
        started = time.monotonic()
        planned = self.plan(query, dialect)
        if planned.statement.explain:
            text = self._explain(planned, planned.statement.analyze, timeout, started)
            return pa.table({"explain": pa.array(text.split("\n"), pa.string())})
        table, _ = self._run(planned, timeout, started)
        return table

    def explain(self, query: str, analyze: bool = False, dialect: str | None = None, timeout: float | None = None) -> str:
        started = time.monotonic()
        planned = self.plan(query, dialect)
        return self._explain(planned, analyze or planned.statement.analyze, timeout, started)

    def _explain(self, planned: QueryPlan, analyze: bool, timeout: float | None, started: float) -> str:
        analysis = None
        if analyze:
            _, stats = self._run(planned, timeout, started)
            analysis = _as_dict(stats)
        return render_explain(planned.logical, planned.optimized, analysis)

    def _run(self, planned: QueryPlan, timeout: float | None, started: float) -> tuple[pa.Table, QueryStats]:
        timeout = timeout if timeout is not None else self.timeout
        planning = time.monotonic() - started
        if timeout is not None and planning > timeout:
            raise QueryTimeout(f"the query ran over its timeout of {timeout:g} s while being planned; pass a larger timeout=")
        table, stats = run_plan(planned.optimized, self.pool, timeout, started, self.fault_delay, self.fragment_bytes)
        stats.planning_seconds = planning
        return table, stats

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _as_dict(stats: QueryStats) -> dict[str, Any]:
    return dataclasses.asdict(stats)
