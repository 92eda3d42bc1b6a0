"""``petrel ingest-stream``: consume a stream into a table in the foreground (also as a Ray job).

It creates the table if it is missing (with ``--transform``, ``--partitions``,
``--time-column``) and, with ``--create-stream``, the JetStream stream;
then it prints each lane's progress every ``--status-every`` seconds until
it is interrupted (Ctrl-C, SIGTERM, ``ray job stop``) or ``--seconds`` have
passed (or, with ``--drain``, everything in the stream is stored), and stops after storing and acknowledging what is in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from typing import Any


def register(commands: Any) -> None:
    """Add the ``ingest-stream`` command to the CLI's subcommands."""
    stream = commands.add_parser("ingest-stream", help="consume a NATS JetStream stream into a table (foreground)")
    stream.add_argument("table")
    stream.add_argument("url", help="NATS server, e.g. nats://127.0.0.1:4222")
    stream.add_argument("--subject", required=True, help="subject filter, e.g. 'events.>'")
    stream.add_argument("--stream", required=True, help="JetStream stream name")
    stream.add_argument("--durable", required=True, help="durable consumer name (one per table)")
    stream.add_argument("--lanes", type=int, help="parallel consumers, each sent the whole stream (default 1, which feeds every partition)")
    stream.add_argument("--create-stream", action="store_true", help="create the stream for --subject if missing")
    stream.add_argument("--partitions", type=int, default=1, help="partitions when the table is created")
    stream.add_argument("--time-column", default="timestamp", help="time column when the table is created")
    stream.add_argument("--transform", help="ingest transform when the table is created (SELECT ... FROM input)")
    stream.add_argument("--status-every", type=float, default=5.0, help="seconds between progress lines")
    stream.add_argument("--seconds", type=float, help="stop after this long (default: run until interrupted)")
    stream.add_argument("--drain", action="store_true", help="stop once everything in the stream is stored")
    stream.set_defaults(run=run)


async def _ensure_stream(url: str, name: str, subject: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(name=name, subjects=[subject], duplicate_window=120)
    finally:
        await nc.close()


def run(session: Any, args: argparse.Namespace) -> int:
    if args.table not in session.tables():
        session.create_table(args.table, time_column=args.time_column, partitions=args.partitions,
                             transform=args.transform)
    if args.create_stream:
        asyncio.run(_ensure_stream(args.url, args.stream, args.subject))
    handle = session.ingest_stream(args.table, args.url, subject=args.subject, stream=args.stream,
                                   durable=args.durable, lanes=args.lanes)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    started = time.monotonic()
    print(f"ingesting {args.stream} ({args.subject}) into {args.table}; Ctrl-C stops", flush=True)
    try:
        while not stopping.wait(args.status_every):
            lanes = _print_status(handle)
            if args.seconds is not None and time.monotonic() - started >= args.seconds:
                break
            if args.drain and all(s.get("lag_messages") == 0 and not s.get("oldest_pending") for s in lanes):
                break
    finally:
        final = handle.stop()
    stored = sum(s.get("events", 0) for s in final)
    rejected = sum(s.get("rejected", 0) for s in final)
    print(f"stopped: {stored:,} events stored, {rejected:,} rejected", flush=True)
    return 0


def _print_status(handle: Any) -> list[dict[str, Any]]:
    lanes = handle.status()
    lag = handle.lag()
    stored = sum(s.get("events", 0) for s in lanes)
    rejected = sum(s.get("rejected", 0) for s in lanes)
    errors = [s["last_error"] for s in lanes if s.get("last_error")]
    print(f"{time.strftime('%H:%M:%S')} stored {stored:,} events, {rejected:,} rejected; lag {lag.messages:,} "
          f"messages, {lag.seconds:.1f} s" + (f"; last error: {errors[-1]}" if errors else ""), flush=True)
    return lanes
