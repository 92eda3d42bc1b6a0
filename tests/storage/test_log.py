"""The per-partition commit log: exactly-once appends under races, fencing, checkpoints, rebases and torn commits."""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from decimal import Decimal

import pytest

from storage.catalog import Catalog
from storage.errors import CommitConflict, Fenced, SchemaConflict
from storage.log import TOMBSTONE_SECONDS, PartitionLog, PartitionState, _apply
from storage.segment import write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table
from tests.storage_fixtures import FlakyStore, append, events, flaky


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


def test_a_log_checkpointed_by_size_waits_until_its_commits_add_up_to_the_state(store, meta):
    log = PartitionLog(store, meta.path, 0, checkpoint_interval=5, checkpoint_by_size=True)
    state = log.commit(log.load(), epoch=None, offsets={f"m{i}": "x" * 100 for i in range(500)})  # ~60 KB
    for i in range(150):  # each touches one entry: ~150 bytes
        state = log.commit(state, epoch=None, offsets={f"m{i % 500}": "y"})
    size = len(store.get(log.checkpoint_path(5)))
    commits = sum(len(store.get(log.commit_path(v))) for v in range(6, 106))
    assert commits < size  # not the state's bytes yet: the count bound (20 x 5 versions) wrote the next
    assert log.versions()[1] == [5, 105]  # the first by count: this writer knew no checkpoint's size
    eager = PartitionLog(store, meta.path, 0, checkpoint_interval=5)  # without: every 5 versions
    assert eager.load().to_json() == log.load().to_json() == state.to_json()
    for version in log.versions()[1]:
        store.delete(log.checkpoint_path(version))
    assert log.load().to_json() == state.to_json()  # the checkpoints held what replaying every commit gives


def test_the_committers_state_is_the_one_read_back_stats_and_all(store, meta):
    log = PartitionLog(store, meta.path, 0)
    table = events(3, price=[1.5, None, 2.25], tag=[b"a", b"b", None], amount=[Decimal("1.10"), Decimal("2.00"), None])
    entry = write_segment(store, meta.path, table, partition=0, time_column="timestamp")
    state = log.commit(log.load(), epoch=None, added=[entry], batch_ids=["b"])
    assert state.segments[entry.id] is entry  # kept as it was, not decoded from its own record
    assert log.load().segments == state.segments
    assert entry.to_json() is entry.to_json()  # built once: every checkpoint records it again
    assert "_json" not in pickle.loads(pickle.dumps(entry)).__dict__  # not carried to query workers
    assert pickle.loads(pickle.dumps(entry)).to_json() == entry.to_json()


def test_opening_a_long_log_reads_one_checkpoint_and_a_short_tail(tmp_path):
    from storage.objectstore import ObjectStore

    store = FlakyStore(str(tmp_path))
    meta = Catalog(store).create_table("acme", "long")
    log = PartitionLog(store, meta.path, 0, checkpoint_interval=50)
    state = log.load()
    entry = write_segment(store, meta.path, events(1), partition=0, time_column="timestamp")
    state = log.commit(state, epoch=None, added=[entry])
    # the writer crashes between commit 950 and its checkpoint: the next commit writes it
    store.refuse_put(f"{950:020d}.checkpoint", OSError("crashed before the checkpoint"))
    for i in range(999):
        state = log.commit(state, epoch=None, batch_ids=[f"b{i}"])
    assert state.version == 999
    assert log.versions()[1][-2:] == [900, 951]
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


def _fold(store, meta) -> None:
    """Vacuum with no grace: checkpoint the latest version and delete every commit below it."""
    vacuum_table(store, meta, older_than=0, now=time.time() + 1)
    commits, checkpoints = PartitionLog(store, meta.path, 0).versions()
    assert commits == [] and checkpoints


def test_a_commit_on_a_state_older_than_a_vacuum_fold_is_rebased_not_lost(store, meta):
    log = PartitionLog(store, meta.path, 0)
    owner = log.claim()
    owner = append(store, meta, events(2), state=owner, epoch=owner.epoch, batch_ids=["b0"])
    # while the owner idles, maintenance commits and vacuum folds the log
    for i in range(3):
        log.commit(log.load(), epoch=None, offsets={"compactor": i}, kind="compact")
    _fold(store, meta)
    # the owner's next version (2) was folded: writing it must not count as committed
    owner = append(store, meta, events(3, start=2), state=owner, epoch=owner.epoch, batch_ids=["b1"])
    assert owner.version == 5
    fresh = PartitionLog(store, meta.path, 0).load()
    assert fresh.version == 5 and fresh.has_batch("b1") and fresh.rows == 5
    assert load_snapshot(store, meta).rows == 5


def test_a_zombie_older_than_a_vacuum_fold_is_still_fenced(store, meta):
    log = PartitionLog(store, meta.path, 0)
    zombie = log.claim()
    zombie = append(store, meta, events(2), state=zombie, epoch=zombie.epoch)
    owner = log.claim()
    append(store, meta, events(2, start=2), state=owner, epoch=owner.epoch)
    _fold(store, meta)
    with pytest.raises(Fenced):
        append(store, meta, events(2, start=4), state=zombie, epoch=zombie.epoch, batch_ids=["late"])
    fresh = log.load()
    assert not fresh.has_batch("late") and fresh.rows == 4


def test_an_incompatible_schema_is_refused_before_anything_is_written(store, meta):
    append(store, meta, events(2, status=[200, 500]))
    with pytest.raises(SchemaConflict, match=r"'status'.*int64.*string"):
        append(store, meta, events(2, start=2, status=["ok", "bad"]))
    log = PartitionLog(store, meta.path, 0)
    assert log.versions()[0] == [0]
    state = log.load()
    assert state.version == 0 and state.rows == 2
    state = append(store, meta, events(2, start=2, status=[1.5, 2.5], user=["a", "b"]))
    assert log.record(state.version)["schema_changes"] == [
        {"column": "status", "type": "double", "was": "int64"},
        {"column": "user", "type": "string"},
    ]
    first = log.record(0)["schema_changes"]  # the first commit adds every column
    assert {c["column"] for c in first} == {"timestamp", "id", "service", "status"}
    assert all("was" not in c for c in first)


@pytest.mark.parametrize("error", [CommitConflict("412 after a retried PUT"), OSError("connection reset")],
                         ids=["retried-412", "lost-reply"])
def test_a_commit_whose_put_landed_but_failed_is_not_written_twice(store, meta, error):
    writer = flaky(store)
    append(writer, meta, events(2), batch_ids=["b0"])
    writer.lose_reply("_log/0/", error)
    state = append(writer, meta, events(3, start=2), batch_ids=["b1"])
    assert state.version == 1 and state.rows == 5
    log = PartitionLog(store, meta.path, 0)
    assert log.versions()[0] == [0, 1]
    assert log.load().to_json() == state.to_json()


def test_a_lost_reply_during_a_rebase_is_not_written_twice(store, meta):
    writer = flaky(store)
    base = append(writer, meta, events(2), batch_ids=["b0"])
    append(store, meta, events(1, start=2), batch_ids=["other"])  # forces a rebase
    writer.lose_reply(f"{2:020d}.json", CommitConflict("412 after a retried PUT"))
    state = append(writer, meta, events(3, start=3), state=base, batch_ids=["b1"])
    assert state.version == 2 and state.rows == 6
    assert PartitionLog(store, meta.path, 0).versions()[0] == [0, 1, 2]


def test_a_batch_id_is_never_committed_twice(store, meta):
    base = PartitionLog(store, meta.path, 0).load()
    append(store, meta, events(2), batch_ids=["b0", "b1"])
    with pytest.raises(CommitConflict, match="b1"):  # on the current state
        append(store, meta, events(2, start=2), batch_ids=["b1"])
    with pytest.raises(CommitConflict, match="b0"):  # found when rebasing a stale one
        append(store, meta, events(2, start=2), state=base, batch_ids=["b0"])
    state = PartitionLog(store, meta.path, 0).load()
    assert state.version == 0 and state.rows == 2


def test_a_failed_checkpoint_does_not_fail_its_durable_commit(store, meta, caplog):
    writer = flaky(store)
    log = PartitionLog(writer, meta.path, 0, checkpoint_interval=3)
    state = log.load()
    writer.refuse_put(f"{3:020d}.checkpoint", OSError("throttled"))
    with caplog.at_level(logging.WARNING, logger="storage.log"):
        for i in range(5):
            state = log.commit(state, epoch=None, batch_ids=[f"b{i}"])
    assert "checkpoint at version 3 failed" in caplog.text
    assert state.version == 4 and log.versions()[1] == [4]
    assert PartitionLog(store, meta.path, 0).load().to_json() == state.to_json()


def test_tombstones_expire_by_age_only():
    from storage.objectstore import ObjectStore

    store = ObjectStore(f"memory://petrel-{uuid.uuid4().hex}")
    entry = write_segment(store, "acme/t", events(1), partition=0, time_column="timestamp")
    now = 1_000_000_000.0
    state = PartitionState(
        partition=0, segments={entry.id: entry},
        tombstones={f"data/old-{i}.parquet": now - TOMBSTONE_SECONDS - 1 for i in range(3)}
        | {f"data/{i}.parquet": now - 1 for i in range(10_001)},  # more than the old count limit
    )
    after = _apply(state, 0, {"removed": [entry.id], "timestamp": now})
    assert len(after.tombstones) == 10_002 and after.tombstones[entry.path] == now
    assert not any(path.startswith("data/old-") for path in after.tombstones)


def test_a_ghost_commit_does_not_vouch_for_the_one_after_it(store, meta):
    log = PartitionLog(store, meta.path, 0)
    states = [append(store, meta, events(1, start=i), batch_ids=[f"b{i}"]) for i in range(5)]
    _fold(store, meta)
    # two writers idle since versions 1 and 2: the first puts a ghost at 2, the
    # second then finds a version 2 file in place when it puts 3
    append(store, meta, events(1, start=10), state=states[1], batch_ids=["late-1"])
    append(store, meta, events(1, start=11), state=states[2], batch_ids=["late-2"])
    fresh = PartitionLog(store, meta.path, 0).load()
    assert fresh.has_batch("late-1") and fresh.has_batch("late-2") and fresh.rows == 7
    assert fresh.version == 6 and log.load().to_json() == fresh.to_json()
