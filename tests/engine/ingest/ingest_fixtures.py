"""Shared pieces of the ingestion tests: sessions on each backend, reading rows back."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pytest

from engine.ingest.owner import IngestConfig
from engine.ingest.client import IngestOptions
from storage.schema import conform
from storage.segment import read_segment
from storage.snapshot import load_snapshot

# Tests wait for commits one call at a time: a short linger keeps them quick.
FAST = IngestOptions(actor=IngestConfig(max_age=0.05))
BASE = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def db(request, tmp_path, ray_session):
    """A session on an empty warehouse, on local disk and on the loopback S3."""
    import engine

    if request.param == "file":
        session = engine.connect(str(tmp_path / "warehouse"))
    else:
        options = request.getfixturevalue("s3_options")
        session = engine.connect(f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}", storage_options=options)
    session.ingestion.options = FAST
    yield session
    session.close()


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
