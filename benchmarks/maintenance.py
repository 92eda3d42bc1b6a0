"""Maintenance benchmark: a simulated day of streaming events, with compaction on and off.

Events (the query benchmark's web events) arrive at a steady simulated rate:
every simulated flush interval, one batch goes through ``Session.ingest`` to
the table's ingest actors, each of which flushes its slice as one segment per
hour bucket it touches.  The same stream is written three times:

* ``off``:      segments as flushed, never compacted;
* ``on``:       the same, with the compaction actor run (``Session.compact``)
                after every simulated ``--compact-every`` minutes (what the
                background loop does), then a final settled pass and a vacuum
                as after the grace period (which also folds the commit log);
* ``sorted``:   the whole day written at once, sorted, in target-size segments.

It reports segments, bytes, snapshot load time and the time of the query
benchmark's queries (``benchmarks/query.py``) through the SQL engine on each
(the best of ``--repeat`` warm runs), and compaction throughput in events per
second of compaction work.

Then a live run (``--live-seconds``, 0 to skip): events are sent in real time
at ``--live-rate`` events per second through the ingest actors while the
session's background maintenance loop compacts beside them, as in
production.  It samples the table's segment and small-segment counts as it
goes, so it shows whether compaction keeps up (the live segment count stays
bounded instead of growing with every flush), and checks that every
acknowledged event is stored once.  It prints a table and writes JSON.  Not
a test: it asserts nothing about time.

    PYTHONPATH=$PWD python -m benchmarks.maintenance --rate 25 --partitions 2 --flush-seconds 60
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

import engine
from benchmarks.query import QUERIES
from engine.demo import generate_day
from engine.ingest.owner import IngestConfig
from engine.ingest.client import IngestOptions
from storage.catalog import TableMeta
from storage.compaction import CompactionPolicy, CompactionReport
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.segment import split_by_bucket, write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import VacuumReport

TABLE = "web_events"  # the query benchmark's table and queries
DAY_US = 86_400_000_000


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
        span = int(self.flush_seconds * 1e6)
        for step in range(DAY_US // span):
            for partition in range(self.partitions):
                rows = int(rng.poisson(self.rate * self.flush_seconds / self.partitions))
                table = generate_day(rows, seed=int(rng.integers(1 << 31)), window=(step * span, (step + 1) * span))
                self.events += table.num_rows
                yield (step + 1) * self.flush_seconds, partition, table



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
    answers: dict[str, int] = field(default_factory=dict)


def stream_day(db, args: argparse.Namespace, compact: bool) -> Run:
    """The day through the ingest actors, one batch per flush interval; compaction through its actor."""
    run = Run("on" if compact else "off")
    policy = CompactionPolicy(target_rows=args.target_rows)
    stream = Stream(args.rate, args.partitions, args.flush_seconds, seed=args.seed)
    db.ingestion.options = IngestOptions(actor=IngestConfig(max_age=0.01))  # one flush per batch, at once
    next_compaction = args.compact_every * 60
    started = time.perf_counter()
    pending: list[pa.Table] = []
    for second, partition, table in stream.flushes():
        pending.append(table)
        if partition < args.partitions - 1:
            continue
        db.ingest(TABLE, pa.concat_tables(pending), batch_id=f"{run.name}-{second:g}")
        pending = []
        if int(second) % 3600 == 0:
            print(f"  {run.name}: simulated hour {int(second) // 3600:2d}, {stream.events:,} events", flush=True)
        if compact and second >= next_compaction:
            next_compaction += args.compact_every * 60
            t = time.perf_counter()
            run.compaction += db.maintenance.compact(TABLE, progress=False, full=False, policy=policy)
            run.compaction_seconds += time.perf_counter() - t
    if compact:  # the day is over: every bucket has settled
        t = time.perf_counter()
        run.compaction += db.maintenance.compact(TABLE, progress=False, full=True, policy=policy)
        run.compaction_seconds += time.perf_counter() - t
        # the background loop's vacuum, once the grace period has passed: removed segments go,
        # and the commit log is folded into one checkpoint
        run.vacuum = db.vacuum(TABLE, older_than=0)
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


def measure(db, run: Run, repeat: int) -> None:
    """Segments and bytes, then each query of the query benchmark: warm once, best of ``repeat``."""
    stats = db.table_stats(TABLE)
    run.segments, run.bytes = stats.segments, stats.bytes
    meta = db.table(TABLE)
    run.snapshot_seconds = min(_timed(load_snapshot, db.store, meta) for _ in range(repeat))
    db.sql(f"SELECT count(*) FROM {TABLE}")  # start the worker pool
    for name, query in QUERIES:
        result = db.sql(query)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            result = db.sql(query)
            times.append(time.perf_counter() - started)
        run.queries[name] = min(times)
        run.answers[name] = result.num_rows


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def live(root: str, args: argparse.Namespace) -> dict:
    """Ingest at ``--live-rate`` events/s of wall-clock time with the background loop compacting beside it."""
    batch_rows = max(1, int(args.live_rate * args.live_tick))
    span = int(args.live_tick * 1e6)
    # the batches are made before the clock starts, so generating them costs the sender nothing
    batches = [generate_day(batch_rows, seed=1000 + i, window=(i * span, (i + 1) * span)) for i in range(16)]
    ticks = int(args.live_seconds / args.live_tick)
    samples: list[dict] = []
    acked = 0
    with engine.connect(root, namespace="live", maintenance={"interval": args.live_interval}) as db:
        db.create_table(TABLE, partitions=args.partitions, sort_key=["service"])
        db.ingest(TABLE, batches[0].slice(0, 1), batch_id="warm-up")  # start the ingest actors
        acked += 1
        started = time.perf_counter()

        def send(tick: int) -> int:
            return db.ingest(TABLE, batches[tick % len(batches)], batch_id=f"live-{tick}").accepted

        next_sample = 0.0
        with ThreadPoolExecutor(max_workers=args.live_senders) as senders:
            futures = []
            for tick in range(ticks):
                while True:  # send each batch on time; sample the table in the gaps
                    now = time.perf_counter() - started
                    if now >= tick * args.live_tick:
                        break
                    if now >= next_sample:
                        samples.append(_sample(db, now))
                        next_sample += args.live_sample
                    else:
                        time.sleep(min(tick * args.live_tick - now, next_sample - now, 0.05))
                futures.append(senders.submit(send, tick))
            for future in futures:
                acked += future.result()
        sent_seconds = time.perf_counter() - started
        samples.append(_sample(db, sent_seconds))
        status = db.maintenance.status()
        stored = db.sql(f"SELECT count(*) AS n FROM {TABLE}").column("n")[0].as_py()
    half = [s for s in samples if s["second"] >= sent_seconds / 2]
    return {
        "target_events_per_second": args.live_rate,
        "seconds": round(sent_seconds, 2),
        "events_acknowledged": acked,
        "events_stored": stored,
        "achieved_events_per_second": round(acked / sent_seconds),
        "commits": samples[-1]["commits"],
        "compaction": {"rows_rewritten": status.compaction.rows, "segments_removed": status.compaction.removed,
                       "segments_added": status.compaction.added, "seconds": round(status.compaction.seconds, 2),
                       "ticks": status.ticks, "errors": status.errors},
        "segments_max": max(s["segments"] for s in samples),
        "segments_max_second_half": max(s["segments"] for s in half),
        "segments_end": samples[-1]["segments"],
        "small_segments_end": samples[-1]["small_segments"],
        "samples": samples,
    }


def _sample(db, second: float) -> dict:
    stats = db.table_stats(TABLE)
    return {"second": round(second, 1), "segments": stats.segments, "small_segments": stats.small_segments,
            "rows": stats.rows, "commits": sum(v + 1 for v in stats.versions.values())}


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
    parser.add_argument("--live-seconds", type=float, default=60.0, help="length of the live run (0: none)")
    parser.add_argument("--live-rate", type=float, default=100_000.0, help="live events per second")
    parser.add_argument("--live-tick", type=float, default=0.25, help="seconds between live batches")
    parser.add_argument("--live-senders", type=int, default=8, help="client threads sending live batches")
    parser.add_argument("--live-interval", type=float, default=5.0, help="seconds between background rounds")
    parser.add_argument("--live-sample", type=float, default=2.0, help="seconds between live samples")
    parser.add_argument("--out", default="benchmarks/results/maintenance.json")
    args = parser.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="petrel-bench-")
    runs = []
    for name in ("off", "on", "sorted"):
        print(f"{name}: writing the day", flush=True)
        with engine.connect(root, namespace=name, maintenance=False) as db:
            meta = db.create_table(TABLE, partitions=args.partitions, sort_key=["service"])
            if name == "sorted":
                run = write_sorted(db.store, meta, args)
            else:
                run = stream_day(db, args, name == "on")
            measure(db, run, args.repeat)
        runs.append(run)
    baseline = runs[-1]
    mismatched = [r.name for r in runs if r.answers != baseline.answers]  # result sizes per query
    report = {
        "benchmark": "maintenance",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "args": {k: v for k, v in vars(args).items() if k not in ("root", "out")},
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
    if args.live_seconds > 0:
        print(f"live: {args.live_rate:,.0f} events/s for {args.live_seconds:g}s with background compaction", flush=True)
        report["live"] = live(root, args)
    print(format_report(report))
    if mismatched:
        print(f"WARNING: result sizes differ from the sorted table's for: {', '.join(mismatched)}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
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
    live_run = report.get("live")
    if live_run:
        c = live_run["compaction"]
        lines += [
            f"live: {live_run['achieved_events_per_second']:,} events/s acknowledged of "
            f"{live_run['target_events_per_second']:,.0f} asked, for {live_run['seconds']:g}s; "
            f"{live_run['events_acknowledged']:,} acknowledged, {live_run['events_stored']:,} stored",
            f"      background compaction: {c['rows_rewritten']:,} rows rewritten in {c['seconds']:g}s of "
            f"{c['ticks']} rounds; live segments at most {live_run['segments_max']} "
            f"({live_run['segments_max_second_half']} in the second half), {live_run['segments_end']} at the end "
            f"({live_run['small_segments_end']} small) after {live_run['commits']} commits",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
