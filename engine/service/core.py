"""The service core that the HTTP API and the Flight SQL endpoint share.

One :class:`Service` per server process holds the warehouse, the token
store, one session per tenant namespace (opened on first use and kept, so
worker pools and snapshot caches stay warm), each tenant's admission gate
and the metrics.  Every call takes the :class:`Tenant` a token resolved to,
and works only in that tenant's namespace, under its limits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import ray

import engine
from engine.monitors.history import TRANSITIONS_TABLE, ShardLog
from engine.runtime import ensure_ray
from engine.service.metrics import ServiceMetrics
from engine.service.tenants import Limits, Tenant, TokenStore
from engine.session import Session
from storage.errors import CommitConflict, LimitExceeded, PetrelError, QueryTooLarge, RejectedRows, TooManyQueries
from storage.objectstore import ObjectStore


LOCAL_STAGE_BYTES = 8 << 20  # a stage over at most this many segment bytes runs in the server (the library default is larger: the server keeps its own share small)


@dataclass(frozen=True)
class ServiceConfig:
    """Where the warehouse is and how sessions are opened; ``auth=False`` serves one namespace without tokens."""

    warehouse: str = "./warehouse"
    storage_options: dict[str, Any] | None = None
    ray_address: str | None = None
    auth: bool = True
    namespace: str = "default"  # the namespace of every request when auth is off
    limits: Limits = Limits()  # the limits of requests when auth is off
    maintenance: bool | None = None
    num_cpus: int | None = None


class Service:
    """Tenants, their sessions and their limits, behind every network way in."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.store = ObjectStore(config.warehouse, config.storage_options)
        self.tokens = TokenStore(self.store)
        self.metrics = ServiceMetrics()
        self._sessions: dict[tuple[str, tuple[str, ...]], Session] = {}
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()
        self.started = time.time()
        self._lateness_seen: dict[tuple[str, str], float] = {}  # (namespace, monitor) -> newest slot observed
        self.metrics.watch_sessions(self.open_sessions)
        # Ray now, on this thread: sessions open on request threads, and a local Ray's processes die with the
        # thread that started them (their parent-death signal is per thread): started from a server's worker
        # thread, Ray went down when the server stopped its threads, and stopping then waited ~30 s on it
        self._started_ray = ensure_ray(config.ray_address, num_cpus=config.num_cpus)

    def open_sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    # -- tenants ----------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Tenant:
        """The tenant behind ``token`` (or the configured namespace when auth is off)."""
        if not self.config.auth:
            return Tenant("open", self.config.namespace, self.config.limits)
        return self.tokens.authenticate(token)

    def cached_tenant(self, token: str | None) -> Tenant | None:
        """The tenant behind ``token`` when that needs no I/O (auth off, or a token seen moments ago), else None."""
        if not self.config.auth:
            return self.authenticate(token)
        return self.tokens.cached(token)

    def session(self, tenant: Tenant) -> Session:
        """The tenant's session, opened once and shared by its requests."""
        key = (tenant.namespace, tenant.table_functions)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = engine.connect(
                    self.config.warehouse, self.config.storage_options, namespace=tenant.namespace,
                    ray_address=self.config.ray_address, num_cpus=self.config.num_cpus,
                    maintenance=self.config.maintenance,
                    table_functions=list(tenant.table_functions) if tenant.table_functions else "off",
                )
                session.queries.local_bytes = LOCAL_STAGE_BYTES
                self._sessions[key] = session
            return session

    @contextlib.contextmanager
    def admit(self, tenant: Tenant) -> Iterator[None]:
        """Hold one of the tenant's query slots, or refuse at once with :class:`TooManyQueries`."""
        limit = tenant.limits.max_concurrent_queries
        with self._lock:
            running = self._running.get(tenant.namespace, 0)
            if running >= limit:
                self.metrics.refused.labels(tenant.namespace, "concurrent_queries").inc()
                raise TooManyQueries(f"namespace {tenant.namespace!r} already runs {running} queries, its limit; "
                                     f"retry in {tenant.limits.retry_after_seconds} s",
                                     tenant.limits.retry_after_seconds)
            self._running[tenant.namespace] = running + 1
        self.metrics.queries_running.labels(tenant.namespace).inc()
        try:
            yield
        finally:
            with self._lock:
                self._running[tenant.namespace] -= 1
            self.metrics.queries_running.labels(tenant.namespace).dec()

    # -- work --------------------------------------------------------------------------
    def query(self, tenant: Tenant, sql: str, dialect: str | None = None, protocol: str = "http") -> pa.Table:
        """Run ``sql`` in the tenant's namespace within its timeout and result limits."""
        with self.admit(tenant):
            started = time.perf_counter()
            try:
                table = self.session(tenant).sql(sql, dialect=dialect, timeout=tenant.limits.query_timeout,
                                                 memory_limit=tenant.limits.max_query_memory)
            except QueryTooLarge:
                self.metrics.refused.labels(tenant.namespace, "query_memory").inc()
                raise
            self.metrics.query_seconds.labels(tenant.namespace, protocol).observe(time.perf_counter() - started)
        self.check_result(tenant, table)
        return table

    def explain(self, tenant: Tenant, sql: str, dialect: str | None = None) -> str:
        with self.admit(tenant):
            return self.session(tenant).explain(sql, dialect=dialect, timeout=tenant.limits.query_timeout,
                                                memory_limit=tenant.limits.max_query_memory)

    def check_result(self, tenant: Tenant, table: pa.Table) -> None:
        limits = tenant.limits
        if table.num_rows > limits.max_result_rows:
            self.metrics.refused.labels(tenant.namespace, "result_rows").inc()
            raise LimitExceeded(f"the result has {table.num_rows} rows, over this tenant's limit of "
                                f"{limits.max_result_rows}; add a LIMIT or aggregate")
        if table.nbytes > limits.max_result_bytes:
            self.metrics.refused.labels(tenant.namespace, "result_bytes").inc()
            raise LimitExceeded(f"the result is {table.nbytes} bytes, over this tenant's limit of "
                                f"{limits.max_result_bytes}; select fewer columns, add a LIMIT or aggregate")

    def ingest(self, tenant: Tenant, table: str, data: Any, batch_id: str | None, fmt: str, body_bytes: int) -> Any:
        """Store ``data`` in the tenant's ``table``; a retried ``batch_id`` is stored once."""
        namespace = tenant.namespace
        started = time.perf_counter()
        try:
            receipt = self.session(tenant).ingest(table, data, batch_id=batch_id)
        except RejectedRows as error:
            self.metrics.rejected.labels(namespace).inc(len(error.rejected))
            raise
        except CommitConflict:
            self.metrics.commit_conflicts.labels(namespace).inc()
            raise
        self.metrics.ingest_seconds.labels(namespace, fmt).observe(time.perf_counter() - started)
        self.metrics.ingested.labels(namespace, fmt).inc(receipt.accepted)
        self.metrics.ingest_bytes.labels(namespace, fmt).inc(body_bytes)
        if receipt.rejected:
            self.metrics.rejected.labels(namespace).inc(len(receipt.rejected))
        return receipt

    def observe_monitors(self) -> None:
        """Feed the monitor metrics from the committed state of the served namespaces' monitors (at a scrape)."""
        now = time.time()
        namespaces = {session.namespace: session for session in self.open_sessions()}
        for namespace, session in sorted(namespaces.items()):
            try:
                meta = session.catalog.table(namespace, TRANSITIONS_TABLE)
                defined = set(session.monitor_log.definitions())
                states: dict[str, Any] = {}
                for shard in range(meta.partitions):
                    log = ShardLog(self.store, meta, shard)
                    log.load()
                    states.update(log.monitor_states())
            except PetrelError:  # no monitor was ever defined here, or the store did not answer: nothing to add
                continue
            evaluated = []
            for name in sorted(defined):
                state = states.get(name)
                if state is None or state.slot is None or state.evaluated_at is None:
                    continue
                evaluated.append(state.evaluated_at)
                if self._lateness_seen.get((namespace, name)) != state.slot:
                    self._lateness_seen[(namespace, name)] = state.slot
                    self.metrics.monitor_lateness.labels(namespace).observe(max(0.0, state.evaluated_at - state.slot))
            self.metrics.monitors.labels(namespace).set(len(defined))
            if evaluated:
                self.metrics.monitor_age.labels(namespace).set(max(0.0, now - min(evaluated)))

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
