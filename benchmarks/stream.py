"""Streaming ingestion: events/s from NATS JetStream into a table, and publish-to-queryable latency.

A real ``nats-server -js`` runs on loopback (``engine/streams/local_broker``).
Events are realistic JSON log lines, ``--per-message`` of them to a message
(JSON lines, as log shippers batch them).

- **throughput**: with the table's consumers and owners already running (a
  warm-up message stored), ``--events`` events are published as fast as the
  publisher can; the run counts from the first publish to the moment every
  event is committed.  Once into a plain table, once into a table with a
  five-step transform (lower, CAST of a regexp extraction, a JSON path,
  ``parse_kv``, and a WHERE that drops the debug events), each with
  ``--partitions`` partitions, read by ``--lanes`` consumers (default one,
  which feeds every partition).  The CPU seconds of the publisher, the
  broker, the consumers and the owners are measured too: on a machine
  shared with other work the rate says little, the events per CPU second
  say what two idle cores could do at most (Ray's own daemons not counted).
- **freshness**: events are published at ``--rate`` events/s for
  ``--seconds`` with JetStream acknowledgements (so each message's stream
  sequence and publish time are known); afterwards the table's commit log
  says when each sequence was committed (a commit's offset and timestamp):
  an event is queryable once every partition its lane writes has committed
  through its sequence; its latency is that time minus its publish time.
  Reported: p50, p99, max.  ``--flush-interval`` is the consumers'
  gathering bound (the freshness they aim at).

Targets (2 cores): 200,000 events/s as JSON; p99 freshness under 2 s; the
transform keeping at least 70% of the plain throughput.  Prints a table and
writes JSON.

    python benchmarks/stream.py [--events 2000000] [--per-message 100] [--rate 50000] [--seconds 20]
                                [--partitions 2] [--lanes 1] [--flush-interval 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402
from engine.streams.consumer import StreamOptions  # noqa: E402
from engine.streams.local_broker import LocalNats  # noqa: E402
from storage.log import PartitionLog  # noqa: E402

TRANSFORM = """SELECT * EXCLUDE (payload), lower(level) AS level,
       CAST(regexp_extract(message, 'status=(\\d+)', 1) AS INT) AS status,
       json_extract_string(payload, '$.user.id') AS user_id,
       parse_kv(message, 'path') AS path
FROM input WHERE level <> 'DEBUG'"""


def payloads(events: int, per_message: int, seed: int = 11) -> list[bytes]:
    """``events`` JSON log lines, ``per_message`` to a message."""
    rng = np.random.default_rng(seed)
    services = ["api", "auth", "billing", "search", "web", "worker"]
    levels = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]
    paths = ["/api/cart", "/api/items", "/login", "/api/pay", "/health"]
    start = 1_793_491_200.0
    messages = []
    for first in range(0, events, per_message):
        count = min(per_message, events - first)
        lines = []
        for i in range(first, first + count):
            lines.append(json.dumps({
                "timestamp": start + i * 0.001, "id": i, "service": services[i % 6], "level": levels[int(rng.integers(6))],
                "message": f"GET {paths[i % 5]} status={200 + int(rng.integers(5)) * 100} path={paths[i % 5]} "
                           f"latency_ms={int(rng.integers(1, 900))}",
                "payload": json.dumps({"user": {"id": f"u{int(rng.integers(5000))}"}, "bytes": int(rng.integers(9999))}),
            }, separators=(",", ":")))
        messages.append("\n".join(lines).encode())
    return messages


async def _setup_stream(url: str, name: str) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"], duplicate_window=60)
    await nc.close()


async def _publish_fast(url: str, subject: str, messages: list[bytes]) -> float:
    """Core-NATS publishes (the stream captures them), flushed; returns when the last was sent."""
    import nats

    nc = await nats.connect(url)
    for index, data in enumerate(messages):
        await nc.publish(subject, data)
        if index % 500 == 499:
            await nc.flush()
    await nc.flush()
    await nc.close()
    return time.time()


async def _publish_paced(url: str, subject: str, messages: list[bytes], per_second: float) -> dict[int, float]:
    """JetStream publishes at a steady pace; returns each message's stream sequence -> publish time."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    sent: dict[int, float] = {}
    began = time.monotonic()
    pending = []
    for index, data in enumerate(messages):
        due = began + index / per_second
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        published = time.time()
        pending.append((published, asyncio.ensure_future(js.publish(subject, data, timeout=10))))
        if len(pending) >= 64:
            for when, future in pending:
                sent[(await future).seq] = when
            pending = []
    for when, future in pending:
        sent[(await future).seq] = when
    await nc.close()
    return sent


def commit_times(db, table: str) -> dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]:
    """Per (lane, lanes, partition): the last sequence and the time of each commit carrying the lane's offset."""
    meta = db.table(table)
    out: dict[tuple[int, int, int], list[tuple[int, float]]] = {}
    for partition in range(meta.partitions):
        log = PartitionLog(db.store, meta.path, partition)
        commits, _ = log.versions()
        for version in commits:
            record = log.record(version)
            for key, offset in (record.get("offsets") or {}).items():
                if key.startswith("nats:") and isinstance(offset, dict) and "/rejected/" not in key:
                    lane, lanes = (int(n) for n in key.rsplit("#", 1)[1].split("/"))
                    out.setdefault((lane, lanes, partition), []).append(
                        (int(offset["last"]), float(record["timestamp"])))
    return {key: (np.array([c[0] for c in sorted(commits)]), np.array([c[1] for c in sorted(commits)]))
            for key, commits in out.items()}


def queryable_at(commits: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]], sequence: int) -> float | None:
    """When message ``sequence`` was queryable: every partition its lane writes had committed through it."""
    latest = None
    for (lane, lanes, _), (marks, times) in commits.items():
        if sequence % lanes != lane:
            continue
        index = int(np.searchsorted(marks, sequence))  # the partition's first commit whose offset reaches it
        if index >= len(marks):
            return None
        latest = times[index] if latest is None else max(latest, times[index])
    return latest


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """User + system CPU seconds used so far by each group of processes (a process gone counts nothing)."""
    import psutil

    out = {}
    for group, members in pids.items():
        total = 0.0
        for pid in members:
            try:
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        out[group] = total
    return out


def processes(db, handle, server: LocalNats, table: str) -> dict[str, list[int]]:
    """The processes a stream's events go through: publisher (this one), broker, consumers, owners."""
    client = db.ingestion.client(table)
    owners = [ray.get(client.owner(p).status.remote())["pid"] for p in range(db.table(table).partitions)]
    return {"publisher": [os.getpid()], "broker": [server.process.pid],
            "consumer": [s["pid"] for s in handle.status()], "owners": owners}


def throughput(db, server: LocalNats, table: str, stream: str, events: int, per_message: int,
               transform: str | None, partitions: int, lanes: int, options: StreamOptions) -> dict:
    db.create_table(table, partitions=partitions, transform=transform)
    handle = db.ingest_stream(table, server.url, subject=f"{stream.lower()}.>", stream=stream,
                              durable=f"bench-{table}", options=options, lanes=lanes)
    try:
        warm = asyncio.run(_publish_fast(server.url, f"{stream.lower()}.warm", payloads(per_message, per_message, 1)))
        handle.wait_caught_up(timeout=120)
        before = sum(s["events"] for s in handle.status())
        messages = payloads(events, per_message)
        pids = processes(db, handle, server, table)
        cpu_before = cpu_seconds(pids)
        began = time.time()
        asyncio.run(_publish_fast(server.url, f"{stream.lower()}.events", messages))
        published = time.time()
        handle.wait_caught_up(timeout=600)
        finished = time.time()
        cpu = {k: round(v - cpu_before[k], 2) for k, v in cpu_seconds(pids).items()}
        statuses = handle.status()
        stored = sum(s["events"] for s in statuses) - before
        spent = {k: round(sum(s[k] for s in statuses), 2)
                 for k in ("fetch_seconds", "fit_seconds", "deliver_seconds", "ack_seconds")}
    finally:
        handle.stop()
    del warm
    return {"case": f"throughput {'transform' if transform else 'plain'} json", "events": events,
            "stored": stored, "seconds": round(finished - began, 3), "publish_seconds": round(published - began, 3),
            "events_per_second": round(events / (finished - began)), "consumer_seconds": spent,
            "cpu_seconds": cpu, "events_per_cpu_second": round(events / max(sum(cpu.values()), 1e-9)),
            "load_average": round(os.getloadavg()[0], 2)}


def freshness(db, server: LocalNats, table: str, stream: str, rate: int, seconds: float, per_message: int,
              partitions: int, lanes: int, options: StreamOptions) -> dict:
    db.create_table(table, partitions=partitions)
    handle = db.ingest_stream(table, server.url, subject=f"{stream.lower()}.>", stream=stream,
                              durable=f"bench-{table}", options=options, lanes=lanes)
    try:
        asyncio.run(_publish_fast(server.url, f"{stream.lower()}.warm", payloads(per_message, per_message, 1)))
        handle.wait_caught_up(timeout=120)
        events = int(rate * seconds)
        messages = payloads(events, per_message)
        sent = asyncio.run(_publish_paced(server.url, f"{stream.lower()}.events", messages, rate / per_message))
        handle.wait_caught_up(timeout=300)
        statuses = handle.status()
        batches = sum(s["batches"] for s in statuses)
        spent = {k: round(sum(s[k] for s in statuses), 2)
                 for k in ("fetch_seconds", "fit_seconds", "deliver_seconds", "ack_seconds")}
    finally:
        handle.stop()
    commits = commit_times(db, table)
    latencies = []
    for sequence, published in sent.items():
        committed = queryable_at(commits, sequence)
        if committed is not None:
            latencies.append(committed - published)
    latencies = np.asarray(latencies)
    return {"case": "freshness json", "events": events, "rate": rate, "messages": len(sent),
            "p50_seconds": round(float(np.percentile(latencies, 50)), 3),
            "p99_seconds": round(float(np.percentile(latencies, 99)), 3),
            "max_seconds": round(float(latencies.max()), 3), "batches": batches,
            "consumer_seconds": spent, "load_average": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--lanes", type=int, default=1, help="consumers (each is sent the whole stream)")
    parser.add_argument("--flush-interval", type=float, default=StreamOptions.flush_interval,
                        help="the longest a consumer gathers a batch (seconds)")
    parser.add_argument("--rate", type=int, default=50_000, help="events/s published in the freshness run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the freshness run")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "stream.json"))
    args = parser.parse_args()
    options = StreamOptions(flush_interval=args.flush_interval, lag_interval=0.1)
    folder = tempfile.mkdtemp(prefix="petrel-stream-bench-")
    server = LocalNats(os.path.join(folder, "jetstream")).start()
    results = []
    try:
        db = engine.connect(os.path.join(folder, "warehouse"), maintenance=False)
        for number, transform in enumerate((None, TRANSFORM)):
            stream = f"BENCH{number}"
            asyncio.run(_setup_stream(server.url, stream))
            results.append(throughput(db, server, f"events{number}", stream, args.events, args.per_message,
                                      transform, args.partitions, args.lanes, options))
        asyncio.run(_setup_stream(server.url, "FRESH"))
        results.append(freshness(db, server, "fresh", "FRESH", args.rate, args.seconds, args.per_message,
                                 args.partitions, args.lanes, options))
        db.close()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    plain, transformed = results[0]["events_per_second"], results[1]["events_per_second"]
    print(f"\n{'case':<30} {'events':>10} {'events/s':>10} {'p50 s':>7} {'p99 s':>7}")
    for r in results:
        print(f"{r['case']:<30} {r['events']:>10,} {r.get('events_per_second', 0):>10,} "
              f"{r.get('p50_seconds', ''):>7} {r.get('p99_seconds', '')!s:>7}")
    for r in results[:2]:
        print(f"{r['case']}: consumer time (all lanes, warm-up included) {r['consumer_seconds']}")
        print(f"{r['case']}: CPU seconds by process {r['cpu_seconds']}, {r['events_per_cpu_second']:,} events per "
              f"CPU second (2 idle cores at most twice that), load average {r['load_average']}")
    print(f"transform keeps {transformed / plain:.0%} of the plain throughput")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"args": vars(args), "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
                   "transform_ratio": round(transformed / plain, 3), "runs": results}, handle, indent=2)


if __name__ == "__main__":
    main()
