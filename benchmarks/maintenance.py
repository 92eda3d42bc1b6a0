"""Maintenance benchmark: a simulated day of streaming events, with compaction on and off.

Events arrive at a steady simulated rate; every partition flushes one segment
per flush interval (one per hour bucket it touches), the way ingestion
writes them.  The same stream is written three times:

* ``off``:      segments as flushed, never compacted;
* ``on``:       the same, with size-tiered compaction run after every
                simulated ``--compact-every`` minutes (what the background
                loop does), then a final settled pass and a vacuum as after
                the grace period (which also folds the commit log);
* ``sorted``:   the whole day written at once, sorted, in target-size segments.

It reports segments, bytes and the time of a small query set over each (the
best of ``--repeat`` runs), and compaction throughput in events per second of
compaction work.  It prints a table and writes JSON.  Not a test: it asserts
nothing about time.

    python -m benchmarks.maintenance --rate 25 --partitions 4 --out maintenance.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from storage.catalog import Catalog, TableMeta
from storage.compaction import CompactionPolicy, CompactionReport, compact_table, table_stats
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.schema import conform
from storage.segment import read_segment, split_by_bucket, write_segment
from storage.snapshot import Snapshot, load_snapshot
from storage.vacuum import VacuumReport, vacuum_table

DAY_START_US = 1_798_761_600_000_000  # 2027-01-01T00:00:00Z
SERVICES = np.array(["api", "web", "db", "auth", "billing", "search", "cart", "mail"])
LEVELS = np.array(["DEBUG", "INFO", "WARN", "ERROR"])


def event_batch(rng: np.random.Generator, start_us: int, seconds: float, rate: float) -> pa.Table:
    """The events of ``seconds`` simulated seconds from ``start_us`` at ``rate`` per second."""
    n = rng.poisson(rate * seconds)
    times = start_us + np.sort(rng.integers(0, int(seconds * 1e6), n))
    return pa.table({
        "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "service": pa.array(SERVICES[rng.integers(0, len(SERVICES), n)]),
        "level": pa.array(LEVELS[rng.choice(4, n, p=[0.1, 0.75, 0.1, 0.05])]),
        "status": pa.array(rng.choice([200, 201, 204, 301, 404, 500, 503], n,
                                      p=[0.6, 0.1, 0.1, 0.05, 0.1, 0.03, 0.02]).astype(np.int32)),
        "duration_ms": pa.array(np.round(rng.exponential(40.0, n), 3)),
        "user_id": pa.array(rng.integers(0, 50_000, n)),
        "message": pa.array(np.char.add("handled request ", rng.integers(0, 10**8, n).astype(str))),
    })


@dataclass
class Stream:
    """The simulated day, flush by flush: (simulated second, partition, table)."""

    rate: float
    partitions: int
    flush_seconds: float
    seed: int = 0
    events: int = 0

    def flushes(self):
        rng = np.random.default_rng(self.seed)
        for step in range(int(86400 / self.flush_seconds)):
            start = DAY_START_US + int(step * self.flush_seconds * 1e6)
            for partition in range(self.partitions):
                table = event_batch(rng, start, self.flush_seconds, self.rate / self.partitions)
                self.events += table.num_rows
                yield (step + 1) * self.flush_seconds, partition, table


def write_flush(store: ObjectStore, meta: TableMeta, state: PartitionState, table: pa.Table) -> PartitionState:
    """What an ingest actor's flush does: one sorted segment per hour bucket, one commit."""
    entries = [write_segment(store, meta.path, part, partition=state.partition, time_column=meta.time_column,
                             sort_key=meta.full_sort_key) for part in split_by_bucket(table, meta.time_column)]
    return PartitionLog(store, meta.path, state.partition).commit(state, epoch=state.epoch, added=entries)


@dataclass
class Run:
    name: str
    segments: int = 0
    bytes: int = 0
    rows: int = 0
    write_seconds: float = 0.0
    compaction: CompactionReport = field(default_factory=CompactionReport)
    compaction_seconds: float = 0.0
    vacuum: VacuumReport | None = None
    snapshot_seconds: float = 0.0
    queries: dict[str, float] = field(default_factory=dict)
    answers: dict[str, list] = field(default_factory=dict)


def stream_day(store: ObjectStore, meta: TableMeta, args: argparse.Namespace, compact: bool) -> Run:
    run = Run("on" if compact else "off")
    policy = CompactionPolicy(target_rows=args.target_rows)
    stream = Stream(args.rate, meta.partitions, args.flush_seconds, seed=args.seed)
    next_compaction = args.compact_every * 60
    started = time.perf_counter()
    owners = {p: PartitionLog(store, meta.path, p).claim() for p in range(meta.partitions)}
    for second, partition, table in stream.flushes():
        owners[partition] = write_flush(store, meta, owners[partition], table)
        if compact and partition == meta.partitions - 1 and second >= next_compaction:
            next_compaction += args.compact_every * 60
            t = time.perf_counter()
            run.compaction += compact_table(store, meta, policy)
            run.compaction_seconds += time.perf_counter() - t
    if compact:  # the day is over: every bucket has settled
        t = time.perf_counter()
        run.compaction += compact_table(store, meta, policy, full=True)
        run.compaction_seconds += time.perf_counter() - t
        # the background loop's vacuum, once the grace period has passed: removed segments go,
        # and the commit log is folded into one checkpoint
        run.vacuum = vacuum_table(store, meta, older_than=0)
    run.write_seconds = time.perf_counter() - started - run.compaction_seconds
    run.rows = stream.events
    return run


def write_sorted(store: ObjectStore, meta: TableMeta, args: argparse.Namespace) -> Run:
    """The same events, written once: per partition and hour, sorted, target-size segments."""
    run = Run("sorted")
    stream = Stream(args.rate, meta.partitions, args.flush_seconds, seed=args.seed)
    per_partition: dict[int, list[pa.Table]] = {p: [] for p in range(meta.partitions)}
    for _, partition, table in stream.flushes():
        per_partition[partition].append(table)
    started = time.perf_counter()
    for partition, tables in per_partition.items():
        entries = []
        for part in split_by_bucket(pa.concat_tables(tables), meta.time_column):
            for offset in range(0, part.num_rows, args.target_rows):
                entries.append(write_segment(store, meta.path, part.slice(offset, args.target_rows),
                                             partition=partition, time_column=meta.time_column,
                                             sort_key=meta.full_sort_key))
        log = PartitionLog(store, meta.path, partition)
        log.commit(log.load(), epoch=None, added=entries)
    run.write_seconds = time.perf_counter() - started
    run.rows = stream.events
    return run


# -- the query set: pruning by time range, then Arrow scans in parallel -------------------
HOUR_US = 3_600_000_000
QUERIES = {
    "count(*) whole day": dict(start=None, end=None, columns=["timestamp"], where=None, by=None),
    "errors by service, whole day": dict(start=None, end=None, columns=["service", "level"],
                                         where=("level", "ERROR"), by="service"),
    "p-ish: avg duration by service, one hour": dict(start=13, end=14, columns=["timestamp", "service", "duration_ms"],
                                                     where=None, by="service"),
    "5xx in a 10-minute window": dict(start=18, end=18 + 1 / 6, columns=["timestamp", "status"],
                                      where=("status", 500), by=None),
}


def run_query(store: ObjectStore, snapshot: Snapshot, spec: dict) -> list:
    lo = None if spec["start"] is None else DAY_START_US + int(spec["start"] * HOUR_US)
    hi = None if spec["end"] is None else DAY_START_US + int(spec["end"] * HOUR_US)
    segments = [s for s in snapshot.segments
                if (lo is None or s.max_time >= lo) and (hi is None or s.min_time < hi)]
    time_type = snapshot.schema.field("timestamp").type
    filt = None
    if lo is not None:
        filt = (ds.field("timestamp") >= pa.scalar(lo, pa.int64()).cast(time_type)) & (
            ds.field("timestamp") < pa.scalar(hi, pa.int64()).cast(time_type))
    if spec["where"] is not None:
        column, value = spec["where"]
        cond = ds.field(column) == value if column != "status" else ds.field(column) >= value
        filt = cond if filt is None else filt & cond
    schema = pa.schema([snapshot.schema.field(c) for c in spec["columns"]])

    def scan(entry):
        return conform(read_segment(store, snapshot.meta.path, entry, columns=spec["columns"], filter=filt), schema)

    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(scan, segments))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    if spec["by"] is None:
        return [table.num_rows]
    aggregate = [("duration_ms", "mean")] if "duration_ms" in spec["columns"] else [(spec["by"], "count")]
    result = table.group_by(spec["by"]).aggregate(aggregate).sort_by(spec["by"])
    return [[row[spec["by"]]] + [round(v, 6) if isinstance(v, float) else v for k, v in row.items() if k != spec["by"]]
            for row in result.to_pylist()]


def measure(store: ObjectStore, meta: TableMeta, run: Run, repeat: int) -> None:
    stats = table_stats(store, meta)
    run.segments, run.bytes = stats.segments, stats.bytes
    run.snapshot_seconds = min(_timed(load_snapshot, store, meta) for _ in range(repeat))
    for name, spec in QUERIES.items():
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            snapshot = load_snapshot(store, meta)
            run.answers[name] = run_query(store, snapshot, spec)
            best = min(best, time.perf_counter() - started)
        run.queries[name] = best


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=25.0, help="simulated events per second, whole table")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--flush-seconds", type=float, default=60.0, help="simulated seconds between flushes")
    parser.add_argument("--compact-every", type=float, default=60.0, help="simulated minutes between compactions")
    parser.add_argument("--target-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="warehouse root (default: a temporary folder)")
    parser.add_argument("--out", default="maintenance.json")
    args = parser.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="petrel-bench-")
    store = ObjectStore(root)
    catalog = Catalog(store)
    runs = []
    for name in ("off", "on", "sorted"):
        meta = catalog.create_table("bench", f"events_{name}", partitions=args.partitions, sort_key=["service"])
        run = write_sorted(store, meta, args) if name == "sorted" else stream_day(store, meta, args, name == "on")
        measure(store, meta, run, args.repeat)
        runs.append(run)
    baseline = runs[-1]
    mismatched = [r.name for r in runs if r.answers != baseline.answers]
    report = {
        "benchmark": "maintenance",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "args": vars(args),
        "events": baseline.rows,
        "answers_agree": not mismatched,
        "runs": [{
            "name": r.name, "segments": r.segments, "bytes": r.bytes, "rows": r.rows,
            "write_seconds": round(r.write_seconds, 3),
            "snapshot_seconds": round(r.snapshot_seconds, 4),
            "vacuum": None if r.vacuum is None else vars(r.vacuum),
            "query_seconds": {k: round(v, 4) for k, v in r.queries.items()},
            "query_total_seconds": round(sum(r.queries.values()), 4),
            "vs_sorted": round(sum(r.queries.values()) / sum(baseline.queries.values()), 2),
            "compaction": {
                "seconds": round(r.compaction_seconds, 3),
                "rows_rewritten": r.compaction.rows,
                "segments_removed": r.compaction.removed,
                "segments_added": r.compaction.added,
                "events_per_second": round(r.rows / r.compaction_seconds) if r.compaction_seconds else None,
                "rows_rewritten_per_second": round(r.compaction.rows / r.compaction_seconds)
                if r.compaction_seconds else None,
            },
        } for r in runs],
    }
    print(format_report(report))
    if mismatched:
        print(f"WARNING: query answers differ from the sorted table for: {', '.join(mismatched)}")
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.out}")
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['events']:,} events over a simulated day, {report['args']['partitions']} partitions, "
             f"a flush every {report['args']['flush_seconds']:g}s per partition",
             f"{'layout':<8} {'segments':>9} {'MiB':>8} {'snapshot s':>11} {'queries s':>10} {'vs sorted':>10} "
             f"{'compaction s':>13} {'events/s':>12} {'rewritten rows/s':>17}"]
    for r in report["runs"]:
        c = r["compaction"]
        lines.append(f"{r['name']:<8} {r['segments']:>9,} {r['bytes'] / 2**20:>8.1f} {r['snapshot_seconds']:>11.4f} "
                     f"{r['query_total_seconds']:>10.3f} "
                     f"{r['vs_sorted']:>9.2f}x {c['seconds']:>13.2f} "
                     f"{(c['events_per_second'] or 0):>12,} {(c['rows_rewritten_per_second'] or 0):>17,}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
