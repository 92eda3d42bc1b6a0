"""Retention: dropping exactly the segments past a table's period, and keeping all without one."""

from __future__ import annotations

import time

from storage.catalog import Catalog
from storage.log import PartitionLog
from storage.retention import apply_retention, retention_cutoff
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table
from tests.storage_fixtures import BASE, append, events

HOUR = 3600


def test_retention_drops_exactly_the_segments_past_the_period(store):
    catalog = Catalog(store)
    meta = catalog.create_table("acme", "logs", partitions=2)
    for hour in range(6):  # one segment per partition per hour; events within the first 10 seconds
        for partition in range(2):
            append(store, meta, events(10, start=hour * 100 + partition * 10, hour=hour), partition=partition)
    assert apply_retention(store, meta, now=BASE.timestamp() + 10 * HOUR).segments == 0  # no retention yet
    meta = catalog.alter_table("acme", "logs", retention="7h")
    now = BASE.timestamp() + 10 * HOUR + 5  # cutoff: 03:00:05 -> hours 0..2 are past, hour 3 is not whole
    assert retention_cutoff(meta, now) == int((BASE.timestamp() + 3 * HOUR + 5) * 1e6)
    report = apply_retention(store, meta, now=now)
    assert (report.segments, report.rows, report.commits) == (6, 60, 2)
    snapshot = load_snapshot(store, meta)
    assert len(snapshot.segments) == 6
    assert min(s.min_time for s in snapshot.segments) == int((BASE.timestamp() + 3 * HOUR) * 1e6)
    for partition in range(2):
        state = PartitionLog(store, meta.path, partition).load()
        assert state.version == 6  # six appends, one retention commit
    assert apply_retention(store, meta, now=now).segments == 0
    assert vacuum_table(store, meta, older_than=0, now=time.time() + 1).segments == 6


def test_retention_keeps_everything_without_a_period(store):
    meta = Catalog(store).create_table("acme", "logs")
    append(store, meta, events(3))
    assert apply_retention(store, meta).segments == 0
    assert retention_cutoff(meta) is None
    assert load_snapshot(store, meta).rows == 3
