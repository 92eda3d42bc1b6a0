"""Event-analytics queries: Petrel against DuckDB over the same Parquet files.

Generates a day of web/service events (``--rows``, default 10 million),
ingests them through ``Session.ingest`` and the ingest actors, one batch per
half hour (so a half-hour query touches one segment), then runs each query on
a warm Petrel session and on DuckDB reading the very same segment files, and
prints per-query times and the ratio.  Results go to ``--json`` as well.
``--direct`` writes and commits the segments without the ingest actors.

    PYTHONPATH=$PWD python benchmarks/query.py --rows 10000000

``--tpch 0.17`` adds TPC-H's 22 queries at that scale (about a million
lineitem rows), on the same session and DuckDB connection; ``--no-events``
runs only TPC-H.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import duckdb  # noqa: E402

import engine  # noqa: E402
from engine.demo import generate_day  # noqa: E402
from storage.log import PartitionLog  # noqa: E402
from storage.segment import write_segment  # noqa: E402

T = "web_events"
QUERIES: list[tuple[str, str]] = [
    ("count", f"SELECT count(*) FROM {T}"),
    ("count_errors", f'SELECT count(*) FROM {T} WHERE "http.status_code" >= 500'),
    ("error_rate_5m", f"""SELECT service, time_bucket(INTERVAL '5 minutes', timestamp) AS bucket,
        count_if("http.status_code" >= 500) * 100.0 / count(*) AS error_pct FROM {T}
        GROUP BY service, bucket ORDER BY error_pct DESC, bucket, service LIMIT 20"""),
    ("p99_by_endpoint", f"""SELECT endpoint, approx_quantile(latency_ms, 0.5) AS p50, approx_quantile(latency_ms, 0.99) AS p99
        FROM {T} GROUP BY endpoint ORDER BY endpoint"""),
    ("top_users", f"""SELECT user_id, count(*) AS n, sum(bytes) AS bytes FROM {T} WHERE user_id IS NOT NULL
        GROUP BY user_id ORDER BY n DESC, user_id LIMIT 10"""),
    ("half_hour_drilldown", f"""SELECT host, "http.status_code", count(*) AS n, avg(latency_ms) AS avg_ms FROM {T}
        WHERE timestamp >= TIMESTAMP '2026-11-02 14:00:00' AND timestamp < TIMESTAMP '2026-11-02 14:30:00'
        AND service = 'payments' GROUP BY ALL ORDER BY n DESC, host, "http.status_code" LIMIT 10"""),
    ("one_segment_count", f"""SELECT count(*), max(latency_ms) FROM {T}
        WHERE timestamp >= TIMESTAMP '2026-11-02 09:00:00' AND timestamp < TIMESTAMP '2026-11-02 09:20:00'"""),
    ("distinct_users_hourly", f"""SELECT date_trunc('hour', timestamp) AS hour, count(DISTINCT user_id) AS users
        FROM {T} GROUP BY hour ORDER BY hour"""),
    ("latency_by_region_service", f"""SELECT region, service, avg(latency_ms), max(latency_ms), count(*) FROM {T}
        GROUP BY region, service ORDER BY region, service"""),
    ("status_distribution", f'SELECT "http.status_code", count(*) FROM {T} GROUP BY 1 ORDER BY 1'),
    ("url_search", f"SELECT count(*) FROM {T} WHERE url LIKE '%/api/pay/12%'"),
    ("slowest_requests", f"SELECT timestamp, service, url, latency_ms FROM {T} ORDER BY latency_ms DESC, timestamp LIMIT 10"),
    ("sample_rows", f"SELECT * FROM {T} LIMIT 10"),
    ("median_by_service", f"SELECT service, median(latency_ms) FROM {T} GROUP BY service ORDER BY service"),
    ("stddev_by_host", f"SELECT host, stddev(latency_ms), avg(bytes) FROM {T} GROUP BY host ORDER BY host"),
    ("hourly_traffic", f"SELECT date_trunc('hour', timestamp) AS h, count(*), sum(bytes) FROM {T} GROUP BY h ORDER BY h"),
    ("error_heavy_users", f"""SELECT user_id, count(*) AS errors FROM {T} WHERE "http.status_code" >= 500 AND user_id IS NOT NULL
        GROUP BY user_id HAVING count(*) > 20 ORDER BY errors DESC, user_id LIMIT 20"""),
    ("method_status", f'SELECT "http.method", "http.status_code", count(*) FROM {T} GROUP BY 1, 2 ORDER BY 1, 2'),
]


def load(db, rows: int, direct: bool) -> list[str]:
    """Create the table and store the day; return the segment files (for DuckDB)."""
    meta = db.create_table(T, time_column="timestamp", sort_key=["service"], partitions=1)
    log = PartitionLog(db.store, meta.path, 0)
    state = log.load()
    windows = 48  # half hours: one segment each
    span = 86_400_000_000 // windows
    for index in range(windows):
        part = generate_day(rows // windows + (1 if index < rows % windows else 0), seed=index,
                            window=(index * span, (index + 1) * span))
        print(f"\r  loading half hour {index + 1}/{windows}", end="", file=sys.stderr, flush=True)
        if not direct:
            db.ingest(T, part, batch_id=f"bench-{index}")
            continue
        entry = write_segment(db.store, meta.path, part, partition=0, time_column="timestamp",
                              sort_key=meta.full_sort_key)
        state = log.commit(state, epoch=None, added=[entry])
    print(file=sys.stderr)
    snapshot_files = [f"{db.store.root}/{meta.path}/{s.path}" for s in db.queries.resolve(T).segments]
    return snapshot_files


def timed(run, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warehouse", help="reuse (or create) the warehouse here")
    parser.add_argument("--json", default="benchmarks/results/query.json")
    parser.add_argument("--direct", action="store_true", help="commit the segments directly, not through ingestion")
    parser.add_argument("--only", help="comma-separated query names to run (default: all)")
    parser.add_argument("--tpch", type=float, metavar="SCALE", help="also run the 22 TPC-H queries at this scale")
    parser.add_argument("--no-events", action="store_true", help="skip the event queries (with --tpch)")
    args = parser.parse_args()
    root = args.warehouse or tempfile.mkdtemp(prefix="petrel-bench-")
    db = engine.connect(root, maintenance=False)  # no background compaction competing with the timed queries
    duck = duckdb.connect()
    duck.execute("SET threads = 2")
    duck.execute("SET TimeZone = 'UTC'")
    rows = []
    if not args.no_events:
        rows = run_events(db, duck, args)
    tpch = []
    if args.tpch:
        from benchmarks.tpch.bench import run as run_tpch

        tpch = run_tpch(db, duck, args.tpch, args.repeat)
        total_ours = sum(r["petrel_s"] for r in tpch)
        total_theirs = sum(r["duckdb_s"] for r in tpch)
        print(f"{'TPC-H TOTAL':28s} petrel {total_ours * 1000:9.1f} ms   duckdb {total_theirs * 1000:9.1f} ms   "
              f"ratio {total_ours / total_theirs:6.2f}")
    report = {"rows": args.rows, "cpus": os.cpu_count(), "repeat": args.repeat, "queries": rows}
    if rows:
        report.update(total_petrel_s=sum(r["petrel_s"] for r in rows), total_duckdb_s=sum(r["duckdb_s"] for r in rows))
        report["total_ratio"] = report["total_petrel_s"] / report["total_duckdb_s"]
    if tpch:
        report["tpch"] = {"scale": args.tpch, "queries": tpch,
                          "total_petrel_s": sum(r["petrel_s"] for r in tpch),
                          "total_duckdb_s": sum(r["duckdb_s"] for r in tpch)}
        report["tpch"]["total_ratio"] = report["tpch"]["total_petrel_s"] / report["tpch"]["total_duckdb_s"]
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.json}")
    db.close()


def run_events(db, duck, args) -> list[dict]:
    """The event-analytics queries; their per-query figures."""
    if T in db.tables():
        files = [f"{db.store.root}/{db.table(T).path}/{s.path}" for s in db.queries.resolve(T).segments]
    else:
        started = time.perf_counter()
        files = load(db, args.rows, args.direct)
        print(f"loaded {args.rows:,} rows into {len(files)} segments in {time.perf_counter() - started:.1f} s")
    listing = ", ".join(f"'{f}'" for f in files)
    duck.execute(f"CREATE VIEW {T} AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")
    db.sql(f"SELECT count(*) FROM {T}")  # start the worker pool
    rows = []
    chosen = set(args.only.split(",")) if args.only else None
    for name, query in QUERIES:
        if chosen is not None and name not in chosen:
            continue
        db.sql(query)  # warm: footers cached, plan paths imported
        duck.sql(query).to_arrow_table()
        ours, result = timed(lambda: db.sql(query), args.repeat)
        theirs, _ = timed(lambda: duck.sql(query).to_arrow_table(), args.repeat)
        rows.append({"query": name, "petrel_s": ours, "duckdb_s": theirs, "ratio": ours / theirs if theirs else None,
                     "rows": result.num_rows})
        print(f"{name:28s} petrel {ours * 1000:9.1f} ms   duckdb {theirs * 1000:9.1f} ms   ratio {ours / theirs:6.2f}", flush=True)
    total_ours = sum(r["petrel_s"] for r in rows)
    total_theirs = sum(r["duckdb_s"] for r in rows)
    print(f"{'TOTAL':28s} petrel {total_ours * 1000:9.1f} ms   duckdb {total_theirs * 1000:9.1f} ms   ratio {total_ours / total_theirs:6.2f}")
    return rows


if __name__ == "__main__":
    main()
