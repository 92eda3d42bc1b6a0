"""How a lane cuts batches: payloads joined into one JSON-lines buffer, and batches closed by size or when idle."""

from __future__ import annotations

import asyncio
import threading

import nats
import numpy as np

from engine.ingest.parse import parse_json_lines
from engine.streams.consumer import StreamOptions, gather, joined_lines
from engine.streams.nats import NatsSource
from engine.streams.source import Message, SourceSpec


def _message(sequence: int, data: bytes) -> Message:
    return Message(sequence, "events.a", data, 0.0)


def test_joined_lines_number_rows_as_the_json_lines_parser_does():
    batch = [
        _message(5, b'{"a": 1}'),
        _message(6, b'{"a": 2}\n{"a": 3}\n'),
        _message(7, b"  \n\n"),
        _message(8, b'\r\n{"a": 4}\r\n\r\n  \n{"a": 5}\r\n'),
        _message(9, b'{"a": 6} broken'),
    ]
    payload, message_of = joined_lines(batch)
    sequences = np.array([m.sequence for m in batch])[message_of]
    assert sequences.tolist() == [5, 6, 6, 8, 8, 9]
    parsed = parse_json_lines(payload, 1 << 20)
    assert parsed.total == 6 and list(parsed.rejected) == [5]
    rows = [row for piece in parsed.pieces for row in piece.rows.tolist()]
    values = [v for piece in parsed.pieces for v in piece.table.column("a").to_pylist()]
    assert dict(zip(rows, values)) == {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}
    payload, message_of = joined_lines([_message(1, b" \n ")])
    assert payload == b"" and message_of.tolist() == []


async def _publish(url: str, count: int, size: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="EVENTS", subjects=["events.>"])
    for i in range(count):
        await js.publish("events.a", b'{"n": %d, "pad": "%s"}' % (i, b"x" * size))
    await nc.close()


async def _batches(url: str, options: StreamOptions, committing: bool) -> list[list[int]]:
    source = NatsSource(SourceSpec("nats", url, "events.>", "EVENTS", "cut"), 0, 1)
    await source.open(1)
    out = []
    try:
        while batch := await gather(source, options, lambda: committing, threading.Event()):
            out.append([m.sequence for m in batch])
    finally:
        await source.close()
    return out


def test_batches_close_at_max_batch_bytes_and_when_the_broker_has_nothing_more(nats_server):
    asyncio.run(_publish(nats_server.url, 20, 1000))
    by_size = StreamOptions(fetch_messages=2, max_batch_bytes=5_000, flush_interval=30.0, max_wait=0.05)
    batches = asyncio.run(_batches(nats_server.url, by_size, committing=False))
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    assert sum(batches, []) == list(range(1, 21))
    # owners free and nothing more in the stream: the batch goes at once, however long flush_interval is
    idle = StreamOptions(fetch_messages=50, flush_interval=30.0, max_wait=0.05)
    assert [len(b) for b in asyncio.run(_batches(nats_server.url, idle, committing=False))] == [20]
    # a commit in flight: the batch waits for more until flush_interval, then goes
    busy = StreamOptions(fetch_messages=50, flush_interval=0.3, max_wait=0.05)
    assert [len(b) for b in asyncio.run(_batches(nats_server.url, busy, committing=True))] == [20]
