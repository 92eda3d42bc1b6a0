"""The consumer of one lane: pull, fit, store through the partition owners, then acknowledge.

Exactly once, per table:

1. **Watermarks.**  A lane's key (``SourceSpec.lane_key``) has, in every
   partition it writes to, a :class:`~engine.ingest.offsets.StreamBatch`
   record ``{"last": L, "first": F, "rejected": R}``: everything of the lane
   through sequence L that belongs in that partition is committed there, in
   the same commit as the rows (the ingest owner commits a slice's offsets
   with its segments, as file ingestion does).  The rejected-rows table keeps the lane's rejections the
   same way.  A consumer starts by reading these watermarks and opens the
   lane at the lowest one plus one (or at F of a batch whose rejections did
   not land).
2. **Batches.**  It gathers messages (up to ``max_messages`` or
   ``max_wait``), parses them (a message is one JSON event or JSON lines),
   applies the table's transform, and routes each row: without a routing
   key to the lane's own partition (``lane mod partitions``), with one by its
   hash, to every partition (empty slices too, so every watermark moves).
   A row whose sequence is at or below its target's watermark is dropped:
   it is stored already.  Each slice carries the batch id ``<key>@F`` and
   the offset, and is flushed at once.  The next batch is fetched and
   fitted while one commits, but sent only after it is stored.
3. **Acknowledgement.**  Only after every slice (and the rejections) is
   committed are the messages acknowledged to the broker.  One batch is in
   flight at a time, so a lane's commits reach each partition in order;
   when the owners fall behind, delivery waits and fetching waits with it —
   the broker keeps what is not yet read, nothing is dropped.
4. **A killed consumer.**  Ray restarts the actor; its predecessor may have
   left a slice buffered in an owner.  The successor's first batch starts
   where its predecessor's last one did, so it has the same batch id and the
   owner stores the two once.  Whenever an owner reports a different count
   than the slice held (it was committed before, or the two batches were cut
   differently), the consumer reads the watermarks again and reopens the
   lane there.

Malformed messages (not JSON, or refused by the table's schema or transform)
go to ``_rejected`` with their subject and stream sequence (its ``row``
column holds the sequence), and the lane moves on.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from engine.ingest.client import IngestOptions, Ingestion
from engine.ingest.deliver import Slice
from engine.ingest.offsets import SequenceRange, StreamBatch
from engine.ingest.rejected import rejected_batch_id, rejected_records
from engine.ingest.router import partitions_of
from engine.streams.source import Message, Source, SourceSpec
from storage.catalog import Catalog
from storage.errors import IngestError
from storage.log import PartitionLog
from storage.objectstore import ObjectStore


@dataclass(frozen=True)
class StreamOptions:
    """How a consumer gathers batches; ``ingest``: the options of its ingestion (owners' flush settings)."""

    max_messages: int = 5_000
    max_wait: float = 0.1
    lag_interval: float = 0.5
    ingest: IngestOptions = field(default_factory=IngestOptions)


class Recut(Exception):
    """An owner stored a different count than a slice held: read the watermarks again."""


@dataclass
class Marks:
    """A lane's watermarks: last sequence committed per target partition and in the rejected-rows table."""

    data: dict[int, int]
    rejected: int
    start: int


@dataclass
class Prepared:
    """A batch fitted and routed: its messages, batch id, slices (data first, then the rejections)."""

    batch: list[Message]
    batch_id: str
    slices: list[Slice]
    data_slices: int
    rejected: int


class StreamConsumer:
    """Reads one lane of a source into one table (a Ray actor; see the module docstring)."""

    def __init__(self, store: ObjectStore, namespace: str, table: str, spec: SourceSpec, lane: int, lanes: int,
                 options: StreamOptions | None = None) -> None:
        self.store = store
        self.table = table
        self.spec = spec
        self.lane = lane
        self.lanes = lanes
        self.options = options or StreamOptions()
        self.key = spec.lane_key(lane, lanes)
        self.ingestion = Ingestion(store, Catalog(store), namespace, self.options.ingest)
        self.client = self.ingestion.client(table)
        self.rejected_key = f"{self.key}/rejected/{table}"
        self._status: dict[str, Any] = {
            "lane": lane, "lanes": lanes, "pid": os.getpid(), "stored_through": 0, "events": 0, "rejected": 0,
            "batches": 0, "messages": 0, "lag_messages": None, "lag_seconds": None, "errors": 0, "last_error": None,
            "running": True, "fetch_seconds": 0.0, "fit_seconds": 0.0, "deliver_seconds": 0.0, "ack_seconds": 0.0,
        }
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-store")
        self._fitter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-fit")
        self._thread = threading.Thread(target=self._run, name=f"stream-{table}-{lane}", daemon=True)
        self._thread.start()

    # -- the handle's side ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return dict(self._status, time=time.time())

    def stop(self) -> dict[str, Any]:
        """Finish the batch in flight (stored and acknowledged), then stop reading."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._status["running"] = False
        return self.status()

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._consume()
            except Exception as exc:  # noqa: BLE001 - a broker or store hiccup: read the watermarks and go on
                self._status["errors"] += 1
                self._status["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
                await asyncio.sleep(0.5)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        marks = await loop.run_in_executor(self._pool, self.watermarks)
        self._status["stored_through"] = max(min(marks.data.values()), self._status["stored_through"])
        source = open_source(self.spec, self.lane, self.lanes)
        committing: asyncio.Future | None = None  # the batch whose slices are on their way; at most one
        try:
            await source.open(marks.start)
            last_lag = 0.0
            while not self._stopping.is_set():
                began = time.perf_counter()
                batch = await self._gather(source)
                self._status["fetch_seconds"] += time.perf_counter() - began
                if batch:
                    if self._status.get("oldest_pending") is None:
                        self._status["oldest_pending"] = batch[0].published
                    # fit this batch while the previous one commits; it is sent only once that one is stored
                    prepared = await loop.run_in_executor(self._fitter, self.prepare, batch, marks)
                    if committing is not None:
                        await self._finish(source, committing, following=batch)
                    committing = loop.run_in_executor(self._pool, self.commit, prepared, marks)
                elif committing is not None:
                    await self._finish(source, committing)
                    committing = None
                if time.monotonic() - last_lag >= self.options.lag_interval:
                    last_lag = time.monotonic()
                    count, seconds = await source.backlog(self._status["stored_through"])
                    self._status.update(lag_messages=count, lag_seconds=round(seconds, 3))
            if committing is not None:
                await self._finish(source, committing)
                committing = None
        finally:
            if committing is not None:  # failed meanwhile: its messages stay unacknowledged, read again
                await asyncio.gather(committing, return_exceptions=True)
            await source.close()

    async def _finish(self, source, committing: asyncio.Future, following: list[Message] | None = None) -> None:
        """Wait for a batch's commit, then acknowledge its messages to the broker."""
        batch, stored, rejected = await committing
        began = time.perf_counter()
        await source.ack(batch)
        self._status["ack_seconds"] += time.perf_counter() - began
        self._status.update(
            stored_through=batch[-1].sequence, events=self._status["events"] + stored,
            rejected=self._status["rejected"] + rejected, batches=self._status["batches"] + 1,
            messages=self._status["messages"] + len(batch), last_published=batch[-1].published,
            oldest_pending=following[0].published if following else None,
        )

    async def _gather(self, source) -> list[Message]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.max_wait
        batch: list[Message] = []
        while len(batch) < self.options.max_messages and not self._stopping.is_set():
            left = deadline - loop.time()
            if left <= 0.005:
                break
            got = await source.fetch(self.options.max_messages - len(batch), left)
            batch.extend(got)
            if batch and not got:
                break
        return batch

    # -- storing (on the store thread) ---------------------------------------------------------
    def targets(self) -> list[int]:
        meta = self.client.current_meta()
        if meta.routing_key and meta.partitions > 1:
            return list(range(meta.partitions))
        return [self.lane % meta.partitions]

    def watermarks(self) -> Marks:
        """The lane's committed sequences, read from the logs; where to open the lane."""
        meta = self.client.current_meta(refresh=True)
        offsets = {p: _sequence(PartitionLog(self.store, meta.path, p).load().offsets.get(self.key))
                   for p in self.targets()}
        rejected_meta = self.ingestion.rejected_client().meta
        reached = _sequence(PartitionLog(self.store, rejected_meta.path, 0).load().offsets.get(self.rejected_key))
        rejected = int(reached.get("last", 0))
        data = {p: int(o.get("last", 0)) for p, o in offsets.items()}
        start = min(data.values()) + 1
        for o in offsets.values():  # a batch whose rejected rows did not land is read again from its start
            if o.get("rejected") and rejected < o.get("last", 0):
                start = min(start, int(o.get("first", 1)))
        return Marks(data, rejected, start)

    def prepare(self, batch: list[Message], marks: Marks) -> Prepared:
        """Parse, transform and route one batch into slices (the rows above each target's watermark).

        Done while the batch before it commits: its rows all follow that
        batch's, so the watermarks that batch will leave filter nothing more.
        """
        lines: list[bytes] = []
        sequences: list[int] = []
        subjects: list[str] = []
        for message in batch:
            for line in message.data.split(b"\n"):
                if line.strip():
                    lines.append(line)
                    sequences.append(message.sequence)
                    subjects.append(message.subject)
        sequence_of = np.asarray(sequences, dtype=np.int64)
        first, last = batch[0].sequence, batch[-1].sequence
        batch_id = f"{self.key}@{first}"
        now_us = time.time_ns() // 1000
        began = time.perf_counter()
        result = self.client.fit(b"\n".join(lines) + b"\n" if lines else b"", now_us)
        meta = self.client.meta
        targets = self.targets()
        row_sequences = sequence_of[result.rows] if len(result.rows) else np.zeros(0, np.int64)
        if len(targets) > 1:
            partition_of = partitions_of(result.table, result.rows, result.total, meta.partitions, batch_id,
                                         meta.routing_key)
        else:
            partition_of = np.full(result.table.num_rows, targets[0], dtype=np.int64)
        rejects = [(row, reason) for row, reason in result.rejected if sequence_of[row] > marks.rejected]
        offset = (StreamBatch(self.key, first, last, rejected=bool(result.rejected)),)
        slices = []
        for partition in targets:
            keep = (partition_of == partition) & (row_sequences > marks.data[partition])
            rows = result.table.filter(pa.array(keep)) if not keep.all() else result.table
            slices.append(Slice(self.client, partition, batch_id, rows, offset, urgent=True))
        if rejects:
            table = self._rejected_rows(rejects, sequence_of, subjects, result.raw, now_us)
            slices.append(Slice(self.ingestion.rejected_client(), 0, rejected_batch_id(self.table, batch_id), table,
                                (SequenceRange(self.rejected_key, first, last),), urgent=True))
        self._status["fit_seconds"] += time.perf_counter() - began
        return Prepared(batch, batch_id, slices, len(targets), len(rejects))

    def commit(self, prepared: Prepared, marks: Marks) -> tuple[list[Message], int, int]:
        """Deliver a prepared batch's slices, wait for their commits, check them; moves the watermarks."""
        began = time.perf_counter()
        slices, batch_id, last = prepared.slices, prepared.batch_id, prepared.batch[-1].sequence
        self.ingestion.deliver(slices)
        self._status["deliver_seconds"] += time.perf_counter() - began
        for item in slices:
            if item.written != item.rows.num_rows:
                raise Recut(f"partition {item.partition} of {item.client.meta.name} stored {item.written} rows of "
                            f"batch {batch_id}, which held {item.rows.num_rows}; reading the watermarks again")
        for item in slices[:prepared.data_slices]:
            marks.data[item.partition] = last
        if prepared.rejected:
            marks.rejected = last
        return prepared.batch, sum(s.rows.num_rows for s in slices[:prepared.data_slices]), prepared.rejected

    def _rejected_rows(self, rejects: list[tuple[int, str]], sequence_of: np.ndarray, subjects: list[str],
                       raw: Any, now_us: int) -> pa.Table:
        """The rejected rows of a batch; ``row`` holds each one's stream sequence."""
        rows = [row for row, _ in rejects]
        return rejected_records(
            self.table, self.key, [int(sequence_of[row]) for row in rows],
            [f"subject {subjects[row]}, sequence {int(sequence_of[row])}: {reason}" for row, reason in rejects],
            [raw(row) for row in rows], now_us,
        )


def open_source(spec: SourceSpec, lane: int, lanes: int) -> Source:
    """The source object for ``spec``'s kind (its broker's client is imported only when used)."""
    if spec.kind == "nats":
        from engine.streams.nats import NatsSource

        return NatsSource(spec, lane, lanes)
    raise IngestError(f"stream source kind {spec.kind!r} is unknown; use 'nats'")


def _sequence(recorded: Any) -> dict[str, Any]:
    """A lane's record in a partition's log (see ``StreamBatch``), or an empty one if it has none yet."""
    return recorded if isinstance(recorded, dict) and recorded.get("kind") == "sequence" else {}
