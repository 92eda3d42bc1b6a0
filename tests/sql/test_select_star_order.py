"""SELECT * returns a table's columns in the order they were ingested in, the time column where it came."""

from __future__ import annotations

import pyarrow as pa

from engine.ingest.normalize import normalize
from engine.ingest.parse import parse

NOW = 1_700_000_000_000_000


def fitted(data, schema=None):
    parsed = parse(data, 1 << 20, schema, "timestamp")
    return normalize(parsed, time_column="timestamp", schema=schema, now_us=NOW)


def test_inferred_schema_keeps_the_arriving_order():
    result = fitted([{"service": "api", "timestamp": "2024-05-01T10:00:00Z", "latency": 3.5, "ok": True}])
    assert result.schema.names == ["service", "timestamp", "latency", "ok"]
    assert result.table.column_names == ["service", "timestamp", "latency", "ok"]


def test_rows_without_a_time_column_get_it_last():
    result = fitted([{"service": "api", "latency": 3}])
    assert result.schema.names == ["service", "latency", "timestamp"]


def test_new_columns_follow_the_schema_they_evolve():
    first = fitted([{"b": 1, "timestamp": "2024-05-01T10:00:00Z"}])
    later = fitted([{"timestamp": "2024-05-01T11:00:00Z", "c": "x", "b": 2}], first.schema)
    assert later.schema.names == ["b", "timestamp", "c"]


def test_select_star_after_ingest_is_in_ingest_order(ray_session, tmp_path):
    import engine

    with engine.connect(str(tmp_path / "warehouse"), maintenance=False) as db:
        rows = pa.table({"service": ["api", "web"], "timestamp": pa.array([1, 2], pa.timestamp("us", "UTC")),
                         "latency": [3.5, 4.0]})
        db.create_table("events")
        db.ingest("events", rows)
        assert db.sql("SELECT * FROM events").column_names == ["service", "timestamp", "latency"]
        assert db.sql("TABLE events").column_names == ["service", "timestamp", "latency"]
