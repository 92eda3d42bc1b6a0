from __future__ import annotations

import threading
import time

import pytest

from storage.catalog import Catalog
from storage.errors import CommitConflict, Fenced
from storage.log import PartitionLog
from storage.segment import write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table
from tests.storage_fixtures import append, events


@pytest.fixture
def meta(store):
    return Catalog(store).create_table("acme", "logs", partitions=2)


def test_append_then_load(store, meta):
    state = append(store, meta, events(10), batch_ids=["b1"], offsets={"file:a.jsonl": 1})
    assert state.version == 0 and state.rows == 10
    loaded = PartitionLog(store, meta.path, 0).load()
    assert loaded.version == 0 and set(loaded.segments) == set(state.segments)
    assert loaded.has_batch("b1") and loaded.offsets == {"file:a.jsonl": 1}


def test_threads_race_every_append_lands_exactly_once(store, meta):
    errors = []

    def writer(i: int) -> None:
        try:
            for j in range(3):
                append(store, meta, events(2, start=(i * 3 + j) * 2), batch_ids=[f"w{i}-{j}"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    state = PartitionLog(store, meta.path, 0).load()
    assert state.version == 17
    assert sorted(state.batch_ids) == sorted(f"w{i}-{j}" for i in range(6) for j in range(3))
    assert state.rows == 36


def test_zombie_writer_is_fenced_and_its_upload_vacuumed(store, meta):
    log = PartitionLog(store, meta.path, 0)
    old = log.claim()
    old = append(store, meta, events(5), state=old, epoch=old.epoch, batch_ids=["ok"])
    # the old owner uploads a segment, then stalls; a new owner claims the partition
    zombie_upload = write_segment(store, meta.path, events(5, start=100), partition=0,
                                  time_column="timestamp", sort_key=meta.full_sort_key)
    new = log.claim()
    assert new.epoch == old.epoch + 1
    with pytest.raises(Fenced, match=f"epoch {new.epoch}"):
        log.commit(old, epoch=old.epoch, added=[zombie_upload], batch_ids=["late"])
    fresh = log.load()  # a zombie that reloads first is refused too
    with pytest.raises(Fenced):
        log.commit(fresh, epoch=old.epoch, added=[zombie_upload])
    assert not log.load().has_batch("late")
    report = vacuum_table(store, meta, older_than=0, orphans_older_than=0, now=time.time() + 1)
    assert report.orphans == 1
    assert not store.exists(f"{meta.path}/{zombie_upload.path}")
    assert load_snapshot(store, meta).rows == 5


def test_maintenance_commit_conflicts_when_its_segment_is_gone(store, meta):
    state = append(store, meta, events(3))
    (segment_id,) = state.segments
    log = PartitionLog(store, meta.path, 0)
    log.commit(state, epoch=None, removed=[segment_id], kind="retention")
    with pytest.raises(CommitConflict, match=segment_id):
        log.commit(state, epoch=None, removed=[segment_id], kind="compact")
    assert log.load().segments == {}


def test_maintenance_commit_rebases_over_appends(store, meta):
    base = append(store, meta, events(3))
    (segment_id,) = base.segments
    append(store, meta, events(3, start=3))  # lands after compaction read `base`
    merged = write_segment(store, meta.path, events(3), partition=0, time_column="timestamp")
    state = PartitionLog(store, meta.path, 0).commit(base, epoch=None, removed=[segment_id],
                                                    added=[merged], kind="compact")
    assert state.version == 2 and state.rows == 6 and segment_id not in state.segments


def test_torn_commit_leaves_the_log_readable(store, meta):
    state = append(store, meta, events(4))
    # a crash between upload and commit: the segment is uploaded, no commit written
    write_segment(store, meta.path, events(4, start=50), partition=0, time_column="timestamp")
    if store.protocol == "file":  # and a crash in the middle of writing the next commit file
        import os
        folder = os.path.join(store.root, meta.path, "_log", "0")
        with open(os.path.join(folder, ".tmp-crashed"), "wb") as handle:
            handle.write(b'{"kind": "app')
    reloaded = PartitionLog(store, meta.path, 0).load()
    assert reloaded.version == state.version and reloaded.rows == 4
    after = append(store, meta, events(1, start=99))
    assert after.version == 1 and after.rows == 5
    report = vacuum_table(store, meta, older_than=0, orphans_older_than=0, now=time.time() + 1)
    assert report.orphans == 1
    assert report.temporary == (1 if store.protocol == "file" else 0)  # the crashed commit's temp file


def test_checkpoint_plus_tail_equals_full_replay(store, meta):
    log = PartitionLog(store, meta.path, 0, checkpoint_interval=5)
    state = log.load()
    for i in range(13):
        entry = write_segment(store, meta.path, events(1, start=i), partition=0, time_column="timestamp")
        removed = [next(iter(state.segments))] if i % 4 == 3 else []
        state = log.commit(state, epoch=None, added=[entry], removed=removed, batch_ids=[f"b{i}"],
                           offsets={"src": i})
    commits, checkpoints = log.versions()
    assert checkpoints == [5, 10]
    with_cp = log.load()
    # full replay: a log with no checkpoints
    for v in checkpoints:
        store.delete(log.checkpoint_path(v))
    full = log.load()
    assert with_cp.to_json() == full.to_json() == state.to_json()
    assert log.load(version=7).version == 7


def test_opening_a_long_log_reads_one_checkpoint_and_a_short_tail(tmp_path):
    from storage.objectstore import ObjectStore

    store = ObjectStore(str(tmp_path))
    meta = Catalog(store).create_table("acme", "long")
    log = PartitionLog(store, meta.path, 0, checkpoint_interval=50)
    state = log.load()
    entry = write_segment(store, meta.path, events(1), partition=0, time_column="timestamp")
    state = log.commit(state, epoch=None, added=[entry])
    for i in range(999):
        state = log.commit(state, epoch=None, batch_ids=[f"b{i}"])
    assert state.version == 999
    reader = ObjectStore(str(tmp_path))
    loaded = PartitionLog(reader, meta.path, 0, checkpoint_interval=50).load()
    assert loaded.version == 999 and loaded.rows == 1 and len(loaded.batch_ids) == 999
    assert reader.calls["list"] == 1
    assert reader.calls["get"] <= 1 + 50  # one checkpoint and at most K commit files


def test_claim_raises_epoch_each_time(store, meta):
    log = PartitionLog(store, meta.path, 1)
    assert [log.claim().epoch for _ in range(3)] == [1, 2, 3]
    assert log.load().epoch == 3


def test_owner_appends_are_fenced_after_a_newer_claim_even_mid_rebase(store, meta):
    log = PartitionLog(store, meta.path, 0)
    a = log.claim()
    b = log.claim()
    append(store, meta, events(2), state=b, epoch=b.epoch)
    with pytest.raises(Fenced):
        append(store, meta, events(2), state=a, epoch=a.epoch)


def _append_from_process(root: str, worker: int, count: int) -> None:
    from storage.objectstore import ObjectStore

    store = ObjectStore(root)
    meta = Catalog(store).table("acme", "logs")
    for j in range(count):
        append(store, meta, events(1, start=worker * 100 + j), batch_ids=[f"p{worker}-{j}"])


def test_processes_race_every_append_lands_exactly_once(tmp_path):
    import multiprocessing

    from storage.objectstore import ObjectStore

    root = str(tmp_path / "wh")
    Catalog(ObjectStore(root)).create_table("acme", "logs")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_from_process, args=(root, w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    store = ObjectStore(root)
    state = PartitionLog(store, "acme/logs", 0).load()
    assert state.version == 39
    assert sorted(state.batch_ids) == sorted(f"p{w}-{j}" for w in range(4) for j in range(10))
    ids = sorted(i for s in state.segments.values() for i in range(s.columns["id"].min, s.columns["id"].max + 1))
    assert ids == sorted(w * 100 + j for w in range(4) for j in range(10))
