"""The ingest actor: a partition's :class:`~engine.ingest.owner.PartitionOwner` on Ray, driven by asyncio.

The owner holds every rule (what is committed, what fits, when to flush,
what a failure fails); the actor only runs its steps: appends wait on
futures, a flush loop takes flushes when they are due, up to ``encoders``
flushes encode side by side on encoder threads (a burst of appends is
shared out among the idle encoders) while an earlier one stores, and
commits run one at a time on the store thread, in the order the flushes
were taken.  An append waits for buffer space before its rows are unpacked,
and gives up with :class:`~storage.errors.IngestTimeout`.  Clients send
many appends in one call (:meth:`IngestActor.append_many`): a Ray call
costs milliseconds of CPU whatever it carries.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.ingest.offsets import Offset
from engine.ingest.owner import Append, Flush, IngestConfig, PartitionOwner
from engine.ingest.transfer import unpack
from storage.catalog import TableMeta
from storage.errors import IngestError, IngestTimeout
from storage.objectstore import ObjectStore

class IngestActor:
    """Owns one partition of one table on Ray; see the module docstring."""

    def __init__(self, store: ObjectStore, meta: TableMeta, partition: int, config: IngestConfig | None = None) -> None:
        self.owner = PartitionOwner(store, meta, partition, config)
        self.config = self.owner.config
        self._store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._encoder = ThreadPoolExecutor(max_workers=self.owner.encoders, thread_name_prefix="encode")
        self._encoding = 0  # flushes taken and not yet encoded
        self._wake: asyncio.Event | None = None
        self._space: asyncio.Condition | None = None
        self._flusher: asyncio.Task | None = None

    async def append_many(
        self, items: list[tuple[str, Any, tuple[Offset, ...] | None, bool, float | None]]
    ) -> list[int | Exception]:
        """:meth:`append` for each (batch id, rows, offsets, urgent, first sent); each item's count or its own error."""
        return await asyncio.gather(*(self.append(*item) for item in items), return_exceptions=True)

    async def append(
        self, batch_id: str, data: Any, offsets: tuple[Offset, ...] | None = None, urgent: bool = False,
        first_sent: float | None = None,
    ) -> int:
        """Buffer rows (Arrow IPC or :class:`SharedRows`, see ``transfer``) and return, once committed, how many.

        0 means the batch (or every source offset) was committed before.
        ``urgent`` flushes without waiting for more appends (a caller that
        sends one batch at a time, like file ingestion, gains nothing from the wait).
        ``first_sent``: when a retried batch was first sent (None on the first
        attempt); a retry the owner can no longer check is refused.
        """
        self._start()
        owner = self.owner
        offsets = tuple(offsets or ())
        size = max(len(data), 1)  # the payload: the rows it unpacks to share its buffers
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.buffer_timeout
        while True:  # every await lets other appends in: check again after each
            owner.check_running()
            if owner.stale:
                await loop.run_in_executor(self._store_thread, owner.resync)
                continue
            if owner.committed(batch_id, offsets):
                return 0
            pending = owner.pending(batch_id)
            if pending is not None:
                return await asyncio.shield(pending.waiter)
            owner.check_retry(batch_id, first_sent)
            if owner.fits(size):
                break
            await self._wait_for_space(size, deadline)
        table = unpack(data)
        future = loop.create_future()
        owner.buffer(Append(batch_id, table, offsets, size, future), urgent, loop.time())
        self._wake.set()
        return await asyncio.shield(future)

    async def _wait_for_space(self, size: int, deadline: float) -> None:
        """Wait until ``size`` more bytes fit (or anything is released); IngestTimeout at ``deadline``."""
        owner = self.owner
        async with self._space:
            while not owner.fits(size):
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    await asyncio.wait_for(self._space.wait(), remaining)
                except TimeoutError:
                    limit = self.config.max_buffer_bytes
                    raise IngestTimeout(
                        f"{owner.where} has {owner.held_bytes >> 20} MiB buffered (limit {limit >> 20} MiB) and "
                        f"could not take {size >> 10} KiB more within {self.config.buffer_timeout:g} s; the owner "
                        "is behind — retry the batch later (same batch id), send smaller batches or raise "
                        "max_buffer_bytes"
                    ) from None

    def _start(self) -> None:
        if self._flusher is None:
            self._wake = asyncio.Event()
            self._space = asyncio.Condition()
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        owner = self.owner
        encoders = owner.encoders
        flushes: deque[asyncio.Task] = deque()  # taken and not yet finished, oldest first
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (wait := owner.due(loop.time())) != float("inf"):
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except TimeoutError:
                        pass
                    self._wake.clear()
                    continue
                while flushes and flushes[0].done():
                    flushes.popleft()
                if len(flushes) > encoders:  # every encoder busy, or the stores behind
                    await asyncio.wait([flushes[0]])
                    continue
                # a burst is shared out among the idle encoders: encoded side by side, it is committed sooner
                idle = max(1, encoders - self._encoding)
                flush = owner.take_flush(max(self.config.eager_rows, -(-owner.buffered_rows // idle)))
                previous = flushes[-1] if flushes else None
                self._encoding += 1
                flushes.append(loop.create_task(self._run(flush, previous)))

    async def _run(self, flush: Flush, previous: asyncio.Task | None) -> None:
        """Encode one flush, then, once the flush before it has finished, store it and answer its callers."""
        loop = asyncio.get_running_loop()
        try:
            try:
                await loop.run_in_executor(self._encoder, self.owner.encode, flush)
            finally:
                self._encoding -= 1
            if previous is not None:
                await asyncio.wait([previous])
            await loop.run_in_executor(self._store_thread, self.owner.commit, flush)
        except BaseException as exc:  # noqa: BLE001 - cancelled or broken: its callers must hear of it
            flush.failure = flush.failure or IngestError(f"{self.owner.where}: flush interrupted ({exc!r}); "
                                                         "retry the batch with the same batch id")
        for append, outcome in self.owner.finish(flush):
            if not append.waiter.done():
                if isinstance(outcome, Exception):
                    append.waiter.set_exception(outcome)
                else:
                    append.waiter.set_result(outcome)
        async with self._space:
            self._space.notify_all()

    def status(self) -> dict[str, Any]:
        """The owner's status (see :meth:`PartitionOwner.status`)."""
        return self.owner.status()

