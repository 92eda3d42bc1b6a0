"""Storage defects found by review: each test failed before its fix."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
import uuid

import botocore.exceptions
import pyarrow as pa
import pytest
from s3fs.errors import translate_boto_error

from storage.catalog import REJECTED_TABLE, Catalog, TableMeta, validate_name
from storage.compaction import compact_table
from storage.errors import (
    CommitConflict,
    InvalidArgument,
    InvalidName,
    PetrelError,
    SegmentMissing,
    UnsafeStore,
    WriteRace,
)
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.retention import apply_retention
from storage.segment import encode_segment, read_segment, write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table
from tests.maintenance_fixtures import table_rows
from tests.storage_fixtures import append, events

# -- issue 21, item 10 ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["logs\n", "logs\r\n", "\nlogs"])
def test_a_name_with_a_newline_is_refused(memory_store, name):
    with pytest.raises(InvalidName, match="not allowed"):
        validate_name(name)
    with pytest.raises(InvalidName):
        Catalog(memory_store).create_table("acme", name)


@pytest.mark.parametrize("time_column", [None, ""])
def test_a_table_without_a_time_column_is_refused_when_created(memory_store, time_column):
    with pytest.raises(InvalidArgument, match="needs a time column"):
        Catalog(memory_store).create_table("acme", "dims", time_column=time_column)
    assert Catalog(memory_store).tables("acme") == []


def test_the_log_loader_finds_a_commit_missing_in_the_middle(memory_store):
    meta = Catalog(memory_store).create_table("acme", "logs")
    for i in range(6):
        append(memory_store, meta, events(2, start=i * 2))
    log = PartitionLog(memory_store, meta.path, 0, checkpoint_interval=3)
    log.write_checkpoint(log.load(2))
    memory_store.delete(log.commit_path(4))  # not the first commit after the checkpoint
    with pytest.raises(PetrelError, match="00000000000000000004.json is missing"):
        log.load()
    assert log.load(3).version == 3  # what comes before the gap still reads


def test_compaction_output_fsyncs_its_folder_after_the_rename(tmp_path, monkeypatch):
    import storage.merge

    synced = []
    monkeypatch.setattr(storage.merge, "fsync_directory", lambda folder: synced.append(folder))
    store = ObjectStore(str(tmp_path / "wh"))
    meta = Catalog(store).create_table("acme", "logs")
    for i in range(3):
        append(store, meta, events(4, start=i * 4))
    compact_table(store, meta, full=True)
    (output,) = load_snapshot(store, meta).segments
    assert os.path.dirname(store.full(f"{meta.path}/{output.path}")) in synced


# -- issue 21, item 7 (storage side) ----------------------------------------------------------------


def test_the_rejected_table_is_reserved_and_keeps_rows_thirty_days(memory_store):
    catalog = Catalog(memory_store)
    with pytest.raises(InvalidName, match="reserved"):
        catalog.create_table("acme", REJECTED_TABLE)
    meta = catalog.create_table("acme", REJECTED_TABLE, time_column="received_at", reserved=True)
    assert meta.retention == catalog.table("acme", REJECTED_TABLE).retention == 30 * 86400
    # a _rejected table written before it had a retention gets the default when read
    old = TableMeta(namespace="other", name=REJECTED_TABLE, time_column="received_at")
    memory_store.put_if_absent(f"{old.path}/_table.json", __import__("json").dumps(old.to_json()).encode())
    assert catalog.table("other", REJECTED_TABLE).retention == 30 * 86400


def test_ingestion_creates_its_rejected_table_as_reserved(memory_store):
    from engine.ingest.rejected import ensure_rejected_table

    ensure_rejected_table(Catalog(memory_store), "acme")
    assert Catalog(memory_store).table("acme", REJECTED_TABLE).retention == 30 * 86400


# -- issue 21, item 1: statistics and retention over any stored time ----------------------------------


@pytest.mark.parametrize("values, type_, low, high", [
    ([0, 20000 * 365 * 86400 * 10**6], pa.timestamp("us", tz="UTC"), 0, 20000 * 365 * 86400 * 10**6),
    ([-8 * 10**10, 0], pa.timestamp("s"), -8 * 10**16, 0),
    ([10**13, 0], pa.timestamp("s"), 0, (1 << 63) - 1 - ((1 << 63) - 1) % 10**6),  # saturates, never wraps
], ids=["year-20000", "epoch-minus-8e10s", "naive-seconds-1e13"])
def test_segment_statistics_survive_times_python_cannot_hold(values, type_, low, high):
    table = pa.table({"timestamp": pa.array(values, type_), "n": [1, 2]})
    entry, data = encode_segment(table, partition=0, time_column="timestamp", sort_key=("timestamp",))
    assert (entry.min_time, entry.max_time) == (low, high)
    assert entry.columns["timestamp"].min is None and entry.columns["timestamp"].null_count == 0
    assert entry.columns["n"].min == 1
    assert type(entry).from_json(entry.to_json()).max_time == high


def test_retention_drops_and_explains_times_before_year_one(memory_store):
    from engine.ingest.expired import expired_rows

    meta = Catalog(memory_store).create_table("acme", "logs", retention="1d")
    ancient = pa.table({"timestamp": pa.array([-8 * 10**10, int(time.time())], pa.timestamp("s", tz="UTC"))})
    ((row, reason),) = expired_rows(ancient, meta)
    assert row == 0 and "-80000000000000000 microseconds from 1970" in reason
    entry = write_segment(memory_store, meta.path, ancient.slice(0, 1), partition=0, time_column="timestamp")
    log = PartitionLog(memory_store, meta.path, 0)
    log.commit(log.load(), epoch=None, added=[entry])
    assert apply_retention(memory_store, meta).segments == 1


# -- issue 21, item 4 ---------------------------------------------------------------------------------


def _backdated_upload(store, meta, seconds: float):
    """An upload written ``seconds`` ago (its file and its entry), not committed yet."""
    entry = write_segment(store, meta.path, events(5), partition=0, time_column="timestamp")
    then = time.time() - seconds
    os.utime(store.full(f"{meta.path}/{entry.path}"), (then, then))
    return dataclasses.replace(entry, created_at=then)


def test_a_commit_of_an_upload_vacuum_already_deleted_is_refused(tmp_path):
    store = ObjectStore(str(tmp_path / "wh"))
    meta = Catalog(store).create_table("acme", "logs")
    entry = _backdated_upload(store, meta, 700)
    assert vacuum_table(store, meta, older_than=600).orphans == 1
    log = PartitionLog(store, meta.path, 0)
    with pytest.raises(SegmentMissing, match="write the segment again"):
        log.commit(log.load(), epoch=None, added=[entry])
    assert log.load().segments == {}  # nothing committed: no snapshot refers to a missing file


def test_a_commit_re_uploads_a_stale_upload_so_vacuum_cannot_delete_it_after(tmp_path):
    store = ObjectStore(str(tmp_path / "wh"))
    meta = Catalog(store).create_table("acme", "logs")
    entry = _backdated_upload(store, meta, 700)
    log = PartitionLog(store, meta.path, 0)
    state = log.commit(log.load(), epoch=None, added=[entry])
    (committed,) = state.segments.values()
    assert committed.path != entry.path and committed.rows == 5
    assert vacuum_table(store, meta, older_than=600).orphans == 1  # the stale copy, never committed
    assert read_segment(store, meta.path, committed).num_rows == 5
    assert table_rows(store, meta).num_rows == 5


# -- issue 21, item 6: S3 conditional writes, on the loopback S3 --------------------------------------


class _FsWrapper:
    """An s3fs filesystem with one behaviour changed; everything else goes to the real one."""

    def __init__(self, fs, open_):
        self._fs, self._open = fs, open_

    def open(self, path, mode="rb", **kwargs):
        return self._open(self._fs, path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._fs, name)


def _conflict_409() -> OSError:
    """What s3fs raises when AWS answers a conditional PUT with 409 ConditionalRequestConflict."""
    error = botocore.exceptions.ClientError(
        {"Error": {"Code": "ConditionalRequestConflict",
                   "Message": "A conflicting conditional operation is currently in progress against this resource."},
         "ResponseMetadata": {"HTTPStatusCode": 409}}, "PutObject")
    return translate_boto_error(error)


@pytest.fixture
def s3_store(s3_options):
    return ObjectStore(f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}", s3_options)


@pytest.mark.s3
def test_a_409_conditional_conflict_is_retried_by_commits_retention_and_compaction(s3_store):
    meta = Catalog(s3_store).create_table("acme", "logs", retention="1d")
    for i in range(3):
        append(s3_store, meta, events(3, start=i * 3))
    races = {"left": 3}

    def open_(fs, path, mode, **kwargs):
        if mode == "xb" and "/_log/" in path and races["left"]:
            races["left"] -= 1
            raise _conflict_409()
        return fs.open(path, mode, **kwargs)

    s3_store._fs = _FsWrapper(s3_store.fs, open_)
    with pytest.raises(WriteRace):
        s3_store.put_if_absent(f"{meta.path}/_log/0/probe.json", b"{}")
    assert isinstance(WriteRace("x"), CommitConflict)  # every commit loop retries it
    report = compact_table(s3_store, meta, full=True)
    assert report.added == 1 and report.conflicts <= 1
    state = append(s3_store, meta, events(2, start=100))
    assert state.rows == 11 and races["left"] == 0
    assert apply_retention(s3_store, meta, now=time.time() + 400 * 86400).segments == 2


@pytest.mark.s3
def test_a_store_that_ignores_if_none_match_is_refused_at_the_first_commit(s3_store):
    s3_store.check_conditional_writes()  # moto honours it

    def ignore_condition(fs, path, mode, **kwargs):
        return fs.open(path, "wb" if mode == "xb" else mode, **kwargs)

    unsafe = ObjectStore(f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}", s3_store.storage_options)
    unsafe._fs = _FsWrapper(unsafe.fs, ignore_condition)
    with pytest.raises(UnsafeStore, match="ignored If-None-Match"):
        Catalog(unsafe).create_table("acme", "logs")
    assert not unsafe.fs.find(unsafe.full(""))  # the probe was removed, nothing else written
