"""Shared pieces of the ingestion tests: rows to send, the options sessions use, reading rows back."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from engine.ingest.owner import IngestConfig
from engine.ingest.client import IngestOptions
from storage.schema import conform
from storage.segment import read_segment
from storage.snapshot import load_snapshot

# Tests wait for commits one call at a time: a short linger keeps them quick.
FAST = IngestOptions(actor=IngestConfig(max_age=0.05))
BASE = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def stored(db, table: str) -> pa.Table:
    """Every committed row of ``table`` (one snapshot), in the table's schema."""
    meta = db.table(table)
    snapshot = load_snapshot(db.store, meta)
    parts = [conform(read_segment(db.store, meta.path, s), snapshot.schema) for s in snapshot.segments]
    return pa.concat_tables(parts) if parts else snapshot.schema.empty_table()


def event_rows(start: int, n: int, **extra) -> list[dict]:
    """``n`` events with unique ids start..start+n-1 over a couple of hours."""
    return [
        {"timestamp": (BASE + dt.timedelta(seconds=37 * i)).isoformat(), "id": i, "service": f"svc-{i % 5}", **extra}
        for i in range(start, start + n)
    ]
