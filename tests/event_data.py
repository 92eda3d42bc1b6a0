"""A day of web/service events for SQL tests, written as segments and committed.

Deterministic (seeded).  The table has NULLs in most columns, dotted column
names (``http.status_code``), a struct column, several partitions and one
segment per partition and hour, and its schema evolves: ``latency_ms`` is
an integer in the first hours and a float later (so it widens), ``region``
only appears after noon.  ``load_events`` returns the rows as one Arrow
table under the unified schema, for DuckDB to read.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa

from storage.catalog import Catalog, TableMeta
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.schema import conform, unify
from storage.segment import write_segment

DAY = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
SERVICES = np.array(["api", "web", "db", "auth", "search"], dtype=object)
METHODS = np.array(["GET", "POST", "PUT", "DELETE"], dtype=object)
STATUS = np.array([200, 200, 200, 201, 204, 301, 404, 500, 503])
PATHS = np.array(["/api/v1/items", "/api/v1/users", "/login", "/search", "/static/app.js", "/health"], dtype=object)
REGIONS = np.array(["eu-west", "us-east", "ap-south"], dtype=object)
TIERS = np.array(["free", "pro", "enterprise"], dtype=object)


def _with_nulls(rng: np.random.Generator, values: np.ndarray, fraction: float) -> list:
    mask = rng.random(len(values)) < fraction
    out = values.astype(object)
    out[mask] = None
    return out.tolist()


def hour_of_events(rng: np.random.Generator, hour: int, rows: int) -> pa.Table:
    """``rows`` events inside hour ``hour`` of the day, with this hour's schema."""
    micros = np.sort(rng.integers(0, 3_600_000_000, rows))
    start = int((DAY + dt.timedelta(hours=hour)).timestamp() * 1_000_000)
    timestamps = pa.array(start + micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    status = STATUS[rng.integers(0, len(STATUS), rows)]
    latency = rng.exponential(80.0, rows) + (status >= 500) * 200.0
    users = np.array([f"user-{u:03d}" for u in rng.integers(0, 120, rows)], dtype=object)
    item = rng.integers(1, 500, rows)
    paths = PATHS[rng.integers(0, len(PATHS), rows)]
    urls = np.array([f"https://shop.example.com{p}/{i}?ref=mail" for p, i in zip(paths, item)], dtype=object)
    columns: dict[str, pa.Array] = {
        "timestamp": timestamps,
        "service": pa.array(_with_nulls(rng, SERVICES[rng.integers(0, len(SERVICES), rows)], 0.05), pa.string()),
        "host": pa.array([f"host-{h:02d}" for h in rng.integers(1, 9, rows)], pa.string()),
        "http.method": pa.array(METHODS[rng.integers(0, len(METHODS), rows)].tolist(), pa.string()),
        "http.status_code": pa.array(_with_nulls(rng, status, 0.03), pa.int64()),
        "user_id": pa.array(_with_nulls(rng, users, 0.1), pa.string()),
        "url": pa.array(urls.tolist(), pa.string()),
        "bytes": pa.array(_with_nulls(rng, rng.integers(100, 50_000, rows), 0.02), pa.int64()),
        "ok": pa.array((status < 400).tolist(), pa.bool_()),
        "attrs": pa.array(
            [{"tier": t, "retries": int(r)} for t, r in zip(TIERS[rng.integers(0, 3, rows)], rng.integers(0, 4, rows))],
            pa.struct([("tier", pa.string()), ("retries", pa.int64())]),
        ),
    }
    if hour < 6:  # early segments store latency as whole milliseconds
        columns["latency_ms"] = pa.array(_with_nulls(rng, np.round(latency).astype(np.int64), 0.04), pa.int64())
    else:
        columns["latency_ms"] = pa.array(_with_nulls(rng, np.round(latency, 3), 0.04), pa.float64())
    if hour >= 12:  # a column that appears halfway through the day
        columns["region"] = pa.array(_with_nulls(rng, REGIONS[rng.integers(0, 3, rows)], 0.1), pa.string())
    return pa.table(columns)


def load_events(
    store: ObjectStore,
    namespace: str = "default",
    name: str = "events",
    hours: int = 24,
    partitions: int = 2,
    rows_per_segment: int = 250,
    seed: int = 7,
) -> tuple[TableMeta, pa.Table]:
    """Create the table, write one segment per partition and hour, commit them; return (meta, all rows)."""
    catalog = Catalog(store)
    meta = catalog.create_table(namespace, name, time_column="timestamp", partitions=partitions)
    rng = np.random.default_rng(seed)
    tables = []
    logs = {p: PartitionLog(store, meta.path, p) for p in range(partitions)}
    states = {p: log.load() for p, log in logs.items()}
    for hour in range(hours):
        for partition in range(partitions):
            table = hour_of_events(rng, hour, rows_per_segment + int(rng.integers(0, 50)))
            entry = write_segment(store, meta.path, table, partition=partition, time_column=meta.time_column,
                                  sort_key=meta.full_sort_key)
            states[partition] = logs[partition].commit(states[partition], epoch=None, added=[entry])
            tables.append(table)
    schema = unify(t.schema for t in tables)
    everything = pa.concat_tables([conform(t, schema) for t in tables])
    return meta, everything


def duckdb_over(**tables: pa.Table) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (the oracle) in UTC, with ``tables`` registered under their names."""
    oracle = duckdb.connect()
    oracle.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        oracle.register(name, table)
    return oracle
