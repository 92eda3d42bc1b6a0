"""Delivering a batch's slices to their owners, many appends to one Ray call, with retries.

A Ray call costs milliseconds of CPU across the caller, the raylet and the
actor, whatever it carries: on 2 cores, 200 calls of 1 MiB took 1.1 s of
CPU in all, 20 calls of 10 MiB 0.3 s.  So the appends a session's threads
send one owner travel together: an :class:`OwnerChannel` per owner has a
sender thread that takes every append queued while it was busy (up to
``CALL_BYTES``) and sends them as one :meth:`IngestActor.append_many`.  Each
caller then waits on that call's reply for its own append.  Nothing waits to
be gathered: one caller alone is sent at once.  While an earlier call of
the channel is still waiting for its commit, though, the next one lingers up
to ``LINGER_SECONDS`` (or until ``LINGER_BYTES`` are queued) for the callers
acknowledged together with it, who come back at nearly the same moment: on 2
cores, with 16 client threads, that halved the calls (1.2 to 2 appends each)
and raised two owners' throughput by a third.  The wait costs a few
milliseconds against a commit's hundred.

Appends travel as Arrow IPC (see ``transfer``): buffers that Ray carries
through its object store as they are, or files in shared memory for an
owner on this machine.  Handing Ray the tables themselves cost twice the
CPU on both sides (its pickling works array by array, in Python).

:func:`deliver` sends every slice of a batch and waits for their commits;
a slice that meets a dead or restarting owner, or a failed flush, is sent
again with the same batch id (acknowledged without writing twice if it
landed).  An owner that was fenced has stopped: the error is reported, not
retried (ownership moves only by an explicit claim).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
from ray.exceptions import GetTimeoutError, RayActorError

from engine.ingest.offsets import Offset
from engine.ingest.transfer import SharedRows, discard
from storage.errors import Fenced, FlushFailed, IngestError, IngestTimeout, SharedRowsMissing

CALL_BYTES = 64 << 20  # one call carries at most this much (at least one append)
IDLE_SECONDS = 30.0  # a sender with nothing to send for this long ends (the next append starts another)
LINGER_SECONDS = 0.005  # with a call in flight, the next waits this long for company (Kafka's linger.ms)
LINGER_BYTES = 8 << 20  # ... or until this much is queued


@dataclass
class Slice:
    """One partition's part of one batch, on its way to the owner; ``client`` is its table's ``TableClient``."""

    client: Any
    partition: int
    batch_id: str
    rows: pa.Table
    offsets: tuple[Offset, ...] = ()
    urgent: bool = False
    written: int | None = None
    data: pa.Buffer | SharedRows | None = None  # the rows as they travel, made when first sent
    first_sent: float | None = None  # when a retried slice was first sent (None: not a retry)


class Pending:
    """One append on its way: :meth:`result` waits for its commit."""

    def __init__(self) -> None:
        self.sent: Future = Future()  # (the call's reply, index) once the call is made

    def result(self, deadline: float) -> int:
        """Rows written (0: committed before); raises the append's own error.

        ``deadline`` is a ``time.monotonic()`` instant; past it,
        ``ray.exceptions.GetTimeoutError``.
        """
        try:
            reply, index = self.sent.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise GetTimeoutError("the append was not sent in time") from None
        try:
            outcome = reply.result(timeout=max(0.0, deadline - time.monotonic()))[index]
        except TimeoutError:
            raise GetTimeoutError("the append was not committed in time") from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class OwnerChannel:
    """Sends one owner's appends in batched calls; ``owner()`` gives the actor handle at each call."""

    def __init__(self, owner: Callable[[], Any], name: str) -> None:
        self._owner = owner
        self._name = name
        self._ready = threading.Condition()
        self._queue: list[tuple[tuple[str, Any, tuple[Offset, ...], bool, float | None], Pending]] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # calls sent whose reply has not come back

    def send(
        self, batch_id: str, data: pa.Buffer | SharedRows, offsets: tuple[Offset, ...], urgent: bool,
        first_sent: float | None = None,
    ) -> Pending:
        """Queue one append (its rows as Arrow IPC) for the next call."""
        pending = Pending()
        with self._ready:
            if self._closed:
                raise IngestError(f"{self._name}: the session was closed; open a new one to ingest")
            self._queue.append(((batch_id, data, offsets, urgent, first_sent), pending))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()
        return pending

    def close(self) -> None:
        """Stop the sender once what is queued has been sent."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            sender = self._thread
        if sender is not None and sender is not threading.current_thread():
            sender.join(timeout=10)

    def _take(self) -> list[tuple[tuple, Pending]] | None:
        """The oldest queued appends, up to CALL_BYTES (at least one); None: the sender ends.

        It ends once closed with nothing queued, or after IDLE_SECONDS without
        anything to send, so a channel its session forgot holds no thread.
        """
        with self._ready:
            if not self._queue and not self._closed:
                self._ready.wait_for(lambda: self._queue or self._closed, timeout=IDLE_SECONDS)
            if not self._queue:
                self._thread = None
                return None
            if self._in_flight:
                self._linger()
            size = count = 0
            for (_, data, *_), _ in self._queue:
                if count and size + len(data) > CALL_BYTES:
                    break
                size, count = size + len(data), count + 1
            taken, self._queue = self._queue[:count], self._queue[count:]
            return taken

    def _linger(self) -> None:
        """Wait (holding ``_ready``'s lock between waits) for more appends to join the queued ones."""
        until = time.monotonic() + LINGER_SECONDS
        while not self._closed and sum(len(item[1]) for item, _ in self._queue) < LINGER_BYTES:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._ready.wait(left)

    def _replied(self, _reply: Future) -> None:
        with self._ready:
            self._in_flight -= 1

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            try:
                ref = self._owner().append_many.remote([item for item, _ in taken])
            except BaseException as exc:  # noqa: BLE001 - e.g. the owner's name points at a dead actor
                for _, pending in taken:
                    pending.sent.set_exception(exc)
                continue
            with self._ready:
                self._in_flight += 1
            reply = ref.future()  # raises as ray.get would: the actor's death, or an error of the call
            reply.add_done_callback(self._replied)
            for index, (_, pending) in enumerate(taken):
                pending.sent.set_result((reply, index))


def deliver(slices: list[Slice], timeout: float, max_attempts: int) -> None:
    """Send every slice to its owner and wait for the commits, retrying what can be retried."""
    try:
        _deliver(slices, time.monotonic() + timeout, timeout, max_attempts)
    finally:
        for item in slices:
            discard(item.data)


def _deliver(slices: list[Slice], deadline: float, timeout: float, max_attempts: int) -> None:
    pending = list(slices)
    last_error: BaseException | None = None
    started = time.time()
    for attempt in range(max_attempts):
        if attempt:
            for item in pending:  # from now on a retry: its owner checks it is not too old to recognise
                item.first_sent = started if item.first_sent is None else item.first_sent
        sent = [item.client.send(item) for item in pending]
        failed, wait = [], False
        for item, outcome in zip(pending, sent):
            try:
                item.written = outcome.result(deadline)
            except GetTimeoutError:
                meta = item.client.meta
                raise IngestTimeout(
                    f"batch {item.batch_id} for {meta.namespace}.{meta.name} was not committed within "
                    f"{timeout:g} s; retry it with the same batch id"
                ) from None
            except SharedRowsMissing:  # nothing was buffered: send it through Ray at once
                item.client.not_shared(item)
                failed.append(item)
            except Fenced:
                raise  # the owner stopped: ownership moves only by an explicit claim
            except (RayActorError, FlushFailed) as exc:
                if isinstance(exc, RayActorError):
                    item.client.forget(item.partition)  # dead, or its name points at a gone actor
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
        f"{max_attempts} attempts (last error: {last_error}); retry with the same batch id"
    ) from last_error
