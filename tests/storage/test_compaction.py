"""Compaction: sorted merges, size tiers, day windows, rebasing over appends and conflicts, table stats."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.catalog import Catalog
from storage.compaction import (
    CompactionPolicy,
    bucket_folder,
    compact_table,
    plan_compaction,
    run_task,
    table_stats,
)
from storage.errors import CommitConflict
from storage.log import PartitionLog
from storage.merge import MergeStats, merge_segments, merge_sorted
from storage.segment import read_segment, write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table
from tests.maintenance_fixtures import small_segments, snapshot_rows, table_rows
from tests.storage_fixtures import BASE, append, events


def test_merge_sorted_equals_a_full_sort_with_nulls_nan_and_ties():
    rng = random.Random(7)
    keys = [("k", "ascending"), ("x", "ascending"), ("t", "ascending")]

    def source():
        n = rng.randint(0, 2500)
        table = pa.table({
            "k": pa.array([rng.choice([None, "a", "b", "c"]) for _ in range(n)], pa.string()),
            "x": pa.array([rng.choice([None, float("nan"), 1.5, -2.0]) for _ in range(n)], pa.float64()),
            "t": pa.array([rng.randint(0, 50) for _ in range(n)], pa.int64()),
        }).sort_by(keys)
        return table, [table.slice(i, 300) for i in range(0, n, 300)]

    sources = [source() for _ in range(12)]
    merged = pa.concat_tables(list(merge_sorted([iter(batches) for _, batches in sources], ["k", "x", "t"])))
    expected = pa.concat_tables([t for t, _ in sources]).sort_by(keys)
    assert merged.num_rows == expected.num_rows

    def rows(table):  # NaN != NaN, so compare NaNs by name
        return [tuple("NaN" if v != v else v for v in row.values()) for row in table.to_pylist()]

    assert rows(merged) == rows(expected)


def test_thousand_small_segments_become_at_most_ten_with_identical_rows(store):
    count = 120 if store.protocol == "s3" else 1000  # the loopback S3 serves ~60 requests/s
    meta = Catalog(store).create_table("acme", "logs", partitions=2)
    small_segments(store, meta, count, rows=20, hours=3)
    before = load_snapshot(store, meta)
    assert len(before.segments) == count
    report = compact_table(store, meta, full=True)
    after = load_snapshot(store, meta)
    assert len(after.segments) == 2  # one per partition: the three hours are in one window
    assert report.removed >= count and report.conflicts == 0
    expected = snapshot_rows(store, before)  # the old snapshot still reads
    assert expected.num_rows == count * 20
    assert snapshot_rows(store, after).equals(expected)
    for entry in after.segments:  # each output is sorted
        rows = read_segment(store, meta.path, entry)
        assert rows.equals(rows.sort_by([("timestamp", "ascending")]))
    # so few rows join their day into the 28-day span (counted from the epoch) that holds 2026-11-01
    assert {bucket_folder(e) for e in after.segments} == {"2026-10-22+28d"}


@pytest.mark.parametrize("memory_rows", [1, 1_000_000], ids=["streamed", "sorted-at-once"])
def test_merge_unifies_schemas_and_keeps_statistics(store, memory_rows):
    meta = Catalog(store).create_table("acme", "logs", sort_key=["service"])
    append(store, meta, events(5, status=[200, 404, 500, 200, 201]))
    append(store, meta, events(4, start=5, status=[1.5, 2.5, None, 3.5], user=["a", None, "b", "c"]))
    append(store, meta, events(3, start=9))
    before = table_rows(store, meta)
    compact_table(store, meta, CompactionPolicy(memory_rows=memory_rows), full=True)
    (merged,) = load_snapshot(store, meta).segments
    assert merged.schema.field("status").type == pa.float64()
    assert merged.rows == 12 and merged.level == 1
    assert merged.columns["id"].min == 0 and merged.columns["id"].max == 11
    assert merged.columns["user"].null_count == 9 and merged.columns["user"].min == "a"
    assert merged.min_time == before.column("timestamp")[0].value
    assert table_rows(store, meta).equals(before)
    rows = read_segment(store, meta.path, merged)
    assert rows.equals(rows.sort_by([("service", "ascending"), ("timestamp", "ascending")]))


def test_merge_holds_a_bounded_number_of_rows(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "logs")
    inputs = []
    for i in range(8):  # eight interleaved segments of 40,000 rows each
        times = [BASE + dt.timedelta(microseconds=j * 8 + i) for j in range(40_000)]
        table = pa.table({"timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
                          "id": pa.array(range(i * 40_000, (i + 1) * 40_000), pa.int64())})
        inputs.append(write_segment(store, meta.path, table, partition=0, time_column="timestamp",
                                    sort_key=meta.full_sort_key, row_group_size=4096))
    stats = MergeStats()
    outputs = merge_segments(store, meta.path, inputs, sort_key=meta.full_sort_key, time_column="timestamp",
                             rows_per_segment=200_000, memory_rows=8 * 1024, row_group_size=16_384, stats=stats)
    assert [o.rows for o in outputs] == [200_000, 120_000]
    assert stats.rows == 320_000
    assert stats.peak_input_rows <= 8 * 1024  # one batch of memory_rows / 8 per input
    assert stats.peak_output_rows <= 16_384 + 8 * 1024  # one row group plus one merge step
    merged = pa.concat_tables([read_segment(store, meta.path, o) for o in outputs])
    assert merged.column("id").to_pylist() == sorted(range(320_000), key=lambda n: (n % 40_000) * 8 + n // 40_000)


@pytest.mark.parametrize("sort_key", [None, ["id"]])
def test_ingested_and_compacted_segments_delta_encode_the_columns_they_are_sorted_by(memory_store, sort_key):
    store = memory_store
    meta = Catalog(store).create_table("acme", "logs", sort_key=sort_key)
    rows = events(2000, score=[j * 0.37 for j in range(2000)], count=[j % 700 for j in range(2000)])
    for i in range(4):
        append(store, meta, rows.slice(i * 500, 500))

    def encodings(entry) -> dict[str, set[str]]:
        group = pq.ParquetFile(pa.BufferReader(store.get(f"{meta.path}/{entry.path}"))).metadata.row_group(0)
        return {group.column(i).path_in_schema: set(group.column(i).encodings) for i in range(group.num_columns)}

    ingested = load_snapshot(store, meta).segments
    compact_table(store, meta, full=True)
    (compacted,) = load_snapshot(store, meta).segments
    for entry in (ingested[0], compacted):
        found = encodings(entry)
        assert "DELTA_BINARY_PACKED" in found["timestamp"]  # the time column: always sorted, last if not alone
        assert ("DELTA_BINARY_PACKED" in found["id"]) == (sort_key is not None)
        assert "DELTA_BINARY_PACKED" not in found["count"]  # an integer the segment is not sorted by
        assert "RLE_DICTIONARY" in found["service"]  # three values: a dictionary, as before
        assert "DELTA_BINARY_PACKED" not in found["score"]
    assert table_rows(store, meta).equals(rows.sort_by([(name, "ascending") for name in rows.column_names]))


def test_size_tiers_wait_for_enough_similar_segments(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "logs")
    policy = CompactionPolicy(min_inputs=4, settle_seconds=3600)
    for i in range(3):
        append(store, meta, events(10, start=i * 10))
    # another size tier: random text, as ordered times and ids delta-encode to almost nothing
    # (an hour later: it overlaps none of them, so a settled day has no reason to merge it)
    append(store, meta, events(2000, start=100, hour=1, note=[uuid.uuid4().hex for _ in range(2000)]))
    now = time.time()
    assert plan_compaction(PartitionLog(store, meta.path, 0).load(), policy, now) == []
    append(store, meta, events(10, start=50))
    (task,) = plan_compaction(PartitionLog(store, meta.path, 0).load(), policy, now)
    assert len(task.inputs) == 4 and all(e.rows == 10 for e in task.inputs)
    # once the bucket has settled, every small segment in it is merged, whatever its size
    (settled,) = plan_compaction(PartitionLog(store, meta.path, 0).load(), policy, now + 7200)
    assert len(settled.inputs) == 5
    large = CompactionPolicy(target_rows=1000)  # the 2000-row segment is not small: left alone
    (task,) = plan_compaction(PartitionLog(store, meta.path, 0).load(), large, now, full=True)
    assert len(task.inputs) == 4


def test_late_events_are_compacted_in_their_own_day(store):
    meta = Catalog(store).create_table("acme", "logs", retention="30d")  # a month kept: cut by day
    for i in range(4):
        append(store, meta, events(5, start=i * 5, hour=30))
    for i in range(3):  # late arrivals for an hour long past
        append(store, meta, events(5, start=100 + i * 5, hour=2))
    compact_table(store, meta, full=True)
    buckets = sorted(bucket_folder(e) for e in load_snapshot(store, meta).segments)
    assert buckets == ["2026-11-01", "2026-11-02"]


def test_compaction_rebases_over_concurrent_appends(store):
    meta = Catalog(store).create_table("acme", "logs")
    for i in range(4):
        append(store, meta, events(5, start=i * 5))
    base = PartitionLog(store, meta.path, 0).load()
    (task,) = plan_compaction(base, full=True)
    appended = []

    def ingest_meanwhile(task, outputs):
        appended.append(append(store, meta, events(5, start=1000), batch_ids=["late"]))

    state, report = run_task(store, meta, base, task, before_commit=ingest_meanwhile)
    assert report.removed == 4 and report.added == 1
    assert state.version == appended[0].version + 1 == PartitionLog(store, meta.path, 0).load().version
    assert state.rows == 25 and len(state.segments) == 2 and state.has_batch("late")
    assert sorted(table_rows(store, meta).column("id").to_pylist()) == list(range(20)) + list(range(1000, 1005))


def test_compaction_gives_up_cleanly_when_an_input_was_removed(store):
    meta = Catalog(store).create_table("acme", "logs")
    for i in range(4):
        append(store, meta, events(5, start=i * 5))
    written = []

    def retention_meanwhile(task, outputs):
        written.extend(outputs)
        log = PartitionLog(store, meta.path, 0)
        log.commit(log.load(), epoch=None, removed=[task.inputs[0].id], kind="retention")

    before = table_rows(store, meta)
    report = compact_table(store, meta, full=True, before_commit=retention_meanwhile)
    assert report.conflicts == 1 and report.added == 0
    state = PartitionLog(store, meta.path, 0).load()
    assert len(state.segments) == 3 and state.rows == 15
    assert table_rows(store, meta).num_rows == before.num_rows - 5
    (orphan,) = written
    assert store.exists(f"{meta.path}/{orphan.path}")
    assert vacuum_table(store, meta, older_than="1h").orphans == 0
    report = vacuum_table(store, meta, older_than=0, now=time.time() + 1, orphans_older_than=0)
    assert report.orphans == 1 and report.segments == 1
    assert not store.exists(f"{meta.path}/{orphan.path}")


def test_commit_conflict_reaches_the_caller_of_a_single_task(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "logs")
    for i in range(2):
        append(store, meta, events(3, start=i * 3))
    state = PartitionLog(store, meta.path, 0).load()
    (task,) = plan_compaction(state, full=True)
    compact_table(store, meta, full=True)
    with pytest.raises(CommitConflict, match="already removed"):
        run_task(store, meta, state, task)
    assert len(PartitionLog(store, meta.path, 0).load().segments) == 1


def test_table_stats(store):
    meta = Catalog(store).create_table("acme", "logs", partitions=2)
    stats = table_stats(store, meta)
    assert (stats.segments, stats.rows, stats.oldest_event, stats.last_compaction) == (0, 0, None, None)
    small_segments(store, meta, 12, rows=10, hours=2)
    stats = table_stats(store, meta)
    assert (stats.segments, stats.rows, stats.small_segments, stats.buckets) == (12, 120, 12, 4)
    assert stats.bytes == sum(e.bytes for e in load_snapshot(store, meta).segments)
    assert stats.oldest_event == int(BASE.timestamp() * 1e6) and stats.last_compaction is None
    started = time.time()
    compact_table(store, meta, full=True)
    stats = table_stats(store, meta)
    assert (stats.segments, stats.rows, stats.small_segments) == (2, 120, 2)  # a day per partition
    assert stats.last_compaction >= started


def test_hour_buckets_round_down_before_1970_too():
    from storage.segment import bucket_of, split_by_bucket

    micros = [-3_600_000_001, -1, 0, 1, 3_600_000_000]
    table = pa.table({"timestamp": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                      "n": list(range(5))})
    parts = split_by_bucket(table, "timestamp")
    assert [p.column("n").to_pylist() for p in parts] == [[0], [1], [2, 3], [4]]
    assert [bucket_of(p.column("timestamp")[0].value) for p in parts] == [
        "1969-12-31T22", "1969-12-31T23", "1970-01-01T00", "1970-01-01T01"]
