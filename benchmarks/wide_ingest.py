"""Wide-table ingest against ``pyarrow.parquet.write_table`` of the same rows.

A month of web-analytics-like rows with 105 columns (ints, low- and
high-cardinality strings, timestamps, dates) is sent through ``db.ingest``
in batches into a 2-partition table; the same rows are written once with
``write_table`` (with the segments' codec).  Prints the table and writes JSON to
``benchmarks/results/wide_ingest.json``.  The target (issue 17): ingest at
least 50% of ``write_table``'s speed.

    python -m benchmarks.wide_ingest                 # 1M rows, 250k-row batches
    python -m benchmarks.wide_ingest --rows 200000   # a short check
    python -m benchmarks.wide_ingest --profile out.prof   # cProfile of the ingest calls (this process)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402
from storage.segment import COMPRESSION  # noqa: E402
from storage.snapshot import load_snapshot  # noqa: E402

DAY_US = 86_400_000_000
START_US = 1_790_812_800_000_000  # 2026-10-01T00:00Z


def wide_rows(rows: int, seed: int = 7) -> pa.Table:
    """``rows`` hits over 31 days: 105 columns (60 ints, 35 strings, 5 timestamps, 4 dates, the event time)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    times = np.sort(START_US + rng.integers(0, 31 * DAY_US, rows))
    columns["EventTime"] = pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    for i in range(60):
        high = [2, 10, 1000, 1 << 20, 1 << 40][i % 5]
        columns[f"Int{i}"] = pa.array(rng.integers(0, high, rows), pa.int64())
    vocabularies = {}
    for i in range(35):
        cardinality = [5, 50, 2000, 50_000, 200_000][i % 5]
        if cardinality not in vocabularies:
            vocabularies[cardinality] = pa.array([f"https://example.com/page/{k}?q={k * 7919 % 10007}"
                                                  for k in range(cardinality)])
        indices = pa.array(rng.zipf(1.3, rows) % cardinality, pa.int32())
        columns[f"Str{i}"] = vocabularies[cardinality].take(indices)
    for i in range(5):
        columns[f"Time{i}"] = pa.array(times - rng.integers(0, DAY_US, rows), pa.int64()).cast(pa.timestamp("us"))
    for i in range(4):
        columns[f"Date{i}"] = pa.array((times // DAY_US - i).astype(np.int32), pa.int32()).cast(pa.date32())
    return pa.table(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=250_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--profile", help="write a cProfile of the ingest calls to this file")
    parser.add_argument("--spy", help="record the owners with py-spy into this folder (flame graphs)")
    args = parser.parse_args()
    table = wide_rows(args.rows)
    folder = tempfile.mkdtemp(prefix="petrel-wide-")
    began = time.perf_counter()
    pq.write_table(table, os.path.join(folder, "all.parquet"), compression=COMPRESSION)
    write_seconds = time.perf_counter() - began

    db = engine.connect(os.path.join(folder, "wh"), maintenance=False)
    db.create_table("hits", time_column="EventTime", partitions=args.partitions)
    db.ingest("hits", table.slice(0, 10))  # owners started and the schema recorded: not part of the measure
    spies = []
    if args.spy:
        os.makedirs(args.spy, exist_ok=True)
        for p in range(args.partitions):
            pid = ray.get(db.ingestion.client("hits").owner(p).status.remote())["pid"]
            spies.append(subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "-p",
                                           str(pid), "-o", os.path.join(args.spy, f"owner-{p}.txt"), "-f", "raw",
                                           "--idle", "-r", "50"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    profile = cProfile.Profile() if args.profile else None
    began = time.perf_counter()
    if profile:
        profile.enable()
    for start in range(10, args.rows, args.batch):
        db.ingest("hits", table.slice(start, args.batch))
    if profile:
        profile.disable()
        profile.dump_stats(args.profile)
    ingest_seconds = time.perf_counter() - began
    for spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    segments = len(load_snapshot(db.store, db.table("hits")).segments)
    owners = [ray.get(db.ingestion.client("hits").owner(p).status.remote()) for p in range(args.partitions)]
    db.close()
    result = {
        "rows": args.rows, "columns": table.num_columns, "batch": args.batch, "partitions": args.partitions,
        "write_table_s": round(write_seconds, 3), "ingest_s": round(ingest_seconds, 3),
        "speed_vs_write_table": round(write_seconds / ingest_seconds, 3), "segments": segments,
        "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
        "owner_encode_s": [o["encode_seconds"] for o in owners], "owner_store_s": [o["store_seconds"] for o in owners],
    }
    print(f"{'rows':>10} {'cols':>5} {'write_table s':>14} {'db.ingest s':>12} {'speed':>7} {'segments':>9}")
    print(f"{args.rows:>10,} {table.num_columns:>5} {write_seconds:>14.2f} {ingest_seconds:>12.2f} "
          f"{write_seconds / ingest_seconds:>6.0%} {segments:>9}")
    print(f"owners: encode {result['owner_encode_s']} s, store {result['owner_store_s']} s; "
          f"load average {result['load_average']:.1f} (a shared machine: compare interleaved runs)")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "wide_ingest.json"), "w") as out:
        json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
