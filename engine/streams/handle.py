"""Starting a stream's consumers, and the handle that watches and stops them.

``db.ingest_stream(table, url, subject=, stream=, durable=)`` starts one
:class:`~engine.streams.consumer.StreamConsumer` actor per lane (by default
one, which reads the stream once and feeds every partition of the table).  They are named after the warehouse,
table, stream and durable, so a second start of the same stream into the
same table is refused while the first runs; Ray restarts one that dies, and
it resumes from the committed sequence.  They belong to the process that
started them (a notebook, ``petrel ingest-stream``, a Ray job) and stop
with it.  A stream already stored in N lanes is resumed in N lanes: each
lane's watermarks are kept under its own key, so another lane count would
start from the stream's beginning and store its messages again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import ray

from engine.ingest.client import ACTOR_NAMESPACE
from engine.streams.consumer import StreamConsumer, StreamOptions
from engine.streams.source import SourceSpec
from storage.errors import IngestError
from storage.log import PartitionLog


@dataclass(frozen=True)
class StreamLag:
    """How far the table is behind the stream: messages not yet stored, and the age of the oldest of them."""

    messages: int
    seconds: float


class StreamHandle:
    """A running stream ingestion: ``status()``, ``lag()``, ``stop()``."""

    def __init__(self, table: str, spec: SourceSpec, actors: list[Any]) -> None:
        self.table = table
        self.spec = spec
        self.actors = actors

    def status(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Each lane's status: stored_through, events, rejected, batches, lag, errors, pid."""
        out = []
        for lane, actor in enumerate(self.actors):
            try:
                out.append(ray.get(actor.status.remote(), timeout=timeout))
            except Exception as exc:  # noqa: BLE001 - restarting: report it rather than fail the whole status
                out.append({"lane": lane, "running": False, "last_error": f"{type(exc).__name__}: {exc}"[:300]})
        return out

    def lag(self) -> StreamLag:
        """Messages of the stream not yet stored (all lanes), and seconds since the oldest was published."""
        lanes = self.status()
        messages = sum(s.get("lag_messages") or 0 for s in lanes)
        seconds = max([s.get("lag_seconds") or 0.0 for s in lanes] or [0.0])
        for s in lanes:
            if s.get("oldest_pending"):
                seconds = max(seconds, time.time() - s["oldest_pending"])
        return StreamLag(messages, round(seconds, 3))

    def wait_caught_up(self, timeout: float = 60.0, through: int | None = None) -> StreamLag:
        """Wait until every lane has stored what the stream holds (through sequence ``through``, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            lanes = self.status()
            done = all(s.get("lag_messages") == 0 and not s.get("oldest_pending") for s in lanes)
            if through is not None:
                done = done and all(s.get("stored_through", 0) >= through - s.get("lanes", 1) + 1 for s in lanes)
            if done:
                return self.lag()
            if time.monotonic() > deadline:
                raise IngestError(f"stream {self.spec.stream} into {self.table} did not catch up within "
                                  f"{timeout:g} s; status: {lanes}")
            time.sleep(0.1)

    def stop(self) -> list[dict[str, Any]]:
        """Store and acknowledge the batches in flight, then stop every lane's consumer."""
        final = []
        for actor in self.actors:
            try:
                final.append(ray.get(actor.stop.remote(), timeout=60))
            except Exception:  # noqa: BLE001 - already dead: nothing in flight to finish
                pass
            ray.kill(actor, no_restart=True)
        self.actors = []
        return final


def consumer_name(session: Any, table: str, spec: SourceSpec) -> str:
    meta = session.table(table)
    identity = f"{session.store.location}|{meta.path}|{meta.created_at!r}|{spec.kind}|{spec.stream}|{spec.durable}"
    return "stream-" + hashlib.sha1(identity.encode()).hexdigest()[:20]


def recorded_lanes(session: Any, meta: Any, spec: SourceSpec) -> set[int]:
    """The lane counts the table's logs hold watermarks of ``spec``'s stream and durable for."""
    prefix = spec.lane_key(0, 1).rsplit("#", 1)[0] + "#"
    counts = set()
    for partition in range(meta.partitions):
        for key in PartitionLog(session.store, meta.path, partition).load().offsets:
            if key.startswith(prefix) and "/rejected/" not in key:
                counts.add(int(key[len(prefix):].split("/")[1]))
    return counts


def start_stream(session: Any, table: str, url: str, *, subject: str, stream: str, durable: str,
                 lanes: int | None = None, options: StreamOptions | None = None,
                 source_options: dict[str, Any] | None = None, kind: str = "nats") -> StreamHandle:
    """Start consuming ``stream`` into ``table`` (see the module docstring); returns the handle."""
    meta = session.table(table)
    spec = SourceSpec(kind, url, subject, stream, durable, dict(source_options or {}))
    earlier = recorded_lanes(session, meta, spec)
    if lanes is None:
        lanes = min(earlier) if earlier else 1
    elif earlier and lanes not in earlier:
        raise IngestError(f"stream {stream} (durable {durable}) was stored in {session.namespace}.{table} in "
                          f"{min(earlier)} lanes, and lanes={lanes} would store its messages again; start it with "
                          f"lanes={min(earlier)} (or leave lanes out)")
    options = options or StreamOptions(ingest=session.ingestion.options)
    name = consumer_name(session, table, spec)
    actors = []
    for lane in range(lanes):
        try:
            ray.get_actor(f"{name}-{lane}", namespace=ACTOR_NAMESPACE)
        except ValueError:
            pass
        else:
            for started in actors:
                ray.kill(started, no_restart=True)
            raise IngestError(f"stream {stream} (durable {durable}) is already being ingested into "
                              f"{session.namespace}.{table}; stop that handle first")
        actors.append(
            ray.remote(StreamConsumer)
            .options(name=f"{name}-{lane}", namespace=ACTOR_NAMESPACE, max_restarts=-1, max_task_retries=0,
                     num_cpus=0, max_concurrency=4)
            .remote(session.store, session.namespace, table, spec, lane, lanes, options)
        )
    return StreamHandle(table, spec, actors)
