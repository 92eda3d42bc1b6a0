"""A failing S3 (500s, timeouts, lost replies) is retried, never taken for an absent file or a free commit version."""

from __future__ import annotations

import errno
import json

import botocore.exceptions

import pytest

from benchmarks.chaos_faults import ChaosStore, plan_of
from storage.catalog import Catalog
from storage.errors import CommitConflict, StoreUnavailable, TableExists
from storage.log import PartitionLog
from storage.segment import read_segment
from storage.snapshot import LiveSnapshot, load_snapshot
from storage.transient import is_transient, retrying
from tests.storage_fixtures import append, events

pytestmark = pytest.mark.s3


@pytest.fixture
def faulty(s3_options, tmp_path):
    """(store through the fault-injecting s3fs, its fault plan, a table on it with two committed segments)."""
    folder = str(tmp_path / "faults")
    plan = plan_of(folder)
    plan.set(0.0)
    store = ChaosStore("s3://petrel-test/wh", s3_options, folder)
    meta = Catalog(store).create_table("acme", "logs")
    append(store, meta, events(5))
    append(store, meta, events(5, start=5), batch_ids=["b1"])
    yield store, plan, meta
    plan.set(0.0)


def test_answers_of_the_store_are_not_transient_and_failures_are():
    assert not is_transient(FileNotFoundError("gone"))
    assert not is_transient(PermissionError("403"))
    assert not is_transient(CommitConflict("412"))
    assert not is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_transient(StoreUnavailable("retried already"))
    assert not is_transient(OSError(errno.EINVAL, "InvalidArgument: a refused request"))
    assert not is_transient(botocore.exceptions.NoCredentialsError())
    assert is_transient(OSError(errno.EBUSY, "SlowDown"))
    assert is_transient(botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(OSError(errno.EREMOTEIO, "InternalError"))
    assert is_transient(TimeoutError("read timed out"))
    assert is_transient(ConnectionResetError("reset by peer"))


def test_retrying_gives_up_with_a_clear_error_after_its_attempts(tmp_path):
    calls = []

    def failing() -> None:
        calls.append(1)
        raise OSError(errno.EREMOTEIO, "injected InternalError")

    with pytest.raises(StoreUnavailable, match="failed 3 times in a row while reading x.*InternalError"):
        retrying(failing, "reading x", attempts=3)
    assert len(calls) == 3
    with pytest.raises(FileNotFoundError):  # an answer goes through at once
        retrying(lambda: (calls.append(1), open(tmp_path / "missing"))[1], "opening")
    assert len(calls) == 4


@pytest.mark.parametrize("fault", ["internal_500", "timeout_before", "slowdown_503"])
def test_a_failing_head_or_get_never_makes_an_existing_file_look_absent(faulty, fault):
    store, plan, meta = faulty
    log = PartitionLog(store, meta.path, 0)
    segment = next(iter(log.load().segments.values()))
    plan.set(1.0, {fault: 1.0}, methods=("head_object", "get_object", "list_objects_v2"), first_attempts=2)
    assert store.exists(log.commit_path(1))
    assert json.loads(store.get(log.commit_path(1)))["batch_ids"] == ["b1"]
    assert log.load().version == 1 and log.load_after(log.load(0)).version == 1
    assert read_segment(store, meta.path, segment).num_rows == 5
    assert load_snapshot(store, meta).rows == 10
    # a file that is really absent is still absent
    assert not store.exists(log.commit_path(2))
    with pytest.raises(FileNotFoundError):
        store.get(log.commit_path(2))


def test_a_segment_whose_head_fails_is_read_not_reported_missing(faulty):
    store, plan, meta = faulty
    segments = load_snapshot(store, meta).segments
    plan.set(1.0, {"internal_500": 1.0}, methods=("head_object",), first_attempts=1)
    # before: an OSError, or FileNotFoundError where pyarrow opened a file after asking isfile(), which
    # answers False on any error
    assert sum(read_segment(store, meta.path, s).num_rows for s in segments) == 10


def test_a_store_that_keeps_failing_is_reported_unavailable_never_read_as_no_newer_commit(faulty):
    store, plan, meta = faulty
    live = LiveSnapshot(store, meta)
    writer = PartitionLog(ChaosStore(store.url, store.storage_options, store.faults + "-none"), meta.path, 0)
    writer.commit(writer.load(), epoch=None, batch_ids=["b2"])
    plan.set(1.0, {"internal_500": 1.0}, methods=("get_object",))
    with pytest.raises(StoreUnavailable, match="reading .*00000000000000000002.json"):
        live.refresh()  # a failed read of version 2 is an error, never "no newer commit"
    plan.set(0.0)
    assert live.refresh().versions == {0: 2}


def test_a_commit_whose_reply_is_lost_is_retried_into_a_conflict_and_found_not_written_twice(faulty):
    store, plan, meta = faulty
    log = PartitionLog(store, meta.path, 0)
    state = log.load()
    plan.set(1.0, {"lost_reply": 1.0}, methods=("put_object",), first_attempts=1)
    committed = log.commit(state, epoch=None, batch_ids=["b2"])
    plan.set(0.0)
    assert committed.version == 2 and committed.has_batch("b2")
    versions, _ = log.versions()
    assert versions == [0, 1, 2]
    assert sum("b2" in log.record(v).get("batch_ids", ()) for v in versions) == 1


def test_a_table_created_through_a_lost_reply_is_created_not_reported_as_existing(faulty):
    store, plan, _ = faulty
    catalog = Catalog(store)
    plan.set(1.0, {"lost_reply": 1.0}, methods=("put_object",), first_attempts=1)
    meta = catalog.create_table("acme", "traces", partitions=2)  # the retry finds the record it wrote itself
    plan.set(0.0)
    assert catalog.table("acme", "traces").partitions == meta.partitions == 2
    with pytest.raises(TableExists):  # another call's create of the name is still refused
        catalog.create_table("acme", "traces")


def test_a_writer_that_missed_a_commit_cannot_write_its_version_again(faulty):
    store, plan, meta = faulty
    log = PartitionLog(store, meta.path, 0)
    stale = log.load(0)  # as if reading version 1 had failed and been taken for absent
    plan.set(0.3, {"internal_500": 1.0, "timeout_before": 1.0, "lost_reply": 1.0}, first_attempts=2)
    with pytest.raises(CommitConflict, match="b1"):
        log.commit(stale, epoch=None, batch_ids=["b1"])  # the conditional put refuses version 1
    fresh = log.commit(stale, epoch=None, batch_ids=["b3"])  # rebased over version 1, not over it
    plan.set(0.0)
    assert fresh.version == 2 and [log.record(v)["batch_ids"] for v in (1, 2)] == [["b1"], ["b3"]]
