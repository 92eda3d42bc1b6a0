"""Snapshots: schema evolution across segments, widening rules, and a live snapshot that reads only new commits."""

from __future__ import annotations

import pyarrow as pa
import pytest

from storage.catalog import Catalog
from storage.errors import SchemaConflict
from storage.schema import conform, unify
from storage.segment import read_segment
from storage.snapshot import load_snapshot
from tests.storage_fixtures import append, events


def test_schema_evolves_across_segments(store):
    meta = Catalog(store).create_table("acme", "logs", partitions=2)
    append(store, meta, events(3, status=[200, 404, 500]), partition=0)
    append(store, meta, events(2, start=3, status=[201.5, 200.0], user=["a", None]), partition=1)
    snap = load_snapshot(store, meta)
    assert snap.schema.field("status").type == pa.float64()
    assert snap.schema.field("user").type == pa.string()
    assert snap.rows == 5 and len(snap.segments) == 2
    old = next(s for s in snap.segments if "user" not in s.schema.names)
    table = conform(read_segment(store, meta.path, old), snap.schema)
    assert table.column("user").null_count == 3
    assert table.column("status").type == pa.float64()


def test_incompatible_change_is_refused_with_both_types(store):
    meta = Catalog(store).create_table("acme", "logs")
    append(store, meta, events(2, status=[200, 500]))
    with pytest.raises(SchemaConflict, match=r"'status'.*int64.*string"):
        append(store, meta, events(2, start=2, status=["ok", "bad"]))


@pytest.mark.parametrize("a,b,expected", [
    (pa.int32(), pa.int64(), pa.int64()),
    (pa.int64(), pa.float64(), pa.float64()),
    (pa.uint8(), pa.int8(), pa.int16()),
    (pa.null(), pa.string(), pa.string()),
    (pa.timestamp("ms", tz="UTC"), pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="UTC")),
])
def test_widening(a, b, expected):
    assert unify([pa.schema([("x", a)]), pa.schema([("x", b)])]).field("x").type == expected


@pytest.mark.parametrize("a,b,expected", [
    (pa.uint32(), pa.int64(), pa.int64()),
    (pa.uint64(), pa.uint8(), pa.uint64()),
    (pa.uint64(), pa.float64(), pa.float64()),
])
def test_unsigned_widening(a, b, expected):
    for pair in ((a, b), (b, a)):
        assert unify([pa.schema([("x", t)]) for t in pair]).field("x").type == expected


@pytest.mark.parametrize("signed", [pa.int64(), pa.int8()])
def test_uint64_with_a_signed_integer_is_a_conflict_not_an_overflow(signed):
    for pair in ((pa.uint64(), signed), (signed, pa.uint64())):
        with pytest.raises(SchemaConflict, match=rf"'x'.*{pair[0]}.*{pair[1]}.*int64"):
            unify([pa.schema([("x", t)]) for t in pair])


def test_snapshot_carries_each_partitions_recent_batch_ids(store):
    meta = Catalog(store).create_table("acme", "logs", partitions=2)
    append(store, meta, events(1), partition=0, batch_ids=["a1"])
    append(store, meta, events(1, start=1), partition=0, batch_ids=["a2", "a3"])
    append(store, meta, events(1, start=2), partition=1, batch_ids=["b1"])
    snap = load_snapshot(store, meta)
    assert snap.batch_ids == {0: {"a1": 0, "a2": 1, "a3": 1}, 1: {"b1": 0}}


def test_snapshot_is_pinned_to_its_versions(store):
    meta = Catalog(store).create_table("acme", "logs")
    append(store, meta, events(2))
    first = load_snapshot(store, meta)
    append(store, meta, events(2, start=2))
    assert load_snapshot(store, meta).rows == 4
    assert load_snapshot(store, meta, first.versions).rows == 2


def test_segment_stats_and_pushdown(store):
    import pyarrow.dataset as ds

    meta = Catalog(store).create_table("acme", "logs", sort_key=["service"])
    state = append(store, meta, events(100, status=[200 + (i % 5) for i in range(100)]))
    (entry,) = state.segments.values()
    assert entry.rows == 100 and entry.columns["id"].min == 0 and entry.columns["id"].max == 99
    assert entry.columns["service"].min == "svc-0" and entry.columns["timestamp"].min.year == 2026
    assert entry.max_time - entry.min_time == 99 * 1_000_000
    got = read_segment(store, meta.path, entry, columns=["id", "service"], filter=ds.field("status") == 204)
    assert got.num_rows == 20 and got.column_names == ["id", "service"]
    assert got.column("service").to_pylist() == sorted(got.column("service").to_pylist())


def test_live_snapshot_reads_only_new_commits(store):
    from storage.snapshot import LiveSnapshot

    meta = Catalog(store).create_table("acme", "logs", partitions=2)
    append(store, meta, events(3), partition=0)
    live = LiveSnapshot(store, meta)
    first = live.refresh()
    assert first.rows == 3
    store.calls.clear()
    assert live.refresh() is first  # nothing moved: the same snapshot, and no listing
    assert store.calls.get("list", 0) == 0 and store.calls.get("get", 0) == 2  # one probe per partition
    append(store, meta, events(2, start=3), partition=1)
    append(store, meta, events(4, start=5), partition=0)
    store.calls.clear()
    second = live.refresh()
    assert store.calls.get("list", 0) == 0 and store.calls["get"] == 4  # two new commits, two probes
    assert second.rows == 9 and second.versions == load_snapshot(store, meta).versions
    assert [s.id for s in second.segments] == [s.id for s in load_snapshot(store, meta).segments]


def test_live_snapshot_catches_up_by_listing_when_its_next_commit_is_gone(store):
    from storage.snapshot import LiveSnapshot

    meta = Catalog(store).create_table("acme", "logs")
    append(store, meta, events(1))
    live = LiveSnapshot(store, meta, verify_seconds=0.0)
    append(store, meta, events(1, start=1))
    append(store, meta, events(1, start=2))
    from storage.log import PartitionLog

    log = PartitionLog(store, meta.path, 0)
    log.write_checkpoint(log.load())
    store.delete(log.commit_path(live.snapshot.versions[0] + 1))  # as vacuum does once a checkpoint covers it
    assert live.refresh().versions == {0: log.load().version}
    assert live.refresh().rows == 3
