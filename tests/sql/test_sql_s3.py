"""The same queries over a warehouse on S3 (the loopback endpoint), read by the Ray workers."""

from __future__ import annotations

import uuid

import pytest

import engine
from tests.sql.differential_queries import QUERIES
from tests.event_data import duckdb_over, load_events
from tests.result_compare import assert_same
from storage.objectstore import ObjectStore

SUBSET = QUERIES[::10]


@pytest.mark.s3
def test_queries_over_s3(ray_session, s3_options):
    root = f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}"
    _, rows = load_events(ObjectStore(root, s3_options), hours=14, partitions=2, rows_per_segment=60)
    oracle = duckdb_over(events=rows)
    db = engine.connect(root, storage_options=s3_options)
    try:
        for entry in SUBSET:
            ours, theirs = entry if isinstance(entry, tuple) else (entry, entry)
            got = db.sql(ours)
            assert_same(got, oracle.sql(theirs).to_arrow_table(), ordered=" ORDER BY " in ours.upper(), query=ours)
        text = db.explain("SELECT sum(bytes) FROM events WHERE timestamp >= TIMESTAMP '2026-11-02 02:00:00' "
                          "AND timestamp < TIMESTAMP '2026-11-02 03:00:00'", analyze=True)
        assert "segments=2/28 (pruned: 26 by time" in text
    finally:
        db.close()
