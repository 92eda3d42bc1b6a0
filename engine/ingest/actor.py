"""The ingest actor: the one owner of a partition, and its group commit.

An :class:`IngestActor` claims its partition when it starts (a commit of a
higher epoch; the log gives it the recent batch ids and source offsets), then
buffers appends.  On max rows, max bytes or max age it flushes: the buffered
rows become one sorted segment per hour bucket and ONE commit records those
segments with every batch id and source offset in the flush; only then are
the callers acknowledged.  A batch id (or source offset) the log already
holds is acknowledged without writing.

A flush has two stages: encoding (concatenate, sort, Parquet-encode; pure
CPU, the GIL released for most of it) and storing (upload, commit: mostly
waiting on the object store).  Up to ``encoders`` flushes encode side by
side while an earlier one stores — a burst of appends is shared out among
the idle encoders — and commits go strictly in flush order, one at a time.

If a newer owner claimed the partition meanwhile, the commit is refused
(:class:`~storage.errors.Fenced`), nothing of the flush becomes visible and
the callers get the error to retry through the current owner.  Any other
failure of a flush fails its callers and every append buffered behind it
(:class:`~storage.errors.FlushFailed`) — including the flush encoded behind
it — so a retry never lands after a later batch of the same source; appends
that arrive after the failure flush as usual.  Such a failure may come after
the commit landed (a lost reply, a failed checkpoint write), so the actor
reads its state from the log again before it checks the next batch id or
commits: the retry of a landed batch is acknowledged, not stored twice.

Buffered bytes are bounded (``max_buffer_bytes``, counted as the appends'
IPC payloads): an append waits for space before its rows are unpacked, and
gives up with :class:`~storage.errors.IngestTimeout`.  Clients send many
appends in one call (:meth:`IngestActor.append_many`): a Ray call costs
milliseconds of CPU whatever it carries.

For tests, :meth:`IngestActor.inject_fault` arms a crash (``exit``), an
error (``raise``) or a pause at a named point of the next flush: ``before_upload``,
``after_upload`` (segments written, not committed) or ``after_commit``
(committed, callers not yet acknowledged).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from engine.ingest.handoff import SharedRows, unpack
from storage.catalog import TableMeta
from storage.errors import Fenced, FlushFailed, IngestTimeout
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.schema import conform, unify
from storage.segment import (
    BUCKET_SECONDS,
    SegmentEntry,
    dictionary_columns,
    encode_segment,
    split_by_bucket,
    time_micros,
)

FAULT_POINTS = ("before_upload", "after_upload", "after_commit")
DICTIONARY_FLUSHES = 32  # the columns to dictionary-encode are chosen again after this many flushes


@dataclass(frozen=True)
class IngestConfig:
    """How an ingest actor buffers: flush triggers and the bound on buffered bytes.

    A flush starts as soon as the previous one is done and the buffer holds
    ``eager_rows`` or ``eager_bytes`` (under load, segments grow with the
    arrival rate), and otherwise when the oldest buffered append is
    ``max_age`` seconds old, so a trickle of small calls is gathered into one
    segment with about a second of latency.  One flush takes at most
    ``max_rows``/``max_bytes`` (whole appends; at least one).  ``encoders``
    flushes may encode at the same time; by default (None) the machine's
    cores are shared among the table's partitions, one or two each (see
    :func:`default_encoders`).
    """

    max_rows: int = 500_000
    max_bytes: int = 64 << 20
    max_age: float = 0.5
    eager_rows: int = 20_000
    eager_bytes: int = 4 << 20
    max_buffer_bytes: int = 512 << 20
    buffer_timeout: float = 60.0
    encoders: int | None = None

    def __post_init__(self) -> None:
        if self.encoders is not None and self.encoders < 1:
            raise ValueError(f"IngestConfig(encoders={self.encoders}): give 1 or more, or None for this machine's "
                             "cores shared among the table's partitions")


def default_encoders(partitions: int) -> int:
    """Encoders per owner: this machine's cores shared among a table's partitions, at least one, at most two.

    A table's owners share its load and, as a rule, a machine.  Encoding is
    pure CPU: more encoding threads than cores only add switching.  On 2
    cores, one owner fed by 64 client threads ingested a fifth more per
    second with two encoders than with one; two owners took a tenth less CPU
    with one encoder each than with two, and ingested 0-16% more per second
    (medians of interleaved runs, 16 and 64 client threads).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(2, cores // max(1, partitions)))


@dataclass
class _Append:
    batch_id: str
    table: pa.Table
    offsets: dict[str, Any]
    size: int
    future: asyncio.Future = field(repr=False)


def covered(committed: Any, offered: Any) -> bool:
    """Whether a committed source offset already includes the offered one."""
    if isinstance(committed, dict) and isinstance(offered, dict):
        return committed.get("chunk", -1) >= offered.get("chunk", 0)
    return committed is not None and committed == offered


class IngestActor:
    """Owns one partition of one table under an epoch; see the module docstring."""

    def __init__(self, store: ObjectStore, meta: TableMeta, partition: int, config: IngestConfig | None = None) -> None:
        self.store = store
        self.meta = meta
        self.partition = partition
        self.config = config or IngestConfig()
        configured = self.config.encoders
        self.encoders = default_encoders(meta.partitions) if configured is None else configured
        self.log = PartitionLog(store, meta.path, partition)
        self.state: PartitionState = self.log.claim()
        self.epoch = self.state.epoch
        self._fenced = False  # a newer owner refused a commit: claim again before the next append
        self._failures = self._synced = 0  # failed flushes, and how many of them state has been reloaded after
        self._failed_flushes = 0  # fenced ones too
        self._encoding = 0  # flushes taken and not yet encoded
        self._resyncing: asyncio.Task | None = None
        self._buffer: list[_Append] = []
        self._buffer_rows = 0
        self._buffer_bytes = 0
        self._urgent = False
        self._held_bytes = 0  # buffered plus being flushed
        self._oldest = 0.0
        self._waiting: dict[str, asyncio.Future] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._encoder = ThreadPoolExecutor(max_workers=self.encoders, thread_name_prefix="encode")
        self._wake: asyncio.Event | None = None
        self._space: asyncio.Condition | None = None
        self._flusher: asyncio.Task | None = None
        self._dictionary: tuple[pa.Schema, list[str], int] | None = None  # schema, columns, flushes left
        self._faults: dict[str, str] = {}
        self._paused = threading.Event()
        self._release = threading.Event()
        self.flushes = 0
        self.flushed_rows = 0
        self.flush_seconds = 0.0
        self.encode_seconds = 0.0  # concatenating, sorting and encoding
        self.store_seconds = 0.0  # uploading and committing

    # -- the caller's side -----------------------------------------------------------
    async def append_many(
        self, items: list[tuple[str, pa.Buffer | SharedRows, dict[str, Any] | None, bool]]
    ) -> list[int | Exception]:
        """:meth:`append` for each (batch id, rows, offsets, urgent); each item's count or its own error."""
        return await asyncio.gather(*(self.append(*item) for item in items), return_exceptions=True)

    async def append(
        self, batch_id: str, data: pa.Buffer | bytes | SharedRows, offsets: dict[str, Any] | None = None,
        urgent: bool = False,
    ) -> int:
        """Buffer rows (Arrow IPC, see ``handoff``) and return, once committed, how many were written.

        0 means the batch (or the source offset) was committed before.  ``urgent``
        flushes without waiting for more appends (a caller that sends one batch
        at a time, like file ingestion, gains nothing from the wait).
        """
        self._start()
        offsets = dict(offsets or {})
        size = max(len(data), 1)  # the IPC payload: the rows it unpacks to share its buffers
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.buffer_timeout
        while True:  # every await lets other appends in: check again after each
            if self._fenced or self._stale:
                await self._resync()
                continue
            if self._committed(batch_id, offsets):
                return 0
            if batch_id in self._waiting:
                return await asyncio.shield(self._waiting[batch_id])
            if self._fits(size):
                break
            await self._wait_for_space(size, deadline)
        table = unpack(data)
        future = loop.create_future()
        if not self._buffer:
            self._oldest = loop.time()
        self._buffer.append(_Append(batch_id, table, offsets, size, future))
        self._buffer_rows += table.num_rows
        self._buffer_bytes += size
        self._held_bytes += size
        self._waiting[batch_id] = future
        self._urgent = self._urgent or urgent
        self._wake.set()
        return await asyncio.shield(future)

    @property
    def _stale(self) -> bool:
        """Whether a flush failed (maybe after its commit landed) since ``state`` was last read from the log."""
        return self._failures != self._synced

    def _committed(self, batch_id: str, offsets: dict[str, Any]) -> bool:
        if self.state.has_batch(batch_id):
            return True
        return bool(offsets) and all(covered(self.state.offsets.get(s), o) for s, o in offsets.items())

    def _fits(self, size: int) -> bool:
        return self._held_bytes == 0 or self._held_bytes + size <= self.config.max_buffer_bytes

    async def _wait_for_space(self, size: int, deadline: float) -> None:
        """Wait until ``size`` more bytes fit (or anything is released); IngestTimeout at ``deadline``."""
        limit = self.config.max_buffer_bytes
        async with self._space:
            while not self._fits(size):
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    await asyncio.wait_for(self._space.wait(), remaining)
                except TimeoutError:
                    raise IngestTimeout(
                        f"partition {self.partition} of {self.meta.namespace}.{self.meta.name} has "
                        f"{self._held_bytes >> 20} MiB buffered (limit {limit >> 20} MiB) and could not take "
                        f"{size >> 10} KiB more within {self.config.buffer_timeout:g} s; the writer is behind — "
                        "retry the batch later (same batch id), send smaller batches or raise max_buffer_bytes"
                    ) from None

    async def _resync(self) -> None:
        """Bring ``state`` back in line with the log after a failed flush; one reload at a time.

        Fenced: claim the partition again.  Any other failure may have come
        after the commit landed (a lost reply, a failed checkpoint write), so
        the log is read again before a batch id is checked or a commit is
        based on ``state``: a retry of a landed batch is then acknowledged, not
        stored twice.
        """
        if self._resyncing is None or self._resyncing.done():
            self._resyncing = asyncio.get_running_loop().create_task(self._reload())
        await asyncio.shield(self._resyncing)

    async def _reload(self) -> None:
        loop = asyncio.get_running_loop()
        fenced, failures = self._fenced, self._failures
        try:
            state = await loop.run_in_executor(self._executor, self.log.claim if fenced else self.log.load)
        except Exception as exc:  # noqa: BLE001 - a transient store error: the caller retries
            raise FlushFailed(
                f"partition {self.partition} of {self.meta.namespace}.{self.meta.name}: could not read its log "
                f"({type(exc).__name__}: {exc}); nothing was stored — retry the batch with the same batch id"
            ) from exc
        self.state = state
        if fenced:
            self.epoch = state.epoch
            self._fenced = False
        self._synced = failures  # a flush that failed meanwhile makes it stale again

    # -- the flusher -------------------------------------------------------------------------
    def _start(self) -> None:
        if self._flusher is None:
            self._wake = asyncio.Event()
            self._space = asyncio.Condition()
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    def _due(self, now: float) -> float:
        """Seconds until the buffer must be flushed (0: now)."""
        if (
            self._urgent
            or self._buffer_rows >= self.config.eager_rows
            or self._buffer_bytes >= self.config.eager_bytes
        ):
            return 0.0
        return max(0.0, self._oldest + self.config.max_age - now)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        flushes: deque[asyncio.Task] = deque()  # taken and not yet stored, oldest first
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                wait = self._due(loop.time())
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        pass
                    self._wake.clear()
                    continue
                while flushes and flushes[0].done():
                    flushes.popleft()
                if len(flushes) > self.encoders:  # every encoder busy, or the commits behind
                    await asyncio.wait([flushes[0]])
                    continue
                # a burst is shared out among the idle encoders: encoded side by side, it is committed sooner
                idle = max(1, self.encoders - self._encoding)
                batch = self._take_flush(max(self.config.eager_rows, -(-self._buffer_rows // idle)))
                previous = flushes[-1] if flushes else None
                self._encoding += 1
                flushes.append(loop.create_task(self._flush(batch, previous, self._failed_flushes)))

    async def _flush(
        self, batch: list[_Append], previous: asyncio.Task | None, failed_before: int
    ) -> tuple[Exception | None, int]:
        """Encode one flush, then, after the flush before it, store it; returns (failure, failures so far).

        ``failed_before``: how many flushes had failed when this one was taken.
        If the flush before fails later than that, this one was buffered
        behind the failure and fails with it.
        """
        loop = asyncio.get_running_loop()
        began = time.perf_counter()
        try:
            encoded: list[tuple[SegmentEntry, bytes]] | Exception = await loop.run_in_executor(
                self._encoder, self._encode, batch
            )
        except Exception as exc:  # noqa: BLE001 - reported to the callers when its turn comes
            encoded = exc
        finally:
            self._encoding -= 1
        self.encode_seconds += time.perf_counter() - began
        if previous is not None:
            failure, failed = await previous
            if failure is not None and failed > failed_before:
                self._finish(batch, failure, behind=True)
                return failure, failed
        return await self._store(batch, encoded, began), self._failed_flushes

    def _take_flush(self, max_rows: int) -> list[_Append]:
        """The oldest appends, up to ``max_rows`` (and the configured max_rows/max_bytes; at least one)."""
        max_rows = min(max_rows, self.config.max_rows)
        rows = size = count = 0
        for item in self._buffer:
            if count and (rows + item.table.num_rows > max_rows or size + item.size > self.config.max_bytes):
                break
            rows, size, count = rows + item.table.num_rows, size + item.size, count + 1
        batch, self._buffer = self._buffer[:count], self._buffer[count:]
        self._buffer_rows -= rows
        self._buffer_bytes -= size
        if self._buffer:
            self._oldest = float("-inf")  # left over from a full flush: next in line
        else:
            self._urgent = False
        return batch

    async def _store(
        self, batch: list[_Append], encoded: list[tuple[SegmentEntry, bytes]] | Exception, began: float
    ) -> Exception | None:
        """Upload and commit one encoded flush, then answer its callers; returns the failure, if any."""
        loop = asyncio.get_running_loop()
        failure: Exception | None = None
        try:
            if isinstance(encoded, Exception):
                raise encoded
            if self._stale:
                await self._resync()
            stored = time.perf_counter()
            self.state = await loop.run_in_executor(self._executor, self._commit, batch, encoded)
            self.store_seconds += time.perf_counter() - stored
        except Fenced as exc:
            self._fenced = True
            self._failed_flushes += 1
            failure = exc
        except Exception as exc:  # noqa: BLE001 - every failure is reported to its callers
            self._failed_flushes += 1
            self._failures += 1  # the commit may have landed all the same: state is reloaded before it is used
            failure = FlushFailed(
                f"partition {self.partition} of {self.meta.namespace}.{self.meta.name}: flush failed "
                f"({type(exc).__name__}: {exc}); retry the batch with the same batch id — it is stored "
                "exactly once, also if this commit did land"
            )
            failure.__cause__ = exc
        else:
            self.flushes += 1
            self.flushed_rows += sum(item.table.num_rows for item in batch)
            self.flush_seconds += time.perf_counter() - began
        self._finish(batch, failure)
        return failure

    def _finish(self, batch: list[_Append], failure: Exception | None, behind: bool = False) -> None:
        """Answer a flush's callers; its own failure also fails every append buffered behind it.

        ``behind``: the failure is the previous flush's, whose own finish already
        failed everything buffered then; what came later is left to flush.
        """
        if failure is not None:
            self._fail(batch if behind else batch + self._take_buffer(), failure)
        else:
            for item in batch:
                self._waiting.pop(item.batch_id, None)
                if not item.future.done():
                    item.future.set_result(item.table.num_rows)
        self._held_bytes -= sum(item.size for item in batch)
        asyncio.get_running_loop().create_task(self._notify_space())

    async def _notify_space(self) -> None:
        async with self._space:
            self._space.notify_all()

    def _take_buffer(self) -> list[_Append]:
        taken, self._buffer = self._buffer, []
        self._held_bytes -= sum(item.size for item in taken)
        self._buffer_rows = self._buffer_bytes = 0
        self._urgent = False
        return taken

    def _fail(self, items: list[_Append], error: Exception) -> None:
        for item in items:
            self._waiting.pop(item.batch_id, None)
            if not item.future.done():
                item.future.set_exception(error)

    def _encode(self, batch: list[_Append]) -> list[tuple[SegmentEntry, bytes]]:
        """The flush's rows as sorted Parquet segments, one per hour bucket (runs on the encode thread)."""
        tables = [item.table for item in batch if item.table.num_rows]
        if not tables:
            return []
        schema = unify(t.schema for t in tables)
        tables = [t if t.schema.equals(schema) else conform(t, schema) for t in tables]
        time_column = self.meta.time_column
        if tuple(self.meta.full_sort_key) == (time_column,) and time_column in schema.names:
            # appends arrive out of order from concurrent callers, each mostly sorted within:
            # in order of their first event, the flush often needs no row sort at all
            tables.sort(key=lambda t: t.column(time_column)[0].value or 0)
        table = pa.concat_tables(tables)
        dictionary = self._dictionary_columns(table)
        return [
            encode_segment(
                part,
                partition=self.partition,
                time_column=self.meta.time_column,
                sort_key=self.meta.full_sort_key,
                sorted_already=in_order,
                # one row group per ingest segment: its statistics are the segment's own
                row_group_size=max(part.num_rows, 1),
                dictionary=dictionary,
            )
            for part, in_order in self._buckets(table)
        ]

    def _dictionary_columns(self, table: pa.Table) -> list[str]:
        """The columns to dictionary-encode: sampled once per DICTIONARY_FLUSHES flushes of one schema.

        A stream's columns keep their character (ids stay unique, levels stay
        few) from flush to flush; sampling each one cost about a millisecond.
        """
        cached = self._dictionary  # encoders share it: one read, one write
        if cached is not None and cached[2] > 0 and cached[0].equals(table.schema):
            self._dictionary = (cached[0], cached[1], cached[2] - 1)
            return cached[1]
        columns = dictionary_columns(table)
        self._dictionary = (table.schema, columns, DICTIONARY_FLUSHES - 1)
        return columns

    def _commit(self, batch: list[_Append], encoded: list[tuple[SegmentEntry, bytes]]) -> PartitionState:
        """Upload the flush's segments and commit them with its batch ids and offsets (on the store thread)."""
        if encoded:
            self._fault("before_upload")
            for entry, data in encoded:
                self.store.put(f"{self.meta.path}/{entry.path}", data)
            self._fault("after_upload")
        offsets: dict[str, Any] = {}
        for item in batch:
            offsets.update(item.offsets)
        state = self.log.commit(
            self.state,
            epoch=self.epoch,
            added=[entry for entry, _ in encoded],
            offsets=offsets,
            batch_ids=[i.batch_id for i in batch],
        )
        self._fault("after_commit")
        return state

    def _buckets(self, table: pa.Table) -> list[tuple[pa.Table, bool]]:
        """The flush's rows cut into one table per hour bucket, and whether each is sorted already.

        Sorted by time alone (the default), the table is sorted once (not at
        all when it arrived in order, as streams mostly do) and the buckets
        are zero-copy slices; with a longer sort key each bucket is sorted
        when it is written.
        """
        time_column = self.meta.time_column
        if tuple(self.meta.full_sort_key) != (time_column,):
            return [(part, False) for part in split_by_bucket(table, time_column)]
        micros = time_micros(table.column(time_column)).to_numpy(zero_copy_only=False)
        if len(micros) > 1 and not np.all(micros[1:] >= micros[:-1]):
            order = np.argsort(micros, kind="stable")
            table, micros = table.take(pa.array(order)), micros[order]
        buckets = micros // (BUCKET_SECONDS * 1_000_000)
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(buckets)) + 1, [len(buckets)]))
        return [(table.slice(int(a), int(b - a)), True) for a, b in zip(bounds[:-1], bounds[1:])]

    # -- fault injection and status, for tests and monitors -----------------------------------
    def inject_fault(self, point: str, action: str = "exit") -> None:
        """Crash (``exit``), fail (``raise``) or stop (``pause``, until :meth:`release`) at ``point`` of the next flush."""
        if point not in FAULT_POINTS or action not in ("exit", "raise", "pause"):
            raise ValueError(f"fault {point!r}/{action!r} is unknown; points: {', '.join(FAULT_POINTS)}; "
                             "actions: exit, raise, pause")
        self._faults[point] = action

    def _fault(self, point: str) -> None:
        action = self._faults.pop(point, None)
        if action == "exit":
            os._exit(1)
        if action == "raise":
            raise OSError(f"injected failure at {point}")
        if action == "pause":
            self._paused.set()
            self._release.wait()
            self._paused.clear()

    def paused(self) -> bool:
        return self._paused.is_set()

    def release(self) -> None:
        self._release.set()

    def status(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "epoch": self.epoch,
            "version": self.state.version,
            "buffered_rows": self._buffer_rows,
            "held_bytes": self._held_bytes,
            "flushes": self.flushes,
            "flushed_rows": self.flushed_rows,
            "flush_seconds": round(self.flush_seconds, 3),
            "encoders": self.encoders,
            "encode_seconds": round(self.encode_seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
            "pid": os.getpid(),
            "time": time.time(),
        }
