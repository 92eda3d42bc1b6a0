"""The partition owner as a plain class: buffer, flush, commit and fencing, step by step, without Ray or asyncio."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine.ingest.offsets import FileOffset, Position, SequenceRange
from engine.ingest.owner import Append, IngestConfig, PartitionOwner
from storage.errors import Fenced, FlushFailed, IngestError
from storage.snapshot import load_snapshot

BASE_US = 1_793_491_200_000_000  # 2026-11-01T00:00Z


def append(batch_id: str, start: int, n: int, *offsets) -> Append:
    times = pa.array([BASE_US + i * 1_000_000 for i in range(start, start + n)], pa.int64())
    table = pa.table({"timestamp": times.cast(pa.timestamp("us", tz="UTC")), "id": pa.array(range(start, start + n))})
    return Append(batch_id, table, tuple(offsets), size=table.nbytes)


def flush_all(owner: PartitionOwner) -> dict[str, int | Exception]:
    """Take, encode, commit and finish one flush; each append's outcome by batch id."""
    flush = owner.take_flush()
    owner.encode(flush)
    owner.commit(flush)
    return {a.batch_id: outcome for a, outcome in owner.finish(flush)}


def test_a_flush_commits_its_appends_together_and_a_committed_batch_is_known(faulty_table):
    store, meta = faulty_table
    owner = PartitionOwner(store, meta, 0, IngestConfig(max_age=10.0, eager_rows=100))
    owner.buffer(append("a", 0, 10), now=0.0)
    assert owner.due(0.0) == 10.0 and owner.due(12.0) == 0.0  # the oldest append's age decides
    owner.buffer(append("b", 10, 90), now=1.0)
    assert owner.due(1.0) == 0.0  # eager_rows reached
    assert owner.pending("a") is not None and not owner.committed("a")
    assert flush_all(owner) == {"a": 10, "b": 90}
    assert owner.committed("a") and owner.committed("b") and owner.pending("a") is None
    assert owner.held_bytes == 0 and owner.due(2.0) == float("inf")
    state = owner.log.load()
    assert state.rows == 100 and state.batch_ids["a"] == state.batch_ids["b"]  # one commit


def test_a_failed_flush_fails_what_was_buffered_behind_it_and_flushes_taken_before_the_failure(faulty_table):
    store, meta = faulty_table
    owner = PartitionOwner(store, meta, 0)
    owner.buffer(append("a", 0, 10))
    first = owner.take_flush()
    owner.buffer(append("b", 10, 10))
    second = owner.take_flush()  # taken while the first is still on its way
    owner.buffer(append("c", 20, 10))  # still buffered when the first fails
    for flush in (first, second):
        owner.encode(flush)
    store.arm("after_upload", "raise")
    owner.commit(first)
    failed = owner.finish(first)
    assert {a.batch_id for a, _ in failed} == {"a", "c"} and all(isinstance(o, FlushFailed) for _, o in failed)
    owner.commit(second)
    assert [(a.batch_id, type(o)) for a, o in owner.finish(second)] == [("b", FlushFailed)]
    assert load_snapshot(store, meta).rows == 0 and owner.held_bytes == 0
    owner.buffer(append("a", 0, 10))  # retried: taken after the failure, it lands
    assert flush_all(owner) == {"a": 10}


def test_a_commit_that_landed_but_was_reported_failed_is_acknowledged_on_retry_not_stored_again(faulty_table):
    store, meta = faulty_table
    owner = PartitionOwner(store, meta, 0)
    owner.buffer(append("a", 0, 10, Position("src", 7)))
    store.arm("after_commit", "raise")
    assert isinstance(flush_all(owner)["a"], FlushFailed)
    assert owner.stale
    owner.resync()
    assert owner.committed("a") and owner.committed("other", (Position("src", 7),))
    assert load_snapshot(store, meta).rows == 10


def test_a_fenced_owner_stops_and_does_not_take_the_partition_back(faulty_table):
    store, meta = faulty_table
    old = PartitionOwner(store, meta, 0)
    old.buffer(append("a", 0, 10))
    new = PartitionOwner(store, meta, 0)  # an explicit claim: a higher epoch
    outcome = flush_all(old)["a"]
    assert isinstance(outcome, Fenced)
    with pytest.raises(Fenced, match="has stopped"):
        old.buffer(append("b", 10, 10))
    assert old.status()["fenced"] and old.epoch < new.epoch
    assert old.log.load().epoch == new.epoch  # the old owner never claimed again
    new.buffer(append("a", 0, 10))
    assert flush_all(new) == {"a": 10}


def test_offsets_are_committed_with_the_rows_and_each_kind_says_what_it_covers(faulty_table):
    store, meta = faulty_table
    owner = PartitionOwner(store, meta, 0)
    stream = SequenceRange("nats:orders", first=1, last=50)
    chunk = FileOffset("file:///in/a.jsonl", version="10-1.5", chunk=0, last=False, layout={"rows": 5})
    owner.buffer(append("a", 0, 10, stream, chunk))
    assert flush_all(owner) == {"a": 10}
    recorded = owner.log.load().offsets
    assert recorded["nats:orders"] == {"kind": "sequence", "last": 50}
    assert owner.committed("replay", (SequenceRange("nats:orders", 40, 50),))
    assert not owner.committed("next", (SequenceRange("nats:orders", 51, 60),))
    assert owner.committed("again", (chunk,))
    assert not owner.committed("next", (FileOffset("file:///in/a.jsonl", version="10-1.5", chunk=1),))
    assert not owner.committed("rewritten", (FileOffset("file:///in/a.jsonl", version="99-2.0", chunk=0),))
    assert not owner.committed("none")  # no offsets: only the batch id decides


def test_a_flush_spanning_days_is_one_segment_in_its_first_day_and_retention_drops_it_only_whole(faulty_table):
    import dataclasses

    from storage.retention import apply_retention

    store, meta = faulty_table
    meta = dataclasses.replace(meta, retention=86_400.0)
    owner = PartitionOwner(store, meta, 0)
    day_us = 86_400_000_000
    times = pa.array([BASE_US + 2 * day_us, BASE_US, BASE_US + day_us + 5], pa.int64())  # three days, unsorted
    table = pa.table({"timestamp": times.cast(pa.timestamp("us", tz="UTC")), "id": [2, 0, 1]})
    owner.buffer(Append("days", table, size=table.nbytes))
    assert flush_all(owner) == {"days": 3}
    (segment,) = owner.log.load().segments.values()
    assert segment.path.startswith("data/2026-11-01/") and segment.rows == 3
    assert (segment.min_time, segment.max_time) == (BASE_US, BASE_US + 2 * day_us)
    newest = (BASE_US + 2 * day_us) / 1e6
    assert apply_retention(store, meta, now=newest + 86_400 - 1).segments == 0  # its newest event is still kept
    assert apply_retention(store, meta, now=newest + 86_400 + 1).segments == 1


def test_an_append_whose_rows_cannot_be_written_fails_alone_and_its_flush_neighbours_land(faulty_table):
    store, meta = faulty_table
    owner = PartitionOwner(store, meta, 0)
    good = append("good", 0, 3)
    bad = append("bad", 3, 2)
    bad.table = bad.table.append_column("span", pa.array([(1, 2, 3), None], pa.month_day_nano_interval()))
    owner.buffer(good)
    owner.buffer(bad)  # Parquet cannot store this column: encoded together, the flush would fail
    outcomes = flush_all(owner)
    assert outcomes["good"] == 3
    assert isinstance(outcomes["bad"], IngestError) and "batch bad cannot be written" in str(outcomes["bad"])
    state = owner.log.load()
    assert state.rows == 3 and state.has_batch("good") and not state.has_batch("bad")


def test_a_retry_older_than_the_ids_remembered_or_the_dedup_window_is_refused_never_stored_twice(faulty_table,
                                                                                                  monkeypatch):
    import time

    from engine.ingest import owner as owner_module
    from storage import log as log_module
    from storage.errors import DedupExpired

    monkeypatch.setattr(log_module, "MAX_RECENT_BATCH_IDS", 3)
    monkeypatch.setattr(owner_module, "MAX_RECENT_BATCH_IDS", 3)
    monkeypatch.setattr(owner_module, "CLOCK_SKEW_SECONDS", 0.0)
    store, meta = faulty_table
    owner = PartitionOwner(store, meta, 0, IngestConfig(dedup_window=3600.0))
    sent = time.time()
    for i, name in enumerate("abcde"):
        owner.buffer(append(name, i * 10, 10))
        assert flush_all(owner) == {name: 10}
        time.sleep(0.01)
    assert not owner.committed("a")  # forgotten: only the last 3 ids are kept
    with pytest.raises(DedupExpired, match="batch a was first sent before the oldest"):
        owner.check_retry("a", first_sent=sent)
    owner.check_retry("f", first_sent=None)  # a first attempt: nothing to check
    owner.check_retry("f", first_sent=time.time())  # a retry after the horizon: its commit would be remembered
    with pytest.raises(DedupExpired, match="more than the dedup window of 3,600 s"):
        owner.check_retry("f", first_sent=time.time() - 7200)
