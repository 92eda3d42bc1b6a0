"""``petrel demo``: a realistic day of web/service events, ingested and queried.

The generator is vectorised (numpy): services, hosts, endpoints, status
codes with an incident on one service in the afternoon, long-tailed
latencies, users with a heavy head, and URLs.  The demo ingests the day
through the session's ingestion path and runs the questions people ask of
such data, printing each answer with its time.  A slice of the day also
goes in as raw log lines into a table whose ingest transform parses them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa

from engine.render import render_table
from planner.time_units import DAY as DAY_US, HOUR as HOUR_US

if TYPE_CHECKING:
    from engine.session import Session

DEMO_TABLE = "web_events"
DAY = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
SERVICES = np.array(["checkout", "catalog", "search", "auth", "payments", "recommendations"], dtype=object)
ENDPOINTS = np.array(["/api/cart", "/api/items", "/api/search", "/login", "/api/pay", "/api/recs", "/health"], dtype=object)
REGIONS = np.array(["eu-west-1", "us-east-1", "ap-south-1"], dtype=object)
METHODS = np.array(["GET", "GET", "GET", "POST", "PUT", "DELETE"], dtype=object)

QUESTIONS: tuple[tuple[str, str], ...] = (
    ("Error rate per service per 5 minutes (worst 10 buckets)",
     f"""SELECT service, time_bucket(INTERVAL '5 minutes', timestamp) AS bucket,
               round(100.0 * count_if("http.status_code" >= 500) / count(*), 2) AS error_pct, count(*) AS requests
        FROM {DEMO_TABLE} GROUP BY service, bucket ORDER BY error_pct DESC, bucket, service LIMIT 10"""),
    ("p50 / p95 / p99 latency by endpoint",
     f"""SELECT endpoint, approx_quantile(latency_ms, 0.5) AS p50, approx_quantile(latency_ms, 0.95) AS p95,
               approx_quantile(latency_ms, 0.99) AS p99, count(*) AS requests
        FROM {DEMO_TABLE} GROUP BY endpoint ORDER BY p99 DESC"""),
    ("Top users by requests",
     f"""SELECT user_id, count(*) AS requests, count(DISTINCT service) AS services, sum(bytes) AS bytes
        FROM {DEMO_TABLE} WHERE user_id IS NOT NULL GROUP BY user_id ORDER BY requests DESC, user_id LIMIT 10"""),
    ("Drill-down: payments errors between 14:00 and 14:30",
     f"""SELECT host, "http.status_code", count(*) AS errors, round(avg(latency_ms), 1) AS avg_ms
        FROM {DEMO_TABLE}
        WHERE timestamp >= TIMESTAMP '2026-11-02 14:00:00' AND timestamp < TIMESTAMP '2026-11-02 14:30:00'
          AND service = 'payments' AND "http.status_code" >= 500
        GROUP BY ALL ORDER BY errors DESC, host LIMIT 10"""),
    ("Traffic by region and hour (first 8 rows)",
     f"""SELECT region, date_trunc('hour', timestamp) AS hour, count(*) AS requests
        FROM {DEMO_TABLE} GROUP BY ALL ORDER BY hour, region LIMIT 8"""),
)


LOG_TABLE = "web_logs"
LOG_TRANSFORM = """SELECT timestamp, service,
       CAST(parse_kv(message, 'status') AS INT) AS status,
       TRY_CAST(parse_kv(message, 'latency_ms') AS DOUBLE) AS latency_ms,
       parse_kv(message, 'user') AS user_id,
       regexp_extract(message, '^([A-Z]+) ', 1) AS method
FROM input WHERE service <> 'auth'"""
LOG_QUESTION = f"""SELECT service, method, count(*) AS requests, count_if(status >= 500) AS errors,
       round(avg(latency_ms), 1) AS avg_ms
FROM {LOG_TABLE} GROUP BY ALL ORDER BY errors DESC, service, method LIMIT 8"""


def log_lines(table: pa.Table, rows: int = 20_000) -> bytes:
    """The first ``rows`` events as raw log lines (JSON with a free-text message), as a shipper sends them."""
    part = table.slice(0, rows).to_pylist()
    return "\n".join(json.dumps({
        "timestamp": row["timestamp"].isoformat(), "service": row["service"],
        "message": f"{row['http.method']} {row['endpoint']} status={row['http.status_code']} "
                   f"latency_ms={row['latency_ms']} user={row['user_id'] or '-'}",
    }) for row in part).encode()


def generate_day(rows: int = 500_000, seed: int = 42, day: dt.datetime = DAY,
                 window: tuple[int, int] = (0, DAY_US)) -> pa.Table:
    """``rows`` events spread over one day (or over ``window``, microseconds into it), sorted by time."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(window[0], window[1], rows))
    start = int(day.timestamp() * 1_000_000)
    service_index = rng.choice(len(SERVICES), rows, p=[0.25, 0.25, 0.2, 0.12, 0.08, 0.1])
    services = SERVICES[service_index]
    endpoints = ENDPOINTS[np.minimum(service_index, len(ENDPOINTS) - 1)]
    health = rng.random(rows) < 0.05
    endpoints = np.where(health, "/health", endpoints)
    hosts = np.char.add(np.char.add(services.astype(str), "-"), rng.integers(1, 7, rows).astype(str)).astype(object)
    hour = offsets // HOUR_US
    incident = (services == "payments") & (hour == 14)
    error_chance = np.where(incident, 0.3, 0.01)
    status = np.where(rng.random(rows) < error_chance, rng.choice([500, 502, 503], rows),
                      rng.choice([200, 200, 200, 201, 204, 301, 304, 404], rows))
    latency = rng.lognormal(3.5, 0.7, rows) * np.where(incident, 4.0, 1.0) + (status >= 500) * 150
    users = rng.zipf(1.3, rows) % 5000
    user_ids = np.char.add("user-", users.astype(str)).astype(object)
    user_ids = np.where(rng.random(rows) < 0.15, None, user_ids)
    items = rng.integers(1, 10_000, rows).astype(str)
    urls = np.char.add(np.char.add(np.char.add("https://shop.example.com", endpoints.astype(str)), "/"), items).astype(object)
    return pa.table({
        "timestamp": pa.array(start + offsets, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "service": pa.array(services.tolist(), pa.string()),
        "host": pa.array(hosts.tolist(), pa.string()),
        "region": pa.array(REGIONS[rng.integers(0, len(REGIONS), rows)].tolist(), pa.string()),
        "endpoint": pa.array(endpoints.tolist(), pa.string()),
        "http.method": pa.array(METHODS[rng.integers(0, len(METHODS), rows)].tolist(), pa.string()),
        "http.status_code": pa.array(status, pa.int64()),
        "latency_ms": pa.array(np.round(latency, 3), pa.float64()),
        "bytes": pa.array(rng.integers(200, 80_000, rows), pa.int64()),
        "user_id": pa.array(user_ids.tolist(), pa.string()),
        "url": pa.array(urls.tolist(), pa.string()),
    })


def run_demo(session: Session, rows: int = 500_000, out: Callable[[str], None] = print,
             render: Callable[[pa.Table], str] = render_table) -> None:
    """Create the demo table, ingest a day of events into it, and answer the questions."""
    if DEMO_TABLE not in session.tables():
        session.create_table(DEMO_TABLE, time_column="timestamp", sort_key=["service"], partitions=2)
        out(f"Generating {rows:,} events for {DAY:%Y-%m-%d} ...")
        table = generate_day(rows)
        started = time.monotonic()
        chunk = 100_000
        for offset in range(0, table.num_rows, chunk):
            session.ingest(DEMO_TABLE, table.slice(offset, chunk), batch_id=f"demo-{offset}")
        out(f"Ingested {table.num_rows:,} events in {time.monotonic() - started:.1f} s")
        session.create_table(LOG_TABLE, transform=LOG_TRANSFORM)
        receipt = session.ingest(LOG_TABLE, log_lines(table), batch_id="demo-logs")
        out(f"\nIngested {receipt.accepted:,} raw log lines into {LOG_TABLE} through its transform "
            f"(auth lines dropped by its WHERE):\n{LOG_TRANSFORM}")
    else:
        out(f"Table {DEMO_TABLE} exists; querying it as it is")
    started = time.monotonic()
    workers = len(session.queries.pool.names)
    out(f"Started {workers} query workers in {time.monotonic() - started:.1f} s "
        "(once per session; the times below are with warm workers)")
    questions = QUESTIONS
    if LOG_TABLE in session.tables():
        questions += (("Fields parsed from raw log lines at ingest time (web_logs)", LOG_QUESTION),)
    for title, query in questions:
        started = time.monotonic()
        result = session.sql(query)
        elapsed = time.monotonic() - started
        out(f"\n== {title}  ({elapsed * 1000:.0f} ms)")
        out(render(result))
    from engine.monitors.demo import run_monitor_demo

    run_monitor_demo(session, out, render)
