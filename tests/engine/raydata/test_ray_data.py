"""Tables as Ray Data datasets (column and time pushdown, a read task per segment group) and datasets into tables exactly once."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import engine
from engine.raydata import segment_groups

HOUR = 3_600_000_000
BASE = 1_772_323_200_000_000  # 2026-03-01 00:00 UTC


def _hour(h: int, rows: int = 50) -> pa.Table:
    return pa.table({
        "timestamp": pa.array([BASE + h * HOUR + i * 1_000_000 for i in range(rows)], pa.timestamp("us", "UTC")),
        "service": [f"svc-{i % 3}" for i in range(rows)],
        "ms": [float(h * 1000 + i) for i in range(rows)],
    })


@pytest.fixture(scope="module")
def db(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("raydata") / "warehouse")
    with engine.connect(root, maintenance=False) as session:
        session.create_table("events", partitions=2, routing_key="service")
        for h in range(6):  # one commit per hour: several segments per partition
            session.ingest("events", _hour(h), batch_id=f"hour-{h}")
        yield session


def test_read_prunes_segments_and_pushes_columns_and_time(db):
    start, end = dt.datetime(2026, 3, 1, 2, tzinfo=dt.timezone.utc), "2026-03-01T04:00:00Z"
    everything = segment_groups(db.store, db.table("events"), target_bytes=1)
    in_range = segment_groups(db.store, db.table("events"), ["ms"], start, end, target_bytes=1)
    assert len(in_range) < len(everything)  # segments of other hours are never read
    got = db.read_dataset("events", columns=["ms"], start=start, end=end).to_arrow_refs()
    import ray

    table = pa.concat_tables(ray.get(got))
    assert table.column_names == ["ms"]
    expected = pa.concat_tables([_hour(2), _hour(3)])
    assert sorted(table.column("ms").to_pylist()) == sorted(expected.column("ms").to_pylist())


def test_one_read_task_per_group_of_segments(db):
    groups = segment_groups(db.store, db.table("events"))
    assert len(groups) == 1 and len(groups[0].segments) >= 6  # small segments share one task
    small = segment_groups(db.store, db.table("events"), target_bytes=1)
    assert len(small) == sum(len(g.segments) for g in groups)
    dataset = db.read_dataset("events", target_bytes=1).materialize()
    assert dataset.num_blocks() == len(small)
    assert dataset.count() == 300
    assert dataset.schema().names == ["timestamp", "service", "ms"]


def test_writing_a_dataset_twice_stores_it_once(db):
    import ray.data

    source = ray.data.from_arrow([_hour(10, 120), _hour(11, 80)])
    db.create_table("copy", partitions=2, routing_key="service")
    first = db.write_dataset("copy", source, batch_id="copy-run-1", rows_per_batch=64)
    again = db.write_dataset("copy", source, batch_id="copy-run-1", rows_per_batch=64)
    assert first.accepted == again.accepted == 200
    stored = db.sql("SELECT count(*) AS n, sum(ms) AS total FROM copy")
    assert stored.column("n").to_pylist() == [200]
    expected = pc.sum(pa.concat_tables([_hour(10, 120), _hour(11, 80)]).column("ms")).as_py()
    assert stored.column("total").to_pylist() == [expected]


def test_an_empty_range_gives_an_empty_dataset_with_the_columns(db):
    dataset = db.read_dataset("events", columns=["service"], start="2030-01-01T00:00:00Z")
    assert dataset.count() == 0
