from __future__ import annotations

import time

from storage.catalog import Catalog
from storage.log import PartitionLog
from storage.segment import read_segment, write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum, vacuum_table
from tests.storage_fixtures import append, events


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
