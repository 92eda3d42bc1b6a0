"""Vacuum: grace periods, checkpoint folding, dropped tables and orphans, never deleting a live file."""

from __future__ import annotations

import os
import time

import pytest

from storage.catalog import Catalog
from storage.errors import PetrelError, TableExists, TableNotFound
from storage.log import TOMBSTONE_SECONDS, PartitionLog
from storage.objectstore import ObjectStore
from storage.segment import read_segment, write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import ORPHAN_MIN_SECONDS, vacuum, vacuum_table
from tests.storage_fixtures import append, events, flaky


def test_vacuum_respects_the_grace_period_and_never_deletes_live_files(store):
    meta = Catalog(store).create_table("acme", "logs")
    state = append(store, meta, events(5))
    (old_id,) = state.segments
    old_snapshot = load_snapshot(store, meta)
    merged = write_segment(store, meta.path, events(5), partition=0, time_column="timestamp")
    PartitionLog(store, meta.path, 0).commit(state, epoch=None, removed=[old_id], added=[merged])
    # inside the grace period the removed segment stays readable for the old snapshot
    assert vacuum_table(store, meta, older_than="1h").segments == 0
    assert read_segment(store, meta.path, old_snapshot.segments[0]).num_rows == 5
    report = vacuum_table(store, meta, older_than=0, now=time.time() + 1)
    assert report.segments == 1 and report.orphans == 0
    live = load_snapshot(store, meta)
    assert [s.id for s in live.segments] == [merged.id]
    assert read_segment(store, meta.path, live.segments[0]).num_rows == 5


def test_vacuum_folds_old_commits_into_a_checkpoint(store):
    meta = Catalog(store).create_table("acme", "logs")
    for i in range(6):
        append(store, meta, events(1, start=i), batch_ids=[f"b{i}"])
    before = PartitionLog(store, meta.path, 0).load()
    report = vacuum_table(store, meta, older_than=0, now=time.time() + 1)
    assert report.log_files == 6
    commits, checkpoints = PartitionLog(store, meta.path, 0).versions()
    assert commits == [] and checkpoints == [5]
    assert PartitionLog(store, meta.path, 0).load().to_json() == before.to_json()
    after = append(store, meta, events(1, start=6))
    assert after.version == 6 and after.rows == 7


def test_dropped_table_is_removed_after_the_grace_period(store):
    catalog = Catalog(store)
    meta = catalog.create_table("acme", "logs")
    append(store, meta, events(3))
    catalog.drop_table("acme", "logs")
    assert vacuum(store, "acme", older_than="1h").tables == 0
    assert store.exists(f"{meta.path}/_table.json")
    assert vacuum(store, "acme", older_than=0, now=time.time() + 1).tables == 1
    assert store.list(meta.path, recursive=True) == []
    catalog.create_table("acme", "logs")  # the name is free again


def test_a_young_orphan_outlives_a_zero_grace(store):
    meta = Catalog(store).create_table("acme", "logs")
    append(store, meta, events(2))
    upload = write_segment(store, meta.path, events(2, start=2), partition=0, time_column="timestamp")
    # the upload's commit may be on its way: older_than=0 alone does not delete it
    assert vacuum_table(store, meta, older_than=0, now=time.time() + 1).orphans == 0
    assert vacuum(store, "acme", older_than=0, now=time.time() + 1).orphans == 0
    assert store.exists(f"{meta.path}/{upload.path}")
    later = time.time() + ORPHAN_MIN_SECONDS + 1
    assert vacuum_table(store, meta, older_than=0, now=later).orphans == 1
    assert not store.exists(f"{meta.path}/{upload.path}")
    assert load_snapshot(store, meta).rows == 2


def test_an_explicit_orphan_grace_overrides_the_minimum(store):
    meta = Catalog(store).create_table("acme", "logs")
    upload = write_segment(store, meta.path, events(2), partition=0, time_column="timestamp")
    report = vacuum(store, "acme", older_than=0, now=time.time() + 1, orphans_older_than=0)
    assert report.orphans == 1 and not store.exists(f"{meta.path}/{upload.path}")


def test_a_grace_longer_than_the_tombstones_is_refused(store):
    meta = Catalog(store).create_table("acme", "logs")
    with pytest.raises(PetrelError, match="older_than='8d'.*7 days"):
        vacuum_table(store, meta, older_than="8d")
    with pytest.raises(PetrelError, match="older_than"):
        vacuum(store, "acme", older_than=TOMBSTONE_SECONDS + 1)
    assert vacuum(store, "acme", older_than=TOMBSTONE_SECONDS).segments == 0


def test_temporary_files_of_crashed_writes_are_vacuumed(tmp_path):
    store = ObjectStore(str(tmp_path))
    meta = Catalog(store).create_table("acme", "logs")
    state = append(store, meta, events(2))
    (entry,) = state.segments.values()
    data_dir = os.path.dirname(os.path.join(str(tmp_path), meta.path, entry.path))
    log_dir = os.path.join(str(tmp_path), meta.path, "_log", "0")
    old = time.time() - ORPHAN_MIN_SECONDS - 60
    crashed = [os.path.join(data_dir, ".tmp-crashed-upload"), os.path.join(log_dir, ".tmp-crashed-commit")]
    for path in crashed:
        with open(path, "wb") as handle:
            handle.write(b"partial")
        os.utime(path, (old, old))
    in_flight = os.path.join(data_dir, ".tmp-being-written")
    with open(in_flight, "wb") as handle:
        handle.write(b"partial")
    assert len(store.list(f"{meta.path}/data", recursive=True, include_temporary=True)) == 3
    report = vacuum_table(store, meta, older_than=0)
    assert report.temporary == 2 and report.orphans == 0 and report.segments == 0
    assert not any(os.path.exists(p) for p in crashed) and os.path.exists(in_flight)
    assert load_snapshot(store, meta).rows == 2


def test_a_crash_while_deleting_a_dropped_table_never_resurrects_it(store):
    catalog = Catalog(store)

    def dropped_table():
        meta = catalog.create_table("acme", "logs", partitions=2)
        append(store, meta, events(3), batch_ids=["b"])
        catalog.alter_table("acme", "logs", retention="30d")
        catalog.drop_table("acme", "logs")
        return meta

    meta = dropped_table()
    recorder = flaky(store)
    assert vacuum(recorder, "acme", older_than=0, now=time.time() + 1).tables == 1
    assert recorder.deleted[0] == f"{meta.path}/_table.json"
    assert recorder.deleted[-1] == f"{meta.path}/_dropped.json"
    for crash_at in range(len(recorder.deleted)):
        dropped_table()
        crashing = flaky(store)
        crashing.crash_on_delete(crash_at)
        with pytest.raises(OSError, match="crash while deleting"):
            vacuum(crashing, "acme", older_than=0, now=time.time() + 1)
        with pytest.raises(TableNotFound):
            catalog.table("acme", "logs")
        assert catalog.tables("acme") == []
        with pytest.raises(TableExists, match="dropped"):
            catalog.create_table("acme", "logs")
        assert vacuum(store, "acme", older_than=0, now=time.time() + 1).tables == 1  # the next vacuum finishes
        assert store.list(meta.path, recursive=True, include_temporary=True) == []
