"""The owner of a partition: its buffer and its flush pipeline, as a plain class.

A :class:`PartitionOwner` claims its partition when it is made (a commit of
a higher epoch; the log gives it the recent batch ids and source offsets),
then buffers appends.  On max rows, max bytes or max age it flushes: the
buffered rows become ONE sorted segment (whatever time they span) and
one commit records it with every batch id and source offset of the flush;
only then are the callers acknowledged.  A batch id (or source offset) the
log already holds is acknowledged without writing.

A flush goes through four steps, each a method, so a test drives them one by
one and a runtime (``actor``) runs them on its threads:

1. :meth:`~PartitionOwner.take_flush` — the oldest buffered appends (on the
   thread that buffers);
2. :meth:`~PartitionOwner.encode` — concatenate, sort, Parquet-encode (pure
   CPU; flushes encode side by side);
3. :meth:`~PartitionOwner.commit` — upload and commit, strictly in the order
   the flushes were taken, one at a time;
4. :meth:`~PartitionOwner.finish` — the outcome of each append (on the
   thread that buffers).

If a newer owner claimed the partition meanwhile, the commit is refused
(:class:`~storage.errors.Fenced`): nothing of the flush becomes visible, and
this owner stops — it refuses every later append with ``Fenced`` too and
never takes the partition back (ownership moves only by an explicit claim:
a new owner).  Any other failure of a flush fails its callers and every
append buffered behind it (:class:`~storage.errors.FlushFailed`), including
the flushes taken before the failure was known, so a retry never lands
after a later batch of the same source; appends that come after the failure
flush as usual.  Such a failure may come after the commit landed (a lost
reply, a failed checkpoint write), so the owner reads its state from the
log again (:meth:`~PartitionOwner.resync`) before it checks the next batch
id or commits: the retry of a landed batch is acknowledged, not stored twice.

Buffered bytes are bounded (``max_buffer_bytes``, counted as the appends'
payload as it travelled): :meth:`~PartitionOwner.fits` says whether an
append may be buffered now.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.ingest.encode import DictionaryChoice, encode_flush
from engine.ingest.offsets import Offset, covered, records
from storage.catalog import TableMeta
from storage.errors import DedupExpired, Fenced, FlushFailed, IngestError, InvalidArgument
from storage.log import MAX_RECENT_BATCH_IDS, PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry


CLOCK_SKEW_SECONDS = 5.0  # clients' and owners' clocks may differ this much


@dataclass(frozen=True)
class IngestConfig:
    """How an owner buffers: flush triggers and the bound on buffered bytes.

    A flush starts as soon as the previous one is done and the buffer holds
    ``eager_rows`` or ``eager_bytes`` (under load, segments grow with the
    arrival rate), and otherwise when the oldest buffered append is
    ``max_age`` seconds old, so a trickle of small calls is gathered into one
    segment with about a second of latency.  One flush takes at most
    ``max_rows``/``max_bytes`` (whole appends; at least one).  ``encoders``
    flushes may encode at the same time; by default (None) the machine's
    cores are shared among the table's partitions, one or two each (see
    :func:`default_encoders`).  ``dedup_window``: how long after its first
    attempt a batch may be retried (see :meth:`PartitionOwner.check_retry`).
    ``shared_sweep_interval``: how often an owner removes the shared-memory
    folders of dead clients (see ``transfer``).
    """

    max_rows: int = 500_000
    max_bytes: int = 64 << 20
    max_age: float = 0.5
    eager_rows: int = 20_000
    eager_bytes: int = 4 << 20
    max_buffer_bytes: int = 512 << 20
    buffer_timeout: float = 60.0
    encoders: int | None = None
    dedup_window: float = 86_400.0
    shared_sweep_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.encoders is not None and self.encoders < 1:
            raise InvalidArgument(f"IngestConfig(encoders={self.encoders}): give 1 or more, or None for this machine's "
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
class Append:
    """One caller's rows, buffered until a flush commits them; ``waiter`` is the runtime's (e.g. a future)."""

    batch_id: str
    table: pa.Table
    offsets: tuple[Offset, ...] = ()
    size: int = 0
    waiter: Any = field(default=None, repr=False)


@dataclass
class Flush:
    """The appends one flush commits, and what became of it along the way."""

    appends: list[Append]
    failed_before: int  # failures known when it was taken: a later one (of a flush before it) fails it too
    began: float = field(default_factory=time.perf_counter)
    segments: list[tuple[SegmentEntry, bytes]] = field(default_factory=list)
    refused: dict[int, Exception] = field(default_factory=dict)  # id(append) -> why its rows cannot be written
    failure: Exception | None = None
    behind: bool = False  # failed with a flush before it, not on its own

    @property
    def committed(self) -> list[Append]:
        """The appends the flush commits: all but those refused."""
        return [a for a in self.appends if id(a) not in self.refused]

    @property
    def rows(self) -> int:
        return sum(a.table.num_rows for a in self.committed)

    @property
    def size(self) -> int:
        return sum(a.size for a in self.appends)


class PartitionOwner:
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
        self.fenced: Fenced | None = None  # set once a newer owner refused a commit: this owner has stopped
        self.failed_flushes = 0  # every failed flush, fenced ones too
        self._failures = self._synced = 0  # failed flushes (not fenced), and how many state was reloaded after
        self._last_failure: Exception | None = None
        self._horizon_cache: tuple[int, float] | None = None  # (version of the oldest id remembered, its time)
        self._buffer: list[Append] = []
        self._pending: dict[str, Append] = {}  # buffered or being flushed, by batch id
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self.held_bytes = 0  # buffered plus being flushed
        self._urgent = False
        self._oldest = 0.0
        self._dictionary = DictionaryChoice()
        self.flushes = 0
        self.flushed_rows = 0
        self.flush_seconds = 0.0
        self.encode_seconds = 0.0  # concatenating, sorting and encoding
        self.store_seconds = 0.0  # uploading and committing

    @property
    def where(self) -> str:
        return f"partition {self.partition} of {self.meta.namespace}.{self.meta.name}"

    # -- buffering (the caller's thread) ---------------------------------------------------
    @property
    def stale(self) -> bool:
        """Whether a flush failed (maybe after its commit landed) since ``state`` was last read from the log."""
        return self._failures != self._synced

    def committed(self, batch_id: str, offsets: tuple[Offset, ...] = ()) -> bool:
        """Whether the log already holds this batch id, or every one of these source offsets."""
        return self.state.has_batch(batch_id) or covered(offsets, self.state.offsets, self.state.finished)

    def pending(self, batch_id: str) -> Append | None:
        """The append of ``batch_id`` buffered or being flushed, if any."""
        return self._pending.get(batch_id)

    def check_retry(self, batch_id: str, first_sent: float | None, now: float | None = None) -> None:
        """Refuse (:class:`DedupExpired`) a retry this partition can no longer check for duplicates.

        Called for a batch id neither committed nor pending; ``first_sent``
        is when the client first sent it (None: this is the first attempt,
        nothing to check).  The log remembers the partition's last
        ``MAX_RECENT_BATCH_IDS`` batch ids: a retry first sent before the
        oldest one remembered (the horizon) may have been committed and
        forgotten, and one first sent more than ``dedup_window`` ago is
        refused whatever the rate, so the guarantee does not depend on it.
        """
        if first_sent is None:
            return
        now = time.time() if now is None else now
        window = self.config.dedup_window
        if now - first_sent > window:
            raise DedupExpired(
                f"{self.where}: batch {batch_id} was first sent {now - first_sent:,.0f} s ago, more than the "
                f"dedup window of {window:,.0f} s; it may have been stored already, so it is refused, not stored "
                "twice — check the table for its rows before sending them under a new batch id"
            )
        horizon = self._horizon()
        if horizon is not None and first_sent <= horizon + CLOCK_SKEW_SECONDS:
            raise DedupExpired(
                f"{self.where}: batch {batch_id} was first sent before the oldest of the {MAX_RECENT_BATCH_IDS:,} "
                f"batch ids this partition remembers (committed at {horizon:,.0f}); it may have been stored "
                "already, so it is refused, not stored twice — check the table for its rows before sending "
                "them under a new batch id"
            )

    def _horizon(self) -> float | None:
        """When the oldest batch id the log still remembers was committed; None while none was forgotten."""
        ids = self.state.batch_ids
        if len(ids) < MAX_RECENT_BATCH_IDS:
            return None  # the log drops ids only once it holds that many
        version = next(iter(ids.values()))
        if self._horizon_cache is None or self._horizon_cache[0] != version:
            try:
                when = float(self.log.record(version).get("timestamp") or self.state.committed_at)
            except FileNotFoundError:  # folded into a checkpoint: the latest commit is a safe (later) bound
                when = self.state.committed_at
            self._horizon_cache = (version, when)
        return self._horizon_cache[1]

    def fits(self, size: int) -> bool:
        """Whether an append of ``size`` bytes may be buffered now (always, when nothing is held)."""
        return self.held_bytes == 0 or self.held_bytes + size <= self.config.max_buffer_bytes

    def check_running(self) -> None:
        """Raise :class:`Fenced` once this owner has stopped."""
        if self.fenced is not None:
            raise Fenced(
                f"{self.where}: this owner (epoch {self.epoch}) was fenced by a newer owner and has stopped "
                f"({self.fenced}); send the batch to the current owner, or claim the partition explicitly"
            )

    def buffer(self, append: Append, urgent: bool = False, now: float | None = None) -> None:
        """Buffer ``append`` (the caller checked :meth:`committed`, :meth:`pending` and :meth:`fits`)."""
        self.check_running()
        if not self._buffer:
            self._oldest = time.monotonic() if now is None else now
        self._buffer.append(append)
        self._pending[append.batch_id] = append
        self.buffered_rows += append.table.num_rows
        self.buffered_bytes += append.size
        self.held_bytes += append.size
        self._urgent = self._urgent or urgent

    def due(self, now: float) -> float:
        """Seconds until the buffer must be flushed (0: now; inf: nothing buffered)."""
        if not self._buffer:
            return float("inf")
        if self._urgent or self.buffered_rows >= self.config.eager_rows or self.buffered_bytes >= self.config.eager_bytes:
            return 0.0
        return max(0.0, self._oldest + self.config.max_age - now)

    def take_flush(self, max_rows: int | None = None) -> Flush:
        """The oldest appends, up to ``max_rows`` (and the configured max_rows/max_bytes; at least one)."""
        max_rows = self.config.max_rows if max_rows is None else min(max_rows, self.config.max_rows)
        rows = size = count = 0
        for item in self._buffer:
            if count and (rows + item.table.num_rows > max_rows or size + item.size > self.config.max_bytes):
                break
            rows, size, count = rows + item.table.num_rows, size + item.size, count + 1
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        self.buffered_rows -= rows
        self.buffered_bytes -= size
        if self._buffer:
            self._oldest = float("-inf")  # left over from a full flush: next in line
        else:
            self._urgent = False
        return Flush(taken, self.failed_flushes)

    # -- the flush pipeline ----------------------------------------------------------------
    def encode(self, flush: Flush) -> None:
        """Encode the flush's rows as a segment (any thread; flushes may encode side by side).

        When the rows cannot be encoded together, each append is tried
        alone: those that fail alone are refused (their callers get the
        error, nothing of theirs is stored) and the others are encoded and
        committed without them — one bad append never fails its neighbours.
        Any other failure is kept on the flush and reported when its turn
        to commit comes.
        """
        began = time.perf_counter()
        try:
            flush.segments = self._encode([a.table for a in flush.appends])
        except Exception as exc:  # noqa: BLE001 - isolated below, or reported to the callers
            flush.failure = exc
            if len(flush.appends) > 1:
                self._encode_without_the_bad(flush)
        self.encode_seconds += time.perf_counter() - began

    def _encode(self, tables: list[pa.Table]) -> list[tuple[SegmentEntry, bytes]]:
        return encode_flush(tables, self.meta, self.partition, self._dictionary)

    def _encode_without_the_bad(self, flush: Flush) -> None:
        refused: dict[int, Exception] = {}
        for append in flush.appends:
            try:
                self._encode([append.table])
            except Exception as exc:  # noqa: BLE001 - this append's own fault
                refused[id(append)] = IngestError(
                    f"{self.where}: the rows of batch {append.batch_id} cannot be written ({type(exc).__name__}: "
                    f"{exc}); nothing of it was stored, the other batches of its flush were — fix the rows "
                    "and send them again"
                )
        if not refused:
            return  # each one alone is fine: the failure is the flush's
        try:
            flush.segments = self._encode([a.table for a in flush.appends if id(a) not in refused])
        except Exception:  # noqa: BLE001 - the rest fail together, as before
            return
        flush.refused, flush.failure = refused, None

    def commit(self, flush: Flush) -> None:
        """Upload and commit an encoded flush, after every flush taken before it has finished.

        Never raises: the outcome is kept on the flush for :meth:`finish`.
        """
        if self.failed_flushes > flush.failed_before:  # a flush before it failed after it was taken
            flush.failure, flush.behind = self._last_failure, True
            return
        try:
            if flush.failure is not None:
                raise flush.failure
            self.check_running()
            self.resync()
            began = time.perf_counter()
            self.state = self._upload_and_commit(flush)
            self.store_seconds += time.perf_counter() - began
        except Fenced as exc:
            flush.failure = exc
        except Exception as exc:  # noqa: BLE001 - every failure is reported to its callers
            failure = FlushFailed(
                f"{self.where}: flush failed ({type(exc).__name__}: {exc}); retry the batch with the same "
                "batch id — it is stored exactly once, also if this commit did land"
            )
            failure.__cause__ = exc
            flush.failure = failure

    def finish(self, flush: Flush) -> list[tuple[Append, int | Exception]]:
        """The outcome of each append the flush settles: rows written, or the error.

        A flush's own failure also fails every append buffered behind it; a
        flush that failed with the one before it fails only itself (what was
        buffered then is failed already, what came later flushes as usual).
        """
        settled: list[tuple[Append, int | Exception]]
        failure = flush.failure
        if failure is None:
            self.flushes += 1
            self.flushed_rows += flush.rows
            self.flush_seconds += time.perf_counter() - flush.began
            settled = [(a, flush.refused.get(id(a)) or a.table.num_rows) for a in flush.appends]
        else:
            appends = list(flush.appends)
            if not flush.behind:
                self.failed_flushes += 1
                self._last_failure = failure
                if isinstance(failure, Fenced):
                    self.fenced = self.fenced or failure
                else:
                    self._failures += 1  # the commit may have landed all the same: state is reloaded before use
                appends += self._take_buffer()
            settled = [(a, failure) for a in appends]
        self.held_bytes -= flush.size
        for append, _ in settled:
            if self._pending.get(append.batch_id) is append:
                del self._pending[append.batch_id]
        return settled

    def resync(self) -> None:
        """Bring ``state`` back in line with the log after a failed flush (a no-op when it is in line).

        Any failure but a fence may have come after the commit landed, so the
        log is read again before a batch id is checked or a commit is based
        on ``state``: a retry of a landed batch is then acknowledged, not
        stored twice.
        """
        if not self.stale:
            return
        failures = self._failures
        try:
            self.state = self.log.load()
        except Exception as exc:  # noqa: BLE001 - a transient store error: the caller retries
            raise FlushFailed(
                f"{self.where}: could not read its log ({type(exc).__name__}: {exc}); nothing was stored — "
                "retry the batch with the same batch id"
            ) from exc
        self._synced = failures  # a flush that failed meanwhile makes it stale again

    def _take_buffer(self) -> list[Append]:
        taken, self._buffer = self._buffer, []
        self.held_bytes -= sum(a.size for a in taken)
        self.buffered_rows = self.buffered_bytes = 0
        self._urgent = False
        return taken

    def _upload_and_commit(self, flush: Flush) -> PartitionState:
        """Upload the flush's segments and commit them with its batch ids and offsets."""
        for entry, data in flush.segments:
            self.store.put(f"{self.meta.path}/{entry.path}", data)
        committed = flush.committed
        offsets = records([o for a in committed for o in a.offsets], self.state.offsets)
        return self.log.commit(
            self.state,
            epoch=self.epoch,
            added=[entry for entry, _ in flush.segments],
            offsets=offsets,
            batch_ids=[a.batch_id for a in committed],
        )

    def status(self) -> dict[str, Any]:
        """What the owner is doing, for tests, monitors and the CLI."""
        return {
            "partition": self.partition,
            "epoch": self.epoch,
            "fenced": self.fenced is not None,
            "version": self.state.version,
            "buffered_rows": self.buffered_rows,
            "held_bytes": self.held_bytes,
            "flushes": self.flushes,
            "flushed_rows": self.flushed_rows,
            "flush_seconds": round(self.flush_seconds, 3),
            "encoders": self.encoders,
            "encode_seconds": round(self.encode_seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
            "pid": os.getpid(),
            "time": time.time(),
        }
