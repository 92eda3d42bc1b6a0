"""The client side of ingestion: from ``session.ingest(...)`` to acknowledged commits.

One call parses and fits the batch to the table (recording any schema change
first, see ``schema_log``), routes its rows, and sends each partition's slice
to that partition's owner in parallel (through the owner's courier, which
carries the appends of all the session's threads, many to a Ray call),
together with the rejected rows for the namespace's rejected-rows table.
It returns when every slice is committed.  Owners are named Ray actors, one
per (table, partition), so every session on a cluster talks to the same
owner; Ray restarts a dead one, which claims a higher epoch and rebuilds its
state from the log.  ``close()`` stops the owners a session used (others
reach new ones by name when they retry).  A call that meets a dead,
restarting or fenced owner retries with the same batch id, which the owners
acknowledge without writing twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from engine.ingest.actor import IngestActor, IngestConfig
from engine.ingest.courier import Courier, Ticket
from engine.ingest.handoff import SHARED_MIN_BYTES, SharedArea, SharedRows, discard, pack
from engine.ingest.normalize import DEFAULT_MAX_ROW_BYTES, Normalized, normalize
from engine.ingest.parse import parse
from engine.ingest.rejected import REJECTED_TABLE, rejected_batch_id, rejected_rows
from engine.ingest.router import partitions_of, split
from engine.ingest.schema_log import TableSchemaLog
from engine.ingest.transform import apply_transform
from engine.maintenance.retention import split_expired
from storage.catalog import Catalog, TableMeta
from storage.errors import (
    CommitConflict,
    Fenced,
    FlushFailed,
    IngestError,
    IngestTimeout,
    RejectedRows,
    SharedRowsMissing,
)
from storage.objectstore import ObjectStore

ACTOR_NAMESPACE = "petrel"
_RETRYABLE = (RayActorError, Fenced, FlushFailed)
META_REFRESH_SECONDS = 30.0


@dataclass(frozen=True)
class Receipt:
    """What an ingest call stored: rows accepted, (row, reason) per refused row, and its batch id."""

    accepted: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    batch_id: str = ""


@dataclass(frozen=True)
class IngestOptions:
    """Client-side limits (row size, retries, the overall time an ingest call may take) and transport.

    ``shared_memory``: hand rows to owners on this machine through shared
    memory rather than Ray's object store (see ``handoff``).
    """

    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    timeout: float = 120.0
    max_attempts: int = 30
    actor: IngestConfig = IngestConfig()
    shared_memory: bool = True


@dataclass
class _Slice:
    """One partition's part of one batch, on its way to the owner."""

    writer: TableWriter
    partition: int
    batch_id: str
    rows: pa.Table
    offsets: dict[str, Any] | None = None
    urgent: bool = False
    written: int | None = None
    data: pa.Buffer | SharedRows | None = None  # the rows as they travel, made when first sent


def owner_name(store: ObjectStore, meta: TableMeta) -> str:
    """The Ray name prefix of a table's owner actors: one per table, however its warehouse is spelled.

    It is built from the store's canonical location (``./wh`` and ``/abs/wh``
    must not give a partition two owners) and the table's creation time (a
    table dropped and created again gets new owners).
    """
    identity = f"{store.location}|{meta.path}|{meta.created_at!r}"
    return "ingest-" + hashlib.sha1(identity.encode()).hexdigest()[:20]


class TableWriter:
    """Everything a session needs to write one table: owners and the evolving schema."""

    def __init__(
        self, store: ObjectStore, meta: TableMeta, options: IngestOptions, shared: SharedArea | None = None
    ) -> None:
        self.store = store
        self.meta = meta
        self._meta_read = time.monotonic()
        self.options = options
        self.declared = frozenset(meta.schema.names) if meta.schema is not None else frozenset()
        self.schema_log = TableSchemaLog(store, meta)
        self.schema_version, self.schema = self.schema_log.load()
        self._owners: dict[int, Any] = {}
        self._couriers: dict[int, Courier] = {}
        self._lock = threading.Lock()
        self._name = owner_name(store, meta)
        self._shared = shared if options.shared_memory else None
        self._remote: set[int] = set()  # partitions whose owner cannot read this machine's shared memory
        self._transform: Any = None  # the table's ingest transform, compiled (planner.transform.Transform)

    def owner(self, partition: int):
        """The handle of the partition's owner actor, started if there is none."""
        handle = self._owners.get(partition)
        if handle is None:
            handle = (
                ray.remote(IngestActor)
                .options(
                    name=f"{self._name}-{partition}",
                    namespace=ACTOR_NAMESPACE,
                    get_if_exists=True,
                    lifetime="detached",  # a shared service: not tied to the handle of whoever started it
                    max_restarts=-1,
                    max_task_retries=0,
                    num_cpus=0,
                    max_concurrency=10_000,
                )
                .remote(self.store, self.meta, partition, self.options.actor)
            )
            self._owners[partition] = handle
        return handle

    def forget(self, partition: int) -> None:
        self._owners.pop(partition, None)
        self._remote.discard(partition)  # its successor may run on this machine

    def send(self, item: _Slice) -> Ticket:
        """Hand ``item`` to its partition's courier (its rows packed for the way, the first time)."""
        if item.data is None:
            item.data = self._package(item.partition, item.rows)
        courier = self._couriers.get(item.partition)
        if courier is None:
            with self._lock:
                courier = self._couriers.get(item.partition)
                if courier is None:
                    partition = item.partition
                    courier = Courier(lambda: self.owner(partition), f"courier-{self.meta.name}-{partition}")
                    self._couriers[partition] = courier
        return courier.send(item.batch_id, item.data, item.offsets, item.urgent)

    def _package(self, partition: int, rows: pa.Table) -> pa.Buffer | SharedRows:
        if self._shared is not None and partition not in self._remote and rows.nbytes >= SHARED_MIN_BYTES:
            shared = self._shared.write(rows)
            if shared is not None:
                return shared
        return pack(rows)

    def not_shared(self, item: _Slice) -> None:
        """``item``'s owner cannot read shared memory: its rows, and the partition's from now on, go through Ray."""
        self._remote.add(item.partition)
        discard(item.data)
        item.data = None

    def fit(self, data: Any, now_us: int) -> Normalized:
        """Parse and fit ``data``; a schema change is recorded before any row is written.

        Rows already past the table's retention period are rejected with the reason.
        """
        result = self._fit(data, now_us)
        kept, rows, expired = split_expired(result.table, self.current_meta(), result.rows, now_us / 1e6)
        if not expired:
            return result
        return dataclasses.replace(result, table=kept, rows=rows, rejected=sorted(result.rejected + expired))

    def current_meta(self, refresh: bool = False) -> TableMeta:
        """The table's metadata, re-read now and then so a changed retention applies."""
        if refresh or time.monotonic() - self._meta_read > META_REFRESH_SECONDS:
            self.meta = Catalog(self.store).table(self.meta.namespace, self.meta.name)
            self._meta_read = time.monotonic()
        return self.meta

    def _fit(self, data: Any, now_us: int) -> Normalized:
        parsed = parse(data, self.options.max_row_bytes, self.schema, self.meta.time_column)
        if self.current_meta().transform:
            parsed = apply_transform(self.transform(), parsed)
        while True:
            result = normalize(
                parsed,
                time_column=self.meta.time_column,
                schema=self.schema,
                declared=self.declared,
                now_us=now_us,
                max_row_bytes=self.options.max_row_bytes,
            )
            if result.accepted == 0 or (self.schema is not None and result.schema.equals(self.schema)):
                return result
            try:
                self.schema_version = self.schema_log.propose(self.schema_version, result.schema)
                self.schema = result.schema
                return result
            except CommitConflict:
                self.schema_version, self.schema = self.schema_log.load()

    def transform(self) -> Any:
        """The table's transform, compiled once per version of its text."""
        text = self.meta.transform
        if self._transform is None or self._transform.sql != text:
            from planner.transform import Transform

            self._transform = Transform(text)
        return self._transform

    def slices(self, result: Normalized, batch_id: str) -> list[_Slice]:
        targets = partitions_of(
            result.table, result.rows, result.total, self.meta.partitions, batch_id, self.meta.routing_key
        )
        return [_Slice(self, p, batch_id, t) for p, t in split(result.table, targets, self.meta.partitions).items()]

    def stop(self) -> None:
        for courier in self._couriers.values():
            courier.close()
        self._couriers.clear()
        for handle in self._owners.values():
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        self._owners.clear()


class Ingestion:
    """A session's ingestion: table writers by name, and delivery with retries."""

    def __init__(self, store: ObjectStore, catalog: Catalog, namespace: str, options: IngestOptions | None = None):
        self.store = store
        self.catalog = catalog
        self.namespace = namespace
        self.options = options or IngestOptions()
        self.shared = SharedArea()
        self._writers: dict[str, TableWriter] = {}

    def writer(self, table: str) -> TableWriter:
        writer = self._writers.get(table)
        if writer is None:
            meta = self.catalog.table(self.namespace, table)
            writer = self._writers[table] = TableWriter(self.store, meta, self.options, self.shared)
        return writer

    def rejected_writer(self) -> TableWriter:
        if REJECTED_TABLE not in self._writers:
            from engine.ingest.rejected import ensure_rejected_table

            ensure_rejected_table(self.catalog, self.namespace)
        return self.writer(REJECTED_TABLE)

    def ingest(self, table: str, data: Any, batch_id: str | None = None) -> Receipt:
        """Store ``data`` in ``table``; returns after every accepted row is committed."""
        batch_id = batch_id or uuid.uuid4().hex
        writer = self.writer(table)
        now_us = time.time_ns() // 1000
        result = writer.fit(data, now_us)
        slices = writer.slices(result, batch_id)
        if result.rejected:
            rejects = rejected_rows(table, batch_id, result, now_us)
            slices += [_Slice(self.rejected_writer(), 0, rejected_batch_id(table, batch_id), rejects)]
        self.deliver(slices)
        if result.rejected and result.accepted == 0:
            first_row, first_reason = result.rejected[0]
            raise RejectedRows(
                f"all {len(result.rejected)} rows of batch {batch_id} for {self.namespace}.{table} were rejected "
                f"(row {first_row}: {first_reason}); they are kept in {self.namespace}.{REJECTED_TABLE}",
                result.rejected,
            )
        return Receipt(result.accepted, result.rejected, batch_id)

    def deliver(self, slices: list[_Slice], timeout: float | None = None) -> None:
        """Send every slice to its owner and wait for the commits, retrying what can be retried."""
        try:
            self._deliver(slices, time.monotonic() + (timeout if timeout is not None else self.options.timeout))
        finally:
            for item in slices:
                discard(item.data)

    def _deliver(self, slices: list[_Slice], deadline: float) -> None:
        pending = list(slices)
        last_error: BaseException | None = None
        for attempt in range(self.options.max_attempts):
            tickets = [item.writer.send(item) for item in pending]
            failed, wait = [], False
            for item, ticket in zip(pending, tickets):
                try:
                    item.written = ticket.result(deadline)
                except GetTimeoutError:
                    raise IngestTimeout(
                        f"batch {item.batch_id} for {item.writer.meta.namespace}.{item.writer.meta.name} was not "
                        f"committed within {self.options.timeout:g} s; retry it with the same batch id"
                    ) from None
                except SharedRowsMissing:  # nothing was buffered: send it through Ray at once
                    item.writer.not_shared(item)
                    failed.append(item)
                except _RETRYABLE as exc:
                    if isinstance(exc, RayActorError) and not isinstance(exc, (Fenced, FlushFailed)):
                        item.writer.forget(item.partition)  # dead, or its name points at a gone actor
                    last_error = exc
                    failed.append(item)
                    wait = True
            if not failed:
                return
            pending = failed
            if time.monotonic() >= deadline:
                break
            if wait:
                time.sleep(min(2.0, 0.05 * 2**attempt, max(0.0, deadline - time.monotonic())))
        raise IngestError(
            f"{len(pending)} part(s) of batch {pending[0].batch_id} could not be committed after "
            f"{self.options.max_attempts} attempts (last error: {last_error}); retry with the same batch id"
        ) from last_error

    def close(self) -> None:
        """Stop the owner actors this session used."""
        for writer in self._writers.values():
            writer.stop()
        self._writers.clear()
        self.shared.close()
