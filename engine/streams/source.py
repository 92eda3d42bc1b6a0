"""What a streaming source provides, so each broker is a small module of its own.

A source is read in *lanes*: ordered sequences of messages, each message
numbered by a sequence that only grows within its lane (a JetStream stream
sequence, a Kafka partition's offset).  One consumer actor reads one lane
and routes its rows to the table partitions it serves (all of them with one
lane or a routing key, else the partitions p with ``p mod lanes == lane``); what it stored
is committed, per target partition, as the offset
``{"kind": "sequence", "last": <last sequence stored>, ...}`` under the lane's key, in the same
commit as the rows.  So a source must be able to:

- ``open(start)``: deliver the lane's messages from sequence ``start`` on;
- ``fetch``: give the next messages in sequence order (possibly none);
- ``ack(messages)``: tell the broker they are stored (after the commit; a
  broker that keeps its own cursor advances it, one that needs nothing may
  do nothing);
- ``backlog()``: how far the lane's newest message is ahead of a sequence.

A JetStream stream is by default one lane (its consumer reads it once and
feeds every partition).  A Kafka source would be: lane k = partition k of the topic
(its lanes by default the topic's partitions, each sent only its own
messages), ``open`` =
``assign`` + ``seek(start)``, ``fetch`` = ``consume``, ``ack`` = a commit of
the offset (for monitoring only: the table's log is the truth), ``backlog``
= the high watermark minus the offset; one module beside ``nats`` and a
branch in ``consumer.open_source``.  The consumer (batching, parsing,
routing, the offsets in the commits, acknowledging after them) and the
tests' invariants stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """One message of a lane: its sequence, subject (topic), payload and publish time (Unix seconds)."""

    sequence: int
    subject: str
    data: bytes
    published: float
    handle: Any = field(default=None, repr=False, compare=False)  # what the broker client needs to ack it


@dataclass(frozen=True)
class SourceSpec:
    """Where a lane's messages come from: enough to open it again in any process (it pickles)."""

    kind: str
    url: str
    subject: str
    stream: str
    durable: str
    options: dict[str, Any] = field(default_factory=dict)

    def lane_key(self, lane: int, lanes: int) -> str:
        """The offset key of one lane in the table's commits (stable across restarts)."""
        return f"{self.kind}:{self.stream}:{self.durable}#{lane}/{lanes}"


class Source(Protocol):
    """One lane of a broker, as a consumer reads it (see the module docstring)."""

    async def open(self, start: int) -> None: ...

    async def fetch(self, max_messages: int, timeout: float) -> list[Message]: ...

    async def ack(self, messages: list[Message]) -> None: ...

    async def backlog(self, stored_through: int) -> tuple[int, float]:
        """(messages after ``stored_through``, seconds since the first of them was published)."""
        ...

    async def close(self) -> None: ...

