"""Web analytics over a month of wide hits: Petrel against DuckDB on one Parquet file.

Generates a month (31 days) of web-analytics hits with 106 columns
(``benchmarks/analytics_data.py``: late and out-of-order events, skewed
users, URLs and phrases), 1M rows by default (``--rows 10000000`` or
``--ten-million`` for 10M).  Loads them into Petrel through ``db.ingest`` in
250k-row batches into a 2-partition table (``time_column="EventTime"``),
then compacts it; writes the same rows to one Parquet file with
``pyarrow.parquet`` (the load-time baseline).  Then runs 36 typical
web-analytics queries on both (global and filtered counts, group-bys on low-
and high-cardinality strings, count distinct users, top URLs, LIKE filters,
per-minute series within one day, ``SELECT * ... ORDER BY EventTime LIMIT
10``, a few with OFFSET), each warmed once and timed as the median of
``--repeat`` runs, and checks every Petrel answer equals DuckDB's (in order
where the query fixes it).  Prints a table and writes JSON.  Not a test: it
asserts nothing about time.

    PYTHONPATH=$PWD python -m benchmarks.analytics              # 1M rows
    PYTHONPATH=$PWD python -m benchmarks.analytics --ten-million
    PYTHONPATH=$PWD python -m benchmarks.analytics --rows 50000 --repeat 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

import engine
from benchmarks.analytics_data import DAYS, START, Vocabulary, hits_batch
from storage.errors import IngestTimeout
from storage.snapshot import load_snapshot
from tests.result_compare import assert_same

T = "hits"
BATCH_ROWS = 250_000
_DAY = START.strftime("%Y-%m-")

QUERIES: list[tuple[str, str]] = [
    ("count", f"SELECT count(*) FROM {T}"),
    ("count_adv", f"SELECT count(*) FROM {T} WHERE AdvEngineID <> 0"),
    ("sum_count_avg", f"SELECT sum(AdvEngineID), count(*), avg(ResolutionWidth) FROM {T}"),
    ("min_max_date", f"SELECT min(EventDate), max(EventDate) FROM {T}"),
    ("min_max_time", f"SELECT min(EventTime), max(EventTime) FROM {T}"),
    ("distinct_users", f"SELECT count(DISTINCT UserID) FROM {T}"),
    ("distinct_phrases", f"SELECT count(DISTINCT SearchPhrase) FROM {T}"),
    ("adv_engines", f"""SELECT AdvEngineID, count(*) AS c FROM {T} WHERE AdvEngineID <> 0
        GROUP BY AdvEngineID ORDER BY c DESC, AdvEngineID"""),
    ("region_users", f"""SELECT RegionID, count(DISTINCT UserID) AS u FROM {T}
        GROUP BY RegionID ORDER BY u DESC, RegionID LIMIT 10"""),
    ("region_stats", f"""SELECT RegionID, sum(AdvEngineID), count(*) AS c, avg(ResolutionWidth),
        count(DISTINCT UserID) FROM {T} GROUP BY RegionID ORDER BY c DESC, RegionID LIMIT 10"""),
    ("phone_model_users", f"""SELECT MobilePhoneModel, count(DISTINCT UserID) AS u FROM {T}
        WHERE MobilePhoneModel <> '' GROUP BY MobilePhoneModel ORDER BY u DESC, MobilePhoneModel LIMIT 10"""),
    ("top_phrases", f"""SELECT SearchPhrase, count(*) AS c FROM {T} WHERE SearchPhrase <> ''
        GROUP BY SearchPhrase ORDER BY c DESC, SearchPhrase LIMIT 10"""),
    ("phrase_users", f"""SELECT SearchPhrase, count(DISTINCT UserID) AS u FROM {T} WHERE SearchPhrase <> ''
        GROUP BY SearchPhrase ORDER BY u DESC, SearchPhrase LIMIT 10"""),
    ("engine_phrases", f"""SELECT SearchEngineID, SearchPhrase, count(*) AS c FROM {T} WHERE SearchPhrase <> ''
        GROUP BY SearchEngineID, SearchPhrase ORDER BY c DESC, SearchEngineID, SearchPhrase LIMIT 10"""),
    ("top_users", f"SELECT UserID, count(*) AS c FROM {T} GROUP BY UserID ORDER BY c DESC, UserID LIMIT 10"),
    ("user_phrases", f"""SELECT UserID, SearchPhrase, count(*) AS c FROM {T} GROUP BY UserID, SearchPhrase
        ORDER BY c DESC, UserID, SearchPhrase LIMIT 10"""),
    ("one_user", f"SELECT UserID, count(*) FROM {T} WHERE UserID = 1000003 GROUP BY UserID"),
    ("url_like", f"SELECT count(*) FROM {T} WHERE URL LIKE '%google%'"),
    ("phrase_url_like", f"""SELECT SearchPhrase, min(URL), count(*) AS c FROM {T}
        WHERE URL LIKE '%google%' AND SearchPhrase <> '' GROUP BY SearchPhrase ORDER BY c DESC, SearchPhrase
        LIMIT 10"""),
    ("title_like", f"""SELECT count(*), count(DISTINCT UserID) FROM {T}
        WHERE Title LIKE '%Google%' AND URL NOT LIKE '%.google%'"""),
    ("select_star_by_time", f"SELECT * FROM {T} ORDER BY EventTime, WatchID LIMIT 10"),
    ("phrases_by_time", f"""SELECT SearchPhrase, EventTime FROM {T} WHERE SearchPhrase <> ''
        ORDER BY EventTime, SearchPhrase LIMIT 10"""),
    ("url_length_by_counter", f"""SELECT CounterID, avg(length(URL)) AS l, count(*) AS c FROM {T} WHERE URL <> ''
        GROUP BY CounterID HAVING count(*) > 1000 ORDER BY l DESC, CounterID LIMIT 25"""),
    ("wide_sums", f"""SELECT sum(ResolutionWidth), sum(ResolutionWidth + 1), sum(ResolutionWidth + 2),
        sum(ResolutionWidth + 3), sum(ResolutionHeight), sum(WindowClientWidth), sum(WindowClientHeight),
        sum(HistoryLength), sum(Age), sum(Income) FROM {T}"""),
    ("top_client_ips", f"""SELECT ClientIP, count(*) AS c, sum(IsRefresh), avg(ResolutionWidth) FROM {T}
        GROUP BY ClientIP ORDER BY c DESC, ClientIP LIMIT 10"""),
    ("top_urls", f"SELECT URL, count(*) AS c FROM {T} GROUP BY URL ORDER BY c DESC, URL LIMIT 10"),
    ("top_urls_counter", f"""SELECT URL, count(*) AS PageViews FROM {T} WHERE CounterID = 62
        AND EventDate >= DATE '{_DAY}01' AND EventDate <= DATE '{_DAY}31' AND DontCountHits = 0
        AND IsRefresh = 0 AND URL <> '' GROUP BY URL ORDER BY PageViews DESC, URL LIMIT 10"""),
    ("top_titles_counter", f"""SELECT Title, count(*) AS PageViews FROM {T} WHERE CounterID = 62
        AND EventDate >= DATE '{_DAY}01' AND EventDate <= DATE '{_DAY}31' AND DontCountHits = 0
        AND IsRefresh = 0 AND Title <> '' GROUP BY Title ORDER BY PageViews DESC, Title LIMIT 10"""),
    ("links_offset", f"""SELECT URL, count(*) AS PageViews FROM {T} WHERE CounterID = 62 AND IsRefresh = 0
        AND IsLink <> 0 AND IsDownload = 0 GROUP BY URL ORDER BY PageViews DESC, URL LIMIT 10 OFFSET 100"""),
    ("window_sizes_offset", f"""SELECT WindowClientWidth, WindowClientHeight, count(*) AS PageViews FROM {T}
        WHERE CounterID = 62 AND IsRefresh = 0 AND DontCountHits = 0
        GROUP BY WindowClientWidth, WindowClientHeight
        ORDER BY PageViews DESC, WindowClientWidth, WindowClientHeight LIMIT 10 OFFSET 50"""),
    ("minutes_offset", f"""SELECT date_trunc('minute', EventTime) AS m, count(*) AS PageViews FROM {T}
        WHERE EventTime >= TIMESTAMP '{_DAY}14 00:00:00' AND EventTime < TIMESTAMP '{_DAY}15 00:00:00'
        GROUP BY m ORDER BY m LIMIT 10 OFFSET 1000"""),
    ("per_minute_day", f"""SELECT date_trunc('minute', EventTime) AS m, count(*) AS c, count(DISTINCT UserID) AS u
        FROM {T} WHERE EventTime >= TIMESTAMP '{_DAY}20 00:00:00' AND EventTime < TIMESTAMP '{_DAY}21 00:00:00'
        GROUP BY m ORDER BY m"""),
    ("daily_users", f"SELECT EventDate, count(*), count(DISTINCT UserID) FROM {T} GROUP BY EventDate ORDER BY EventDate"),
    ("top_user_agents", f"""SELECT UserAgentString, count(*) AS c FROM {T} GROUP BY UserAgentString
        ORDER BY c DESC, UserAgentString LIMIT 10"""),
    ("countries", f"""SELECT BrowserCountry, count(*) AS c, count(DISTINCT UserID) AS u FROM {T}
        GROUP BY BrowserCountry ORDER BY c DESC, BrowserCountry"""),
    ("mobile_one_day", f"""SELECT count(*), avg(FetchTiming) FROM {T} WHERE IsMobile = 1
        AND EventTime >= TIMESTAMP '{_DAY}05 00:00:00' AND EventTime < TIMESTAMP '{_DAY}06 00:00:00'"""),
    ("timings_by_os_one_date", f"""SELECT OS, count(*) AS c, avg(FetchTiming), max(SendTiming) FROM {T}
        WHERE EventDate = DATE '{_DAY}07' GROUP BY OS ORDER BY OS"""),
]


def _progress(message: str) -> None:
    print(f"\r{message:<78}", end="", file=sys.stderr, flush=True)


def load(db, args: argparse.Namespace, parquet_path: str) -> dict:
    """Ingest the month batch by batch, compact it, and write the same rows to one Parquet file."""
    vocabulary = Vocabulary(args.seed)
    db.create_table(T, time_column="EventTime", partitions=2)
    batches = (args.rows + BATCH_ROWS - 1) // BATCH_ROWS
    ingest_s = write_s = generate_s = 0.0
    writer = None
    for index in range(batches):
        started = time.perf_counter()
        batch = hits_batch(index, min(BATCH_ROWS, args.rows - index * BATCH_ROWS), args.rows, vocabulary, args.seed)
        generate_s += time.perf_counter() - started
        _progress(f"  batch {index + 1}/{batches}: ingesting {batch.num_rows:,} rows x {batch.num_columns} columns")
        started = time.perf_counter()
        _ingest(db, batch, f"hits-{index}")
        ingest_s += time.perf_counter() - started
        _progress(f"  batch {index + 1}/{batches}: writing the Parquet baseline")
        started = time.perf_counter()
        if writer is None:
            writer = pq.ParquetWriter(parquet_path, batch.schema)
        writer.write_table(batch)
        write_s += time.perf_counter() - started
    started = time.perf_counter()
    writer.close()
    write_s += time.perf_counter() - started
    print(file=sys.stderr)
    segments_ingested = db.table_stats(T).segments
    started = time.perf_counter()
    report = db.compact(T)
    compact_s = time.perf_counter() - started
    stats = db.table_stats(T)
    per_day = Counter((s.partition, s.min_time // 86_400_000_000) for s in load_snapshot(db.store, db.table(T)).segments)
    return {
        "generate_s": round(generate_s, 2),
        "ingest_s": round(ingest_s, 2),
        "compact_s": round(compact_s, 2),
        "load_s": round(ingest_s + compact_s, 2),
        "parquet_write_s": round(write_s, 2),
        "segments_ingested": segments_ingested,
        "segments": stats.segments,
        "segments_merged": report.removed,
        "max_segments_per_partition_day": max(per_day.values()) if per_day else 0,
        "bytes": stats.bytes,
        "parquet_bytes": os.path.getsize(parquet_path),
    }


def _ingest(db, batch: pa.Table, batch_id: str, attempts: int = 5) -> None:
    """``db.ingest``, retried with the same batch id after a timeout (stored once either way)."""
    for attempt in range(attempts):
        try:
            db.ingest(T, batch, batch_id=batch_id)
            return
        except IngestTimeout:
            if attempt == attempts - 1:
                raise
            _progress(f"  {batch_id}: not committed in time (a busy machine); retrying with the same batch id")


def timed(run, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run_queries(db, duck, args: argparse.Namespace) -> list[dict]:
    """Every query on both engines: warm once, median of ``repeat``; answers compared."""
    rows = []
    chosen = set(args.only.split(",")) if args.only else None
    queries = [(n, q) for n, q in QUERIES if chosen is None or n in chosen]
    for number, (name, query) in enumerate(queries, 1):
        _progress(f"  query {number}/{len(queries)}: {name}")
        row = {"query": name}
        try:
            db.sql(query)
            duck.sql(query).to_arrow_table()
            row["petrel_s"], ours = timed(lambda: db.sql(query), args.repeat)
            row["duckdb_s"], theirs = timed(lambda: duck.sql(query).to_arrow_table(), args.repeat)
            row["ratio"] = row["petrel_s"] / row["duckdb_s"] if row["duckdb_s"] else None
            row["rows"] = ours.num_rows
            if ours.column_names != theirs.column_names and sorted(ours.column_names) == sorted(theirs.column_names):
                row["column_order_differs"] = True  # SELECT *: Petrel's table keeps its time column first
                ours = ours.select(theirs.column_names)
            try:
                assert_same(ours, theirs, ordered=bool(re.search(r"\bORDER BY\b", query)), query=query)
                row["same_answer"] = True
            except AssertionError as exc:
                row["same_answer"] = False
                row["difference"] = str(exc)[:600]
        except Exception as exc:  # a query Petrel cannot run is reported, and the others still run
            row["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
            row["same_answer"] = False
        rows.append(row)
        _progress("")
        print("\r", end="", file=sys.stderr, flush=True)
        _print_row(row)
    return rows


def _print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['query']:24s} ERROR {row['error'][:120]}", flush=True)
        return
    mark = "" if row["same_answer"] else "  DIFFERENT ANSWER"
    if row.get("column_order_differs"):
        mark += "  (same rows; columns in another order)"
    print(f"{row['query']:24s} {row['petrel_s'] * 1000:10.1f} {row['duckdb_s'] * 1000:10.1f} "
          f"{row['ratio']:8.2f}{mark}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ten-million", action="store_true", help="10M rows (same as --rows 10000000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated query names to run (default: all)")
    parser.add_argument("--root", help="warehouse root (default: a temporary folder)")
    parser.add_argument("--out", default="benchmarks/results/analytics.json")
    args = parser.parse_args()
    if args.ten_million:
        args.rows = 10_000_000
    root = args.root or tempfile.mkdtemp(prefix="petrel-analytics-")
    parquet_path = os.path.join(tempfile.mkdtemp(prefix="petrel-analytics-parquet-"), "hits.parquet")
    print(f"{args.rows:,} hits over {DAYS} days, 2 partitions, batches of {BATCH_ROWS:,} rows", flush=True)
    with engine.connect(root, maintenance=False) as db:  # no background compaction competing with the timings
        loaded = load(db, args, parquet_path)
        print(f"load: petrel {loaded['load_s']:.1f} s (ingest {loaded['ingest_s']:.1f} s + compaction "
              f"{loaded['compact_s']:.1f} s) vs pyarrow.parquet {loaded['parquet_write_s']:.1f} s "
              f"({loaded['load_s'] / max(loaded['parquet_write_s'], 1e-9):.1f}x)")
        print(f"segments: {loaded['segments_ingested']:,} ingested -> {loaded['segments']:,} after compaction "
              f"(at most {loaded['max_segments_per_partition_day']} per partition per day)", flush=True)
        duck = duckdb.connect()
        duck.execute("SET threads = 2")
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute(f"CREATE VIEW {T} AS SELECT * FROM read_parquet('{parquet_path}')")
        db.sql(f"SELECT count(*) FROM {T}")  # start the worker pool
        print(f"{'query':24s} {'petrel ms':>10s} {'duckdb ms':>10s} {'ratio':>8s}")
        rows = run_queries(db, duck, args)
    timed_rows = [r for r in rows if "error" not in r]
    total_ours = sum(r["petrel_s"] for r in timed_rows)
    total_theirs = sum(r["duckdb_s"] for r in timed_rows)
    wrong = [r["query"] for r in rows if not r["same_answer"]]
    print(f"{'TOTAL':24s} {total_ours * 1000:10.1f} {total_theirs * 1000:10.1f} "
          f"{total_ours / max(total_theirs, 1e-9):8.2f}")
    print(f"answers equal to DuckDB's: {len(rows) - len(wrong)}/{len(rows)}"
          + (f" (different or failed: {', '.join(wrong)})" if wrong else ""))
    report = {
        "benchmark": "analytics",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "args": {k: v for k, v in vars(args).items() if k not in ("root", "out")},
        "rows": args.rows,
        "columns": len(hits_batch(0, 1, 1, Vocabulary(args.seed)).schema),
        "load": loaded,
        "queries": rows,
        "total_petrel_s": total_ours,
        "total_duckdb_s": total_theirs,
        "total_ratio": total_ours / total_theirs if total_theirs else None,
        "max_ratio": max((r["ratio"] for r in timed_rows if r.get("ratio")), default=None),
        "answers_equal": not wrong,
        "different_or_failed": wrong,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
