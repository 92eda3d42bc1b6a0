"""Compaction across hours: size-targeted, non-overlapping segments cut only at window boundaries."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa

from storage.catalog import Catalog
from storage.compaction import CompactionPolicy, compact_table, plan_compaction
from storage.log import PartitionLog
from storage.retention import apply_retention
from storage.segment import read_segment, write_segment
from storage.snapshot import load_snapshot
from storage.windows import DAY_US, HOUR_US, SPAN_DAYS
from tests.maintenance_fixtures import commit, table_rows
from tests.storage_fixtures import BASE

BASE_US = int(BASE.timestamp() * 1_000_000)


def month_rows(n: int, seed: int, days: int = 31) -> pa.Table:
    """``n`` events spread at random over ``days`` days from BASE (out of order, as a backfill sends them)."""
    rng = np.random.default_rng(seed)
    micros = BASE_US + rng.integers(0, days * DAY_US, n)
    return pa.table({
        "timestamp": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "id": pa.array(rng.integers(0, 1 << 40, n), pa.int64()),
        "service": pa.array([f"svc-{v}" for v in rng.integers(0, 5, n)]),
    })


def flush(store, meta, table: pa.Table, partition: int = 0) -> None:
    """One segment per flush, whatever span of time it covers (as ingestion writes them)."""
    entry = write_segment(store, meta.path, table, partition=partition, time_column=meta.time_column,
                          sort_key=meta.full_sort_key)
    commit(store, meta, partition, [entry])


def assert_non_overlapping(segments) -> None:
    spans = sorted((e.min_time, e.max_time) for e in segments)
    for (_, high), (low, _) in zip(spans, spans[1:]):
        assert high <= low


def compact_a_sparse_month(store, retention):
    """A month of sparse flushes over two partitions, compacted in full; the table and its snapshot after."""
    meta = Catalog(store).create_table("acme", "hits", partitions=2, retention=retention)
    for i in range(8):  # eight flushes per partition, each spanning the whole month
        for partition in range(2):
            flush(store, meta, month_rows(400, seed=i * 2 + partition), partition)
    before = table_rows(store, meta)
    report = compact_table(store, meta, full=True)
    assert report.conflicts == 0 and report.removed == 16
    assert table_rows(store, meta).equals(before)
    return meta, load_snapshot(store, meta)


def test_a_month_of_sparse_flushes_kept_forever_becomes_one_segment_per_partition_per_span(store):
    meta, after = compact_a_sparse_month(store, retention=None)
    span_us = SPAN_DAYS[0] * DAY_US
    for partition in range(2):
        mine = [e for e in after.segments if e.partition == partition]
        # 2026-11-01..12-01 touches two 28-day spans (counted from the epoch): two segments, not 31
        assert len(mine) == len({e.min_time // span_us for e in mine}) == 2
        assert all(e.min_time // span_us == e.max_time // span_us for e in mine)  # none crosses a span
        assert_non_overlapping(mine)
        assert plan_compaction(PartitionLog(store, meta.path, partition).load(), full=True, meta=meta) == []
    assert sorted({e.path.split("/")[1] for e in after.segments}) == ["2026-10-22+28d", "2026-11-19+28d"]


def test_a_span_that_fills_past_the_target_is_cut_again_by_week_or_day(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "hits")
    policy = CompactionPolicy(target_rows=1000)
    for seed in range(2):  # two sparse weeks: one span
        flush(store, meta, month_rows(300, seed=seed, days=14))
    compact_table(store, meta, policy, full=True)
    assert {e.path.split("/")[1] for e in load_snapshot(store, meta).segments} == {"2026-10-22+28d"}
    flush(store, meta, month_rows(900, seed=5, days=14))  # now 1,500 rows: past the target for the span
    before = table_rows(store, meta)
    compact_table(store, meta, policy, full=True)
    after = load_snapshot(store, meta).segments
    assert table_rows(store, meta).equals(before)
    assert all("+28d" not in e.path for e in after)  # weeks of ~750 rows (or days) now
    assert all(e.min_time // (7 * DAY_US) == e.max_time // (7 * DAY_US) for e in after)
    assert_non_overlapping(after)


def test_a_month_of_sparse_flushes_with_a_month_of_retention_becomes_one_segment_per_partition_per_day(store):
    meta, after = compact_a_sparse_month(store, retention="30d")
    for partition in range(2):
        mine = [e for e in after.segments if e.partition == partition]
        days = {e.min_time // DAY_US for e in mine}
        assert len(mine) == len(days) <= 31  # one per day of data
        assert all(e.min_time // DAY_US == e.max_time // DAY_US for e in mine)  # none crosses a day
        assert_non_overlapping(mine)
    for entry in after.segments:
        folder = dt.datetime.fromtimestamp(entry.min_time / 1e6, dt.timezone.utc).strftime("%Y-%m-%d")
        assert entry.path.split("/")[1] == folder
        rows = read_segment(store, meta.path, entry)
        assert rows.equals(rows.sort_by([("timestamp", "ascending")]))
    for partition in range(2):  # settled: nothing left to do
        assert plan_compaction(PartitionLog(store, meta.path, partition).load(), full=True, meta=meta) == []


def test_overlapping_segments_of_a_settled_day_are_merged_into_non_overlapping_ones_by_size(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "hits")
    policy = CompactionPolicy(target_rows=1000, small_fraction=0.5)
    for i in range(3):  # three large (not small) segments covering the same day, out of order
        flush(store, meta, month_rows(900, seed=i, days=1))
    flush(store, meta, month_rows(100, seed=9, days=1).slice(0, 10))  # late, small
    before = table_rows(store, meta)
    compact_table(store, meta, policy, full=True)
    after = load_snapshot(store, meta).segments
    assert [e.rows for e in sorted(after, key=lambda e: e.min_time)] == [1000, 1000, 710]
    assert_non_overlapping(after)
    assert table_rows(store, meta).equals(before)
    state = PartitionLog(store, meta.path, 0).load()
    assert plan_compaction(state, policy, full=True, meta=meta) == []


def test_a_day_still_being_written_merges_by_size_tier_and_cuts_flushes_that_cross_days(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "hits", retention="30d")  # a month kept: cut by day
    policy = CompactionPolicy(min_inputs=4, settle_seconds=3600)
    now = time.time()
    for i in range(3):
        flush(store, meta, month_rows(50, seed=i, days=1))
    assert plan_compaction(PartitionLog(store, meta.path, 0).load(), policy, now, meta=meta) == []
    flush(store, meta, month_rows(50, seed=7, days=2))  # crosses into the next day: cut now
    (task,) = plan_compaction(PartitionLog(store, meta.path, 0).load(), policy, now, meta=meta)
    assert len(task.inputs) == 1 and task.bucket == "2026-11-01..2026-11-02"
    compact_table(store, meta, policy, now=now)
    segments = load_snapshot(store, meta).segments
    assert all(e.min_time // DAY_US == e.max_time // DAY_US for e in segments)
    assert sum(e.rows for e in segments) == 200


def test_dense_days_of_a_table_sorted_by_another_column_are_cut_by_hour(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "hits", sort_key=["service"])
    policy = CompactionPolicy(hour_rows=10)
    dense = month_rows(24 * 20, seed=1, days=1)  # 20 rows an hour on day one
    sparse = month_rows(30, seed=2, days=1)  # 30 rows on day two
    sparse = sparse.set_column(0, "timestamp", pa.array(
        [v.value + DAY_US for v in sparse.column("timestamp")], pa.int64()).cast(pa.timestamp("us", tz="UTC")))
    for table in (dense.slice(0, 240), dense.slice(240), sparse.slice(0, 15), sparse.slice(15)):
        flush(store, meta, table)
    before = table_rows(store, meta)
    compact_table(store, meta, policy, full=True)
    folders = sorted(e.path.split("/")[1] for e in load_snapshot(store, meta).segments)
    assert folders == [f"2026-11-01T{h:02d}" for h in range(24)] + ["2026-11-02"]
    assert table_rows(store, meta).equals(before)
    for entry in load_snapshot(store, meta).segments:
        rows = read_segment(store, meta.path, entry)
        assert rows.equals(rows.sort_by([("service", "ascending"), ("timestamp", "ascending")]))


def test_short_retention_cuts_by_hour_so_retention_drops_whole_hours(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "hits", retention="2d")
    table = month_rows(300, seed=3, days=1)
    flush(store, meta, table)
    flush(store, meta, month_rows(300, seed=4, days=1))
    compact_table(store, meta, full=True)
    segments = load_snapshot(store, meta).segments
    assert all(e.min_time // HOUR_US == e.max_time // HOUR_US for e in segments) and len(segments) == 24
    noon = (BASE_US + 12 * HOUR_US) / 1e6 + 2 * 86400  # retention cuts at noon of day one
    report = apply_retention(store, meta, now=noon)
    assert report.segments == 12 and report.rows == sum(e.rows for e in segments if e.max_time < BASE_US + 12 * HOUR_US)


def test_rows_without_a_time_are_kept_in_the_unknown_folder(memory_store):
    store = memory_store
    meta = Catalog(store).create_table("acme", "hits", retention="30d")  # a month kept: cut by day
    for seed in range(2):
        table = month_rows(20, seed=seed, days=2)
        times = table.column("timestamp").to_pylist()
        times[3] = None
        flush(store, meta, table.set_column(0, "timestamp", pa.array(times, pa.timestamp("us", tz="UTC"))))
    before = table_rows(store, meta)
    compact_table(store, meta, full=True)
    segments = load_snapshot(store, meta).segments
    assert sorted(e.path.split("/")[1] for e in segments) == ["2026-11-01", "2026-11-02", "unknown"]
    assert table_rows(store, meta).equals(before)
