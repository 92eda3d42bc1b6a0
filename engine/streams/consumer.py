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
2. **Batches.**  It gathers messages for at most ``flush_interval``
   seconds (the freshness it aims at), less once ``max_batch_bytes`` or
   ``max_messages`` are gathered or, with nothing committing, once the
   broker has nothing more; it parses them all at once (a message is one
   JSON event or JSON lines; the payloads go through pyarrow's JSON reader
   as one buffer), applies the table's transform, and routes each row to
   one of the lane's partitions — with one lane, the default, that is every
   partition: one fetcher reads the stream once and feeds all the owners.
   A row goes by the routing key's hash, else by its message's sequence,
   in runs of ``ROUTE_RUN`` sequences taking turns over the partitions:
   either way by the row alone, never by how its batch was cut, so every
   row has one home however a restarted consumer cuts its batches.  Every
   partition of the lane gets a slice, empty ones too, so every watermark
   moves.  A row whose sequence is at or below its target's watermark is
   dropped: it is stored already.  Each slice carries the batch id ``<key>@F`` and
   the offset, and is flushed at once.  Three batches move at once: one
   is gathered while the one before it is fitted (on the fitter thread)
   and the one before that commits (on the store thread); a batch is sent
   only after the one before it is stored.
3. **Acknowledgement.**  Only after every slice (and the rejections) is
   committed are the messages acknowledged to the broker.  One batch is
   committing at a time, so a lane's commits reach each partition in order;
   when the owners fall behind, delivery waits and fetching waits with it —
   the broker keeps what is not yet read, nothing is dropped.
4. **A killed consumer.**  Ray restarts the actor; its predecessor may have
   left a slice buffered in an owner.  The successor's first batch starts
   where its predecessor's last one did, so it has the same batch id and the
   owner stores the two once.  If the predecessor's batch reached some of
   the lane's partitions and not others, the successor's first batch ends
   where that one did (the highest watermark): the same messages under the
   same batch id, cut the same way, so the partitions that stored it get an
   empty slice and the others the rows they lack (a longer batch under that
   id would be taken for the stored one, forever).  Whenever an owner
   reports a different count than the slice held (it was committed before,
   or the two batches were cut differently), the consumer reads the
   watermarks again and reopens the lane there.

Malformed messages (not JSON, or refused by the table's schema or transform)
go to ``_rejected`` with their subject and stream sequence (its ``row``
column holds the sequence), and the lane moves on.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from engine.ingest.client import IngestOptions, Ingestion
from engine.ingest.deliver import Slice
from engine.ingest.offsets import SequenceRange, StreamBatch
from engine.ingest.rejected import rejected_batch_id, rejected_records
from engine.ingest.router import partitions_of, split
from engine.streams.source import Message, Source, SourceSpec
from storage.catalog import Catalog
from storage.errors import IngestError
from storage.log import PartitionLog
from storage.objectstore import ObjectStore


@dataclass(frozen=True)
class StreamOptions:
    """How a consumer gathers batches (see the module docstring, 2).

    ``flush_interval``: the longest a batch gathers, from its first message
    (with a commit taking about as long, the freshness is about twice
    this); ``max_batch_bytes``/``max_messages``: a batch closes sooner once
    it holds this much; ``max_wait``: with nothing committing, a batch the
    broker has nothing more for closes after this long; ``fetch_messages``:
    messages asked of the broker per pull; ``ingest``: the options of its
    ingestion (owners' flush settings).
    """

    max_messages: int = 200_000
    max_wait: float = 0.05
    lag_interval: float = 0.5
    flush_interval: float = 0.5
    max_batch_bytes: int = 32 << 20
    fetch_messages: int = 1_000
    ingest: IngestOptions = field(default_factory=IngestOptions)


ROUTE_RUN = 1_024  # without a routing key, sequences k*ROUTE_RUN .. (k+1)*ROUTE_RUN-1 go to one partition


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
        self._pending: collections.deque[float] = collections.deque()  # first publish time of each batch in flight
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
        """Read the lane from its watermarks on, three batches at a time: gathering, fitting, committing."""
        loop = asyncio.get_running_loop()
        marks = await loop.run_in_executor(self._pool, self.watermarks)
        self._status["stored_through"] = max(min(marks.data.values()), self._status["stored_through"])
        source = open_source(self.spec, self.lane, self.lanes)
        preparing: asyncio.Future | None = None  # the batch being fitted (on the fitter thread)
        committing: asyncio.Future | None = None  # the batch whose slices are on their way (on the store thread)
        self._pending.clear()

        def busy() -> bool:
            return any(f is not None and not f.done() for f in (preparing, committing))

        held: list[Message] = []  # fetched, not yet batched
        replay_end = max(marks.data.values())
        try:
            await source.open(marks.start)
            last_lag = 0.0
            while not self._stopping.is_set():
                began = time.perf_counter()
                # the first batch ends where the predecessor's last one did in the partitions that stored
                # it: the same messages under the same batch id, stored once where they are not yet
                through = replay_end if replay_end >= marks.start else None
                batch = await gather(source, self.options, busy, self._stopping, held, through)
                replay_end = 0 if batch else replay_end
                self._status["fetch_seconds"] += time.perf_counter() - began
                if committing is not None and (committing.done() or batch and preparing is not None):
                    await self._finish(source, committing)
                    committing = None
                if preparing is not None and committing is None and (preparing.done() or batch):
                    # sent only once the batch before it is stored: a lane's commits reach a partition in order
                    committing = loop.run_in_executor(self._pool, self.commit, await preparing, marks)
                    preparing = None
                if batch:
                    self._pending.append(batch[0].published)
                    self._status["oldest_pending"] = self._pending[0]
                    preparing = loop.run_in_executor(self._fitter, self.prepare, batch, marks)
                if time.monotonic() - last_lag >= self.options.lag_interval:
                    last_lag = time.monotonic()
                    count, seconds = await source.backlog(self._status["stored_through"])
                    self._status.update(lag_messages=count, lag_seconds=round(seconds, 3))
            if committing is not None:
                await self._finish(source, committing)
                committing = None
            if preparing is not None:
                committing = loop.run_in_executor(self._pool, self.commit, await preparing, marks)
                preparing = None
                await self._finish(source, committing)
                committing = None
        finally:
            # failed meanwhile: their messages stay unacknowledged, read again from the watermarks
            await asyncio.gather(*(f for f in (preparing, committing) if f is not None), return_exceptions=True)
            await source.close()

    async def _finish(self, source, committing: asyncio.Future) -> None:
        """Wait for a batch's commit, then acknowledge its messages to the broker."""
        batch, stored, rejected = await committing
        began = time.perf_counter()
        await source.ack(batch)
        self._status["ack_seconds"] += time.perf_counter() - began
        if self._pending:
            self._pending.popleft()
        self._status.update(
            stored_through=batch[-1].sequence, events=self._status["events"] + stored,
            rejected=self._status["rejected"] + rejected, batches=self._status["batches"] + 1,
            messages=self._status["messages"] + len(batch), last_published=batch[-1].published,
            oldest_pending=self._pending[0] if self._pending else None,
        )

    # -- storing (on the store thread) ---------------------------------------------------------
    def targets(self) -> list[int]:
        """The partitions this lane writes: all of them with one lane or a routing key, else its share."""
        meta = self.client.current_meta()
        if self.lanes == 1 or (meta.routing_key and meta.partitions > 1):
            return list(range(meta.partitions))
        if self.lanes >= meta.partitions:
            return [self.lane % meta.partitions]
        return [p for p in range(meta.partitions) if p % self.lanes == self.lane]

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
        began = time.perf_counter()
        payload, message_of = joined_lines(batch)
        sequence_of = np.fromiter((m.sequence for m in batch), dtype=np.int64, count=len(batch))[message_of]
        first, last = batch[0].sequence, batch[-1].sequence
        batch_id = f"{self.key}@{first}"
        now_us = time.time_ns() // 1000
        result = self.client.fit(payload, now_us)
        meta = self.client.meta
        targets = self.targets()
        row_sequences = sequence_of[result.rows] if len(result.rows) else np.zeros(0, np.int64)
        if meta.routing_key in result.table.column_names and len(targets) > 1:  # by each row's key: its own home
            partition_of = partitions_of(result.table, result.rows, result.total, meta.partitions, batch_id,
                                         meta.routing_key)
        else:  # runs of sequences take turns over this lane's partitions
            partition_of = np.asarray(targets, dtype=np.int64)[(row_sequences // ROUTE_RUN) % len(targets)]
        parts = split(result.table, partition_of, meta.partitions)
        replayed = first <= max(marks.data.values())  # some target stored part of this batch already
        rejects = [(row, reason) for row, reason in result.rejected if sequence_of[row] > marks.rejected]
        offset = (StreamBatch(self.key, first, last, rejected=bool(result.rejected)),)
        empty = result.table.schema.empty_table()
        slices = []
        for partition in targets:
            rows = parts.get(partition, empty)
            if replayed and rows.num_rows:
                kept = row_sequences[partition_of == partition] > marks.data[partition]
                rows = rows if kept.all() else rows.filter(pa.array(kept))
            slices.append(Slice(self.client, partition, batch_id, rows, offset, urgent=True))
        if rejects:
            table = self._rejected_rows(rejects, sequence_of, [batch[i].subject for i in message_of.tolist()],
                                        result.raw, now_us)
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


async def gather(source: Source, options: StreamOptions, busy: Callable[[], bool], stopping: threading.Event,
                 held: list[Message] | None = None, through: int | None = None) -> list[Message]:
    """A lane's next batch (see the module docstring, 2); empty when nothing came within ``max_wait``.

    ``busy()``: whether the batches before it are still being fitted or
    committed; while they are, a batch keeps gathering up to
    ``flush_interval`` (it could not be sent sooner anyway), so under load
    batches grow with the arrival rate.  ``held``: messages fetched before
    and not yet batched (taken first; what this batch leaves is put back).
    ``through``: the batch ends at this sequence, whatever else is due.
    """
    loop = asyncio.get_running_loop()
    held = [] if held is None else held
    batch: list[Message] = []
    size = 0
    opened = loop.time()
    while not stopping.is_set():
        wanted = min(options.fetch_messages, options.max_messages - len(batch))
        if batch:
            age = loop.time() - opened
            if wanted <= 0 or size >= options.max_batch_bytes or age >= options.flush_interval:
                break
            if through is not None and batch[-1].sequence >= through:
                break
            timeout = min(options.flush_interval - age, options.max_wait)
        else:
            timeout = options.max_wait
        if held:
            got, held[:] = held[:wanted], held[wanted:]
        else:
            got = await source.fetch(wanted, max(timeout, 0.005))
        if through is not None and got and got[-1].sequence > through:
            cut = next(i for i, m in enumerate(got) if m.sequence > through)
            if cut == 0 and not batch:  # none of those messages is left in the stream: nothing to match
                through = None
            else:
                got, held[:0] = got[:cut], got[cut:]
                if not got:
                    break
        idle = not busy()
        if not got:
            if not batch or idle:  # nothing came, or the broker has nothing more and the owners are free
                break
            continue
        if not batch:
            opened = loop.time()
        batch.extend(got)
        size += sum(len(m.data) for m in got)
        if len(got) < wanted and idle and loop.time() - opened >= options.max_wait and not held:
            break
    return batch


_BLANK_LINE = re.compile(rb"\n\s*\n")


def joined_lines(batch: list[Message]) -> tuple[bytes, np.ndarray]:
    """The batch's non-blank lines as one JSON-lines buffer, and the message (index) of each line.

    Lines are counted as the JSON-lines parser counts rows (blank lines
    skipped), so row ``i`` of the parse came from message ``message_of[i]``;
    only a message with a blank line inside is split line by line.
    """
    bodies: list[bytes] = []
    counts = np.zeros(len(batch), dtype=np.int64)
    for index, message in enumerate(batch):
        body = message.data.strip()
        if not body:
            continue
        if _BLANK_LINE.search(body) is not None:
            lines = [line for line in body.split(b"\n") if line.strip()]
            body = b"\n".join(lines)
        bodies.append(body)
        counts[index] = body.count(b"\n") + 1
    payload = b"\n".join(bodies) + b"\n" if bodies else b""
    return payload, np.repeat(np.arange(len(batch), dtype=np.int64), counts)


def open_source(spec: SourceSpec, lane: int, lanes: int) -> Source:
    """The source object for ``spec``'s kind (its broker's client is imported only when used)."""
    if spec.kind == "nats":
        from engine.streams.nats import NatsSource

        return NatsSource(spec, lane, lanes)
    raise IngestError(f"stream source kind {spec.kind!r} is unknown; use 'nats'")


def _sequence(recorded: Any) -> dict[str, Any]:
    """A lane's record in a partition's log (see ``StreamBatch``), or an empty one if it has none yet."""
    return recorded if isinstance(recorded, dict) and recorded.get("kind") == "sequence" else {}
