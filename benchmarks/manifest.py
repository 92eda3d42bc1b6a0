"""Per-query cost on a table of many segments: snapshot refresh, planning, and manifest-only queries.

Builds a table of ``--segments`` small segments (default 10,000; a month
of hourly flushes from a few partitions looks like this before
compaction), committed a few hundred per commit, then measures on a warm
session:

- refresh: bringing the session's snapshot up to date when nothing moved,
  and after one new commit (only new log versions are read);
- planning: ``QueryEngine.plan`` for typical queries (refresh included);
- manifest-only queries (``count(*)``, min/max of the time column, over
  the table or a time range of whole segments): end to end through
  ``db.sql``, which reads no segment.

Targets (issue 17): planning plus refresh under 20 ms, a manifest-only
query under 10 ms.  Prints a table and writes JSON; it never asserts.

    PYTHONPATH=$PWD python benchmarks/manifest.py --segments 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import engine  # noqa: E402
from storage.log import PartitionLog  # noqa: E402
from storage.segment import write_segment  # noqa: E402

T = "hits"
HOUR = 3_600_000_000
START = int(dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)

PLANNED = [
    ("plan_day_groupby", f"""SELECT url, count(*) AS n FROM {T} WHERE EventTime >= TIMESTAMP '2026-10-05 00:00:00'
        AND EventTime < TIMESTAMP '2026-10-06 00:00:00' GROUP BY url ORDER BY n DESC LIMIT 10"""),
    ("plan_filtered_count", f"SELECT count(*) FROM {T} WHERE status >= 500"),
    ("plan_whole_groupby", f"SELECT status, count(*), avg(latency) FROM {T} GROUP BY status"),
]
MANIFEST = [
    ("count", f"SELECT count(*) FROM {T}"),
    ("time_bounds", f"SELECT min(EventTime), max(EventTime), count(*) FROM {T}"),
    ("count_one_day", f"""SELECT count(*) FROM {T} WHERE EventTime >= TIMESTAMP '2026-10-05 00:00:00'
        AND EventTime < TIMESTAMP '2026-10-06 00:00:00'"""),
]


def segment_rows(index: int, rows: int, rng: np.random.Generator) -> pa.Table:
    """``rows`` events inside hour ``index``."""
    times = START + index * HOUR + np.sort(rng.integers(0, HOUR, rows))
    return pa.table({
        "EventTime": pa.array(times, pa.timestamp("us", tz="UTC")),
        "url": pa.array([f"/page/{v}" for v in rng.integers(0, 500, rows)]),
        "status": pa.array(rng.choice([200, 200, 200, 301, 404, 500], rows)),
        "latency": pa.array(rng.lognormal(3, 1, rows)),
    })


def load(db, segments: int, partitions: int, per_commit: int, rows: int) -> None:
    meta = db.create_table(T, time_column="EventTime", partitions=partitions)
    rng = np.random.default_rng(1)
    logs = [PartitionLog(db.store, meta.path, p) for p in range(partitions)]
    states = [log.load() for log in logs]
    pending: list[list] = [[] for _ in range(partitions)]
    for index in range(segments):
        partition = index % partitions
        hour = index // partitions
        entry = write_segment(db.store, meta.path, segment_rows(hour, rows, rng), partition=partition,
                              time_column="EventTime")
        pending[partition].append(entry)
        if len(pending[partition]) >= per_commit or index >= segments - partitions:
            states[partition] = logs[partition].commit(states[partition], epoch=None, added=pending[partition])
            pending[partition] = []
        if index % 500 == 0:
            print(f"\r  writing segment {index + 1:,}/{segments:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def timed(run, repeat: int) -> tuple[float, float, object]:
    """Median and best seconds of ``repeat`` runs (the best shows the cost on a machine others share), and the result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20, help="rows per segment")
    parser.add_argument("--per-commit", type=int, default=250, help="segments per commit")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warehouse", help="reuse (or create) the warehouse here")
    parser.add_argument("--json", default="benchmarks/results/manifest.json")
    args = parser.parse_args()
    root = args.warehouse or tempfile.mkdtemp(prefix="petrel-manifest-")
    db = engine.connect(root, maintenance=False)
    if T not in db.tables():
        started = time.perf_counter()
        load(db, args.segments, args.partitions, args.per_commit, args.rows)
        print(f"wrote {args.segments:,} segments in {time.perf_counter() - started:.1f} s")
    queries = db.queries
    source = queries.resolve(T)
    results = []

    def report(name: str, seconds: float, best: float, target_ms: float | None, note: str = "") -> None:
        flag = "" if target_ms is None else ("ok" if seconds * 1000 <= target_ms else "OVER")
        target = f"{target_ms:g}" if target_ms is not None else "-"
        print(f"{name:26s} {seconds * 1000:10.2f} {best * 1000:10.2f} {target:>10s} {flag:>5s}  {note}", flush=True)
        results.append({"name": name, "median_s": seconds, "best_s": best, "target_ms": target_ms, "note": note})

    print(f"table: {len(source.segments):,} segments, {sum(s.rows for s in source.segments):,} rows")
    print(f"{'':26s} {'median ms':>10s} {'best ms':>10s} {'target ms':>10s}")
    median, best, _ = timed(lambda: queries.resolve(T), args.repeat)
    report("refresh_unchanged", median, best, None)
    for name, query in PLANNED:
        median, best, _ = timed(lambda: queries.plan(query), args.repeat)
        report(name, median, best, 20.0, "planning + refresh")
    for name, query in MANIFEST:
        db.sql(query)
        median, best, table = timed(lambda: db.sql(query), args.repeat)
        report(name, median, best, 10.0, f"answer {table.column(0)[0].as_py()}")
    meta = db.table(T)
    log = PartitionLog(db.store, meta.path, 0)
    entry = write_segment(db.store, meta.path, segment_rows(args.segments, args.rows, np.random.default_rng(2)),
                          partition=0, time_column="EventTime")
    log.commit(log.load(), epoch=None, added=[entry])
    started = time.perf_counter()
    refreshed = queries.resolve(T)
    seconds = time.perf_counter() - started
    report("refresh_after_one_commit", seconds, seconds, 20.0, f"{len(refreshed.segments):,} segments")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump({"segments": len(source.segments), "repeat": args.repeat, "cpus": os.cpu_count(),
                   "results": results}, handle, indent=2)
    print(f"wrote {args.json}")
    db.close()


if __name__ == "__main__":
    main()
