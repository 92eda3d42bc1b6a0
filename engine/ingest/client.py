"""The client side of ingestion: from ``session.ingest(...)`` to acknowledged commits.

One call fits the batch to the table (:meth:`TableClient.fit`: parse,
normalize, record any schema change first — see ``storage.schema_log`` —
and refuse rows already past retention), routes its rows
(:meth:`TableClient.slices`, see ``router``), and delivers each partition's
slice to that partition's owner in parallel (see ``deliver``), together with
the rejected rows for the namespace's rejected-rows table.  It returns when
every slice is committed.  Owners are named Ray actors, one per (table,
partition), so every session on a cluster talks to the same owner; Ray
restarts a dead one, which claims a higher epoch and rebuilds its state from
the log.  ``close()`` stops the owners a session used (others reach new
ones by name when they retry).  A call that meets a dead or restarting
owner, or a failed flush, retries with the same batch id, which the owners
acknowledge without writing twice.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray

from engine.ingest.actor import IngestActor
from engine.ingest.deliver import OwnerChannel, Pending, Slice, deliver
from engine.ingest.expired import split_expired
from engine.ingest.normalize import DEFAULT_MAX_ROW_BYTES, Normalized, normalize
from engine.ingest.offsets import Offset
from engine.ingest.owner import IngestConfig
from engine.ingest.parse import parse
from engine.ingest.rejected import REJECTED_TABLE, ensure_rejected_table, rejected_batch_id, rejected_rows
from engine.ingest.router import partitions_of, split
from engine.ingest.transfer import SHARED_MIN_BYTES, SharedArea, SharedRows, discard, pack
from engine.ingest.transform import apply_transform
from storage.catalog import Catalog, TableMeta
from storage.errors import CommitConflict, RejectedRows
from storage.objectstore import ObjectStore
from storage.schema_log import TableSchemaLog

ACTOR_NAMESPACE = "petrel"
META_REFRESH_SECONDS = 30.0
SENT_MEMORY = 100_000  # batch ids whose first attempt a session remembers, to stamp a retry with it


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
    memory rather than Ray's object store (see ``transfer``); ``actor``:
    how the owners this session starts buffer.
    """

    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    timeout: float = 120.0
    max_attempts: int = 30
    actor: IngestConfig = IngestConfig()
    shared_memory: bool = True


def owner_name(store: ObjectStore, meta: TableMeta) -> str:
    """The Ray name prefix of a table's owner actors: one per table, however its warehouse is spelled.

    It is built from the store's canonical location (``./wh`` and ``/abs/wh``
    must not give a partition two owners) and the table's creation time (a
    table dropped and created again gets new owners).
    """
    identity = f"{store.location}|{meta.path}|{meta.created_at!r}"
    return "ingest-" + hashlib.sha1(identity.encode()).hexdigest()[:20]


class TableClient:
    """Everything a session needs to write one table: fitting batches, its owners, and the evolving schema."""

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
        self._channels: dict[int, OwnerChannel] = {}
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

    def claim(self, partition: int) -> None:
        """Give the partition a new owner, which claims it under a higher epoch (fencing any other)."""
        handle = self.owner(partition)
        ray.kill(handle, no_restart=False)  # Ray starts it again; the new one claims as it starts
        self.forget(partition)

    def send(self, item: Slice) -> Pending:
        """Hand ``item`` to its partition's channel (its rows packed for the way, the first time)."""
        if item.data is None:
            item.data = self._package(item.partition, item.rows)
        channel = self._channels.get(item.partition)
        if channel is None:
            with self._lock:
                channel = self._channels.get(item.partition)
                if channel is None:
                    partition = item.partition
                    channel = OwnerChannel(lambda: self.owner(partition), f"ingest-{self.meta.name}-{partition}")
                    self._channels[partition] = channel
        return channel.send(item.batch_id, item.data, item.offsets, item.urgent, item.first_sent)

    def _package(self, partition: int, rows: pa.Table) -> pa.Buffer | SharedRows:
        if self._shared is not None and partition not in self._remote and rows.nbytes >= SHARED_MIN_BYTES:
            shared = self._shared.write(rows)
            if shared is not None:
                return shared
        return pack(rows)

    def not_shared(self, item: Slice) -> None:
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

    def slices(
        self, result: Normalized, batch_id: str, offsets: tuple[Offset, ...] = (), every_partition: bool = False,
        urgent: bool = False,
    ) -> list[Slice]:
        """``result``'s rows routed to partitions, one slice each, under ``batch_id``.

        ``every_partition``: send a slice (maybe empty) to every partition,
        so each one's log records ``offsets`` — how a replayable source
        learns per partition how far it got.
        """
        partitions = self.meta.partitions
        targets = partitions_of(result.table, result.rows, result.total, partitions, batch_id, self.meta.routing_key)
        parts = split(result.table, targets, partitions)
        if every_partition:
            empty = result.table.schema.empty_table()
            parts = {p: parts.get(p, empty) for p in range(partitions)}
        return [Slice(self, p, batch_id, t, offsets, urgent) for p, t in parts.items()]

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for handle in self._owners.values():
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        self._owners.clear()


class Ingestion:
    """A session's ingestion: a client per table, and delivery with retries."""

    def __init__(self, store: ObjectStore, catalog: Catalog, namespace: str, options: IngestOptions | None = None):
        self.store = store
        self.catalog = catalog
        self.namespace = namespace
        self.options = options or IngestOptions()
        self.shared = SharedArea()
        self._clients: dict[str, TableClient] = {}
        self._sent: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def client(self, table: str) -> TableClient:
        """The client of ``table`` (made on first use)."""
        client = self._clients.get(table)
        if client is None:
            meta = self.catalog.table(self.namespace, table)
            client = self._clients[table] = TableClient(self.store, meta, self.options, self.shared)
        return client

    def rejected_client(self) -> TableClient:
        """The client of the namespace's rejected-rows table (made on first use)."""
        if REJECTED_TABLE not in self._clients:
            ensure_rejected_table(self.catalog, self.namespace)
        return self.client(REJECTED_TABLE)

    def rejected_slice(
        self, table: str, batch_id: str, result: Normalized, now_us: int, offsets: tuple[Offset, ...] = (),
        urgent: bool = False,
    ) -> Slice:
        """The slice that stores ``result``'s rejected rows (for ``table``, under ``batch_id``)."""
        rejects = rejected_rows(table, batch_id, result, now_us)
        return Slice(self.rejected_client(), 0, rejected_batch_id(table, batch_id), rejects, offsets, urgent)

    def ingest(
        self, table: str, data: Any, batch_id: str | None = None, first_sent: float | None = None
    ) -> Receipt:
        """Store ``data`` in ``table``; returns after every accepted row is committed.

        ``first_sent`` (seconds since the epoch): when a retried batch was
        first sent, if not through this session (which remembers the batch
        ids it sent recently); a retry the owners can no longer check for
        duplicates is refused with :class:`~storage.errors.DedupExpired`.
        """
        batch_id = batch_id or uuid.uuid4().hex
        first_sent = self._first_sent(table, batch_id, first_sent)
        client = self.client(table)
        now_us = time.time_ns() // 1000
        result = client.fit(data, now_us)
        slices = client.slices(result, batch_id)
        if result.rejected:
            slices.append(self.rejected_slice(table, batch_id, result, now_us))
        for item in slices:
            item.first_sent = first_sent
        self.deliver(slices)
        if result.rejected and result.accepted == 0:
            first_row, first_reason = result.rejected[0]
            raise RejectedRows(
                f"all {len(result.rejected)} rows of batch {batch_id} for {self.namespace}.{table} were rejected "
                f"(row {first_row}: {first_reason}); they are kept in {self.namespace}.{REJECTED_TABLE}",
                result.rejected,
            )
        return Receipt(result.accepted, result.rejected, batch_id)

    def _first_sent(self, table: str, batch_id: str, given: float | None) -> float | None:
        """When ``batch_id`` was first sent to ``table`` (None: this is its first attempt), remembered from now."""
        key = (table, batch_id)
        with self._lock:
            known = self._sent.get(key)
            if known is None:
                self._sent[key] = given if given is not None else time.time()
                while len(self._sent) > SENT_MEMORY:
                    self._sent.popitem(last=False)
        if known is not None and given is not None:
            return min(known, given)
        return known if known is not None else given

    def deliver(self, slices: list[Slice], timeout: float | None = None) -> None:
        """Send every slice to its owner and wait for the commits, retrying what can be retried."""
        deliver(slices, self.options.timeout if timeout is None else timeout, self.options.max_attempts)

    def close(self) -> None:
        """Stop the owner actors this session used."""
        for client in self._clients.values():
            client.stop()
        self._clients.clear()
        self.shared.close()
