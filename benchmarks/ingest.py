"""Ingestion throughput: events/s into committed segments, beside the physical limit.

Measures (a) Arrow batches of 10k rows and (b) JSON lines in batches of 10k
lines, each with 1 and 2 ingest actors (partitions), sent by 16 and by 64
client threads of one session (each call waits for its commit, so the
threads bound the rows in flight: 16 threads keep 160k rows on their way,
about a tenth of a second of ingestion); and the physical limit: the same
rows written by ``pyarrow.parquet.write_table`` alone (with the segments' codec, to local disk)
— once with its defaults (one row group for the whole table) and once with
the row groups a segment has (``limit@seg``).  The machine's speed drifts by
tens of percent within minutes, so the limit is measured right before every
run of a case and after its last: a case is compared with the best limit of
its own window (``of limit``) and, beside that, with the best limit of the
whole benchmark (``of run's best``), which a fast spell elsewhere can
raise.  A run counts from the first batch
sent to the last commit acknowledged, on a Ray that is already running (one
for all runs; each run is a new session with new owners), with the owner
actors already started (each has committed one batch) and background
maintenance off (compaction has its own benchmark,
benchmarks/maintenance.py).  Prints a table and writes JSON.

    python benchmarks/ingest.py [--events 2000000] [--threads 16,64] [--repeat 3] [--out benchmarks/results/ingest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402
from engine.ingest.router import stable_hash  # noqa: E402
from engine.runtime import ensure_ray  # noqa: E402
from storage.segment import COMPRESSION, DEFAULT_ROW_GROUP_SIZE  # noqa: E402
from storage.snapshot import load_snapshot  # noqa: E402

BATCH_ROWS = 10_000


def events(n: int, seed: int = 7) -> pa.Table:
    """``n`` realistic log events: time, service, level, message, HTTP status and latency, ids."""
    rng = np.random.default_rng(seed)
    start = 1_793_491_200_000_000  # 2026-11-01T00:00Z in microseconds
    micros = start + np.sort(rng.integers(0, 3 * 3600 * 1_000_000, n))
    services = np.array(["api", "auth", "billing", "search", "web", "worker"])
    levels = np.array(["debug", "info", "info", "info", "warn", "error"])
    status = np.array([200, 200, 200, 201, 204, 301, 400, 404, 500])
    return pa.table(
        {
            "timestamp": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "service": pa.array(services[rng.integers(0, len(services), n)]),
            "level": pa.array(levels[rng.integers(0, len(levels), n)]),
            "message": pa.array([f"request {i} handled" for i in range(n)]),
            "http": pa.StructArray.from_arrays(
                [pa.array(status[rng.integers(0, len(status), n)]), pa.array(rng.gamma(2.0, 20.0, n))],
                names=["status_code", "latency_ms"],
            ),
            "user_id": pa.array(rng.integers(0, 1_000_000, n)),
            "event_id": pa.array(np.arange(n, dtype=np.int64)),
        }
    )


def json_lines(table: pa.Table) -> list[bytes]:
    """The table as JSON-lines batches of BATCH_ROWS lines (ISO-8601 times, nested http)."""
    out = []
    for start in range(0, table.num_rows, BATCH_ROWS):
        rows = table.slice(start, BATCH_ROWS).to_pylist()
        out.append("\n".join(json.dumps({**r, "timestamp": r["timestamp"].isoformat()}) for r in rows).encode())
    return out


def physical_limit(table: pa.Table, folder: str, repeat: int = 3, **options) -> float:
    """Events/s of pyarrow.parquet.write_table writing the same rows (the segments' codec, local disk); best of ``repeat``."""
    flat = table.flatten()
    best = 0.0
    for _ in range(repeat):
        began = time.perf_counter()
        pq.write_table(flat, os.path.join(folder, "limit.parquet"), compression=COMPRESSION, **options)
        best = max(best, table.num_rows / (time.perf_counter() - began))
    return best


def warm_up(db, partitions: int) -> int:
    """One small batch through every owner, so each has flushed and committed once; returns rows written.

    A run measures a running service: not the first Parquet write, log read
    and import of an owner that just started.
    """
    written, index = set(), 0
    while len(written) < partitions:
        batch_id = f"warm-{index}"
        partition = stable_hash(batch_id) % partitions  # where the router sends a batch without a key
        if partition not in written:
            db.ingest("events", [{"timestamp": "2026-01-01T00:00:00Z", "event_id": -1 - partition}], batch_id=batch_id)
            written.add(partition)
        index += 1
    return partitions


def run(batches: list, partitions: int, threads: int, folder: str, label: str) -> dict:
    root = os.path.join(folder, f"wh-{label}-{partitions}")
    db = engine.connect(root, maintenance=False)
    db.create_table("events", partitions=partitions)
    warm = warm_up(db, partitions)
    client = db.ingestion.client("events")
    queue = list(enumerate(batches))
    lock = threading.Lock()
    accepted = []

    def send() -> None:
        while True:
            with lock:
                if not queue:
                    return
                index, batch = queue.pop(0)
            accepted.append(db.ingest("events", batch, batch_id=f"{label}-{index}").accepted)

    began = time.perf_counter()
    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    owners = [ray.get(client.owner(p).status.remote()) for p in range(partitions)]
    snapshot = load_snapshot(db.store, db.table("events"))
    rows = sum(accepted)
    assert snapshot.rows == rows + warm, (snapshot.rows, rows)
    result = {
        "input": label,
        "actors": partitions,
        "events": rows,
        "seconds": round(elapsed, 3),
        "events_per_s": round(rows / elapsed),
        "segments": len(snapshot.segments),
        # seconds spent encoding (summed over the encoders) and storing, per owner
        "owner_encode_seconds": [o["encode_seconds"] for o in owners],
        "owner_store_seconds": [o["store_seconds"] for o in owners],
    }
    db.close()
    shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--threads", default="16,64", help="client thread counts to run, comma-separated")
    parser.add_argument("--inputs", default="arrow,jsonl", help="which inputs to run: arrow, jsonl")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "ingest.json"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    thread_counts = [int(t) for t in str(args.threads).split(",")]
    table = events(args.events)
    arrow_batches = [table.slice(s, BATCH_ROWS) for s in range(0, table.num_rows, BATCH_ROWS)]
    jsonl_batches = json_lines(table)
    folder = tempfile.mkdtemp(prefix="petrel-bench-")
    started_ray = ensure_ray()  # one Ray for every run, as a service has: each session attaches to it
    try:
        limits = [physical_limit(table, folder)]  # every measurement, in order
        # the same, with the row groups every segment has (storage.segment's writer settings)
        limit_segments = physical_limit(table, folder, row_group_size=DEFAULT_ROW_GROUP_SIZE, use_dictionary=True)
        results = []
        inputs = [(k, b) for k, b in (("arrow", arrow_batches), ("jsonl", jsonl_batches)) if k in args.inputs]
        for label, batches in inputs:
            for threads in thread_counts:
                for partitions in (1, 2):
                    window, tries = [], []
                    for i in range(args.repeat):  # the limit right before every run, and after the last
                        window.append(physical_limit(table, folder))
                        tries.append(run(batches, partitions, threads, folder, f"{label}{i}"))
                    window.append(physical_limit(table, folder))
                    limits.extend(window)
                    result = max(tries, key=lambda r: r["events_per_s"])
                    result["input"] = label
                    result["threads"] = threads
                    result["limit_window"] = round(max(window))
                    result["limit_window_measurements"] = [round(x) for x in window]
                    result["of_limit"] = round(result["events_per_s"] / max(window), 3)
                    result["events_per_s_per_core"] = round(result["events_per_s"] / cores)
                    results.append(result)
                    print(f"  {label} x{partitions}, {threads} threads: {result['events_per_s']:,} events/s in "
                          f"{result['seconds']} s; owners encoding {result['owner_encode_seconds']} s, storing "
                          f"{result['owner_store_seconds']} s", file=sys.stderr)
        limit = max(limits)
        limit_segments = max(limit_segments, physical_limit(
            table, folder, row_group_size=DEFAULT_ROW_GROUP_SIZE, use_dictionary=True))
        for result in results:
            result["of_run_limit"] = round(result["events_per_s"] / limit, 3)
            result["of_limit_segment_settings"] = round(result["events_per_s"] / limit_segments, 3)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if started_ray:
            ray.shutdown()
    print(f"\nIngestion, {args.events:,} events, batches of {BATCH_ROWS:,}, {cores} cores")
    print(f"{'input':<9}{'actors':>7}{'threads':>8}{'events/s':>14}{'per core':>12}{'limit there':>13}"
          f"{'of limit':>10}{'of run best':>13}{'of limit@seg':>14}{'segments':>10}")
    print(f"{'limit':<9}{'-':>7}{'-':>8}{limit:>14,.0f}{limit / cores:>12,.0f}{'':>13}{'':>10}{1:>13.0%}"
          f"{'':>14}{1:>10}")
    print(f"{'limit@seg':<9}{'-':>7}{'-':>8}{limit_segments:>14,.0f}{limit_segments / cores:>12,.0f}{'':>13}"
          f"{'':>10}{'':>13}{1:>14.0%}{'':>10}")
    for r in results:
        print(f"{r['input']:<9}{r['actors']:>7}{r['threads']:>8}{r['events_per_s']:>14,}"
              f"{r['events_per_s_per_core']:>12,}{r['limit_window']:>13,}{r['of_limit']:>10.0%}"
              f"{r['of_run_limit']:>13.0%}{r['of_limit_segment_settings']:>14.0%}{r['segments']:>10}")
    print(f"(load average while running: {os.getloadavg()[0]:.1f}; the limit measured "
          f"{min(limits):,.0f} to {max(limits):,.0f} events/s; 'limit there': the best of a case's own window)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"events": args.events, "batch_rows": BATCH_ROWS, "threads": thread_counts, "cores": cores,
                   "limit_events_per_s": round(limit), "limit_measurements": [round(x) for x in limits],
                   "limit_segment_settings_events_per_s": round(limit_segments),
                   "load_average": round(os.getloadavg()[0], 2), "runs": results}, handle, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
