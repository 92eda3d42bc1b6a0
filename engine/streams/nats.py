"""The NATS JetStream source: one durable pull consumer per lane, positioned by the table's log.

By default a stream is read in one lane, whose consumer fetches it once and
feeds every partition's owner.  With K lanes, lane k keeps the messages
whose stream sequence is k modulo K: every lane's consumer is sent the
whole stream (the broker sends each message K times), so more lanes only
pay when parsing, not the broker, is what limits one lane.  When a lane opens, its durable consumer is created
afresh to start at the sequence after the one the table's commits say was
stored: the log, not the broker's cursor, is the truth, so nothing is
skipped and a restart need not wait for the broker's redelivery timer.
Messages are acknowledged only after the commit that stored them, with one
acknowledgement per batch (``AckPolicy.ALL``: the batch's last message
acknowledges every one before it, the other lanes' too); ``max_ack_pending`` bounds what one lane holds unacknowledged.
The client reconnects by itself when the server restarts; a fetch that fails
meanwhile makes the consumer open the lane again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from engine.streams.source import Message, SourceSpec

FETCH_ERRORS = (nats.errors.TimeoutError, asyncio.TimeoutError)


class NatsSource:
    """One lane of a JetStream stream (see the module docstring)."""

    def __init__(self, spec: SourceSpec, lane: int, lanes: int) -> None:
        self.spec = spec
        self.lane = lane
        self.lanes = lanes
        self.name = f"{spec.durable}-{lane}" if lanes > 1 else spec.durable
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self.last_error: str | None = None

    async def open(self, start: int) -> None:
        options = self.spec.options
        self._nc = await nats.connect(
            self.spec.url, connect_timeout=options.get("connect_timeout", 2), reconnect_time_wait=0.2,
            max_reconnect_attempts=-1, allow_reconnect=True, error_cb=self._connection_error,
        )
        self._js = self._nc.jetstream()
        try:
            await self._js.delete_consumer(self.spec.stream, self.name)
        except NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=self.name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start > 1 else DeliverPolicy.ALL,
            opt_start_seq=start if start > 1 else None,
            ack_policy=AckPolicy.ALL,
            ack_wait=options.get("ack_wait", 60.0),
            max_ack_pending=options.get("max_ack_pending", 200_000),
            filter_subject=self.spec.subject,
        )
        await self._js.add_consumer(self.spec.stream, config)
        self._sub = await self._js.pull_subscribe_bind(durable=self.name, stream=self.spec.stream)

    async def _connection_error(self, error: Exception) -> None:
        """The client reconnects by itself (the server restarting, say); a fetch meanwhile reopens the lane."""
        self.last_error = f"{type(error).__name__}: {error}"

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]:
        try:
            received = await self._sub.fetch(max_messages, timeout=timeout)
        except FETCH_ERRORS:
            return []
        mine = []
        for msg in received:
            meta = msg.metadata
            sequence = meta.sequence.stream
            if self.lanes == 1 or sequence % self.lanes == self.lane:
                mine.append(Message(sequence, msg.subject, msg.data, meta.timestamp.timestamp(), msg))
        return mine

    async def ack(self, messages: list[Message]) -> None:
        if messages:  # AckPolicy.ALL: the last acknowledges the batch (and the other lanes' messages before it)
            await messages[-1].handle.ack()

    async def backlog(self, stored_through: int) -> tuple[int, float]:
        info = await self._js.stream_info(self.spec.stream)
        last = info.state.last_seq
        if last <= stored_through:
            return 0, 0.0
        # this lane's sequences in (stored_through, last]
        count = (last - self.lane) // self.lanes - (stored_through - self.lane) // self.lanes
        if count <= 0:
            return 0, 0.0
        following = stored_through + 1
        following += (self.lane - following) % self.lanes
        first = max(following, info.state.first_seq)
        try:
            oldest = await self._js.get_msg(self.spec.stream, first)
            seconds = max(0.0, time.time() - oldest.time.timestamp())
        except Exception:  # noqa: BLE001 - removed meanwhile by the stream's limits: lag in messages only
            seconds = 0.0
        return count, seconds

    async def close(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # noqa: BLE001 - the connection is gone already
                pass
            self._nc = self._js = self._sub = None
