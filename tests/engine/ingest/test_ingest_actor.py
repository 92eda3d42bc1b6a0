"""The ingest actor (the owner driven by asyncio), run in-process (no Ray) on memory:// with injected faults."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from engine.ingest import owner as owner_module
from engine.ingest.actor import IngestActor
from engine.ingest.offsets import Position
from engine.ingest.owner import IngestConfig, default_encoders
from engine.ingest.transfer import pack
from storage.errors import FlushFailed, IngestTimeout
from storage.snapshot import load_snapshot

BASE_US = 1_793_491_200_000_000  # 2026-11-01T00:00Z


def batch(start: int, n: int) -> bytes:
    return pack(
        pa.table(
            {
                "timestamp": pa.array([BASE_US + i * 1_000_000 for i in range(start, start + n)], pa.int64()).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "id": pa.array(range(start, start + n), pa.int64()),
            }
        )
    )


@pytest.fixture
def table(faulty_table):
    return faulty_table


async def until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.mark.parametrize(("cores", "partitions", "encoders"), [(2, 1, 2), (2, 2, 1), (2, 8, 1), (1, 1, 1), (16, 4, 2)])
def test_owners_share_the_machines_cores_for_encoding_one_or_two_each(monkeypatch, cores, partitions, encoders):
    monkeypatch.setattr(owner_module.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert default_encoders(partitions) == encoders


def test_an_owner_encodes_with_the_configured_encoders_or_its_share_of_the_cores(table):
    store, meta = table
    assert IngestActor(store, meta, 0).status()["encoders"] == default_encoders(meta.partitions)
    assert IngestActor(store, meta, 0, IngestConfig(encoders=3)).status()["encoders"] == 3
    with pytest.raises(ValueError, match="encoders=0"):
        IngestConfig(encoders=0)


def test_a_failed_flush_fails_the_flush_encoded_behind_it_and_retries_land_once(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01))
        store.arm("before_upload", "pause")
        store.arm("after_upload", "raise")
        first = asyncio.ensure_future(actor.append("a", batch(0, 10), urgent=True))
        await until(store.paused)  # flush 1 is storing; flush 2 encodes behind it
        second = asyncio.ensure_future(actor.append("b", batch(10, 10), urgent=True))
        await until(lambda: not actor.owner.buffered_rows)
        store.release()
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        assert all(isinstance(o, FlushFailed) for o in outcomes), outcomes
        assert load_snapshot(store, meta).rows == 0  # nothing of either flush is visible

        assert await actor.append("a", batch(0, 10), urgent=True) == 10
        assert await actor.append("b", batch(10, 10), urgent=True) == 10
        assert await actor.append("a", batch(0, 10), urgent=True) == 0  # already committed
        snapshot = load_snapshot(store, meta)
        assert snapshot.rows == 20

    asyncio.run(scenario())


def test_a_failure_fails_every_flush_taken_before_it_and_none_taken_after(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01, encoders=2))
        store.arm("before_upload", "pause")
        store.arm("after_upload", "raise")
        first = asyncio.ensure_future(actor.append("a", batch(0, 10), urgent=True))
        await until(store.paused)
        behind = []
        for name, start in (("b", 10), ("c", 20)):  # two more flushes, encoded while the first stores
            behind.append(asyncio.ensure_future(actor.append(name, batch(start, 10), urgent=True)))
            await until(lambda: not actor.owner.buffered_rows)
        store.release()
        outcomes = await asyncio.gather(first, *behind, return_exceptions=True)
        assert all(isinstance(o, FlushFailed) for o in outcomes), outcomes
        assert await actor.append("d", batch(30, 10), urgent=True) == 10  # taken after the failure: lands
        retried = await asyncio.gather(actor.append("a", batch(0, 10)), actor.append("b", batch(10, 10)))
        assert retried == [10, 10]
        assert load_snapshot(store, meta).rows == 30

    asyncio.run(scenario())


def test_append_many_answers_each_append_with_its_own_outcome(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01, max_buffer_bytes=1, buffer_timeout=0.2))
        assert await actor.append("old", batch(0, 5), urgent=True) == 5
        store.arm("before_upload", "pause")
        held = asyncio.ensure_future(actor.append("held", batch(5, 5), urgent=True))
        await until(store.paused)  # holds the buffer: the next new append cannot get space
        outcomes = await actor.append_many([("old", batch(0, 5), None, True), ("new", batch(10, 5), None, True)])
        assert outcomes[0] == 0  # committed before
        assert isinstance(outcomes[1], IngestTimeout) and "buffered" in str(outcomes[1])
        store.release()
        assert await held == 5

    asyncio.run(scenario())


def test_flushes_commit_in_order_while_the_next_one_encodes(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01, eager_rows=1))
        written = await asyncio.gather(*(actor.append(f"b{i}", batch(i * 5, 5)) for i in range(40)))
        assert written == [5] * 40
        state = actor.owner.log.load()
        assert state.rows == 200
        versions = [state.batch_ids[f"b{i}"] for i in range(40)]
        assert versions == sorted(versions)  # batches commit in the order they were buffered

    asyncio.run(scenario())


def test_a_commit_that_landed_but_was_reported_failed_is_not_stored_again_on_retry(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01))
        store.arm("after_commit", "raise")  # the commit is in the log, the caller hears it failed
        with pytest.raises(FlushFailed):
            await actor.append("a", batch(0, 10), offsets=(Position("src", 1),), urgent=True)
        assert load_snapshot(store, meta).rows == 10
        assert await actor.append("a", batch(0, 10), offsets=(Position("src", 1),), urgent=True) == 0
        assert await actor.append("a2", batch(0, 10), offsets=(Position("src", 1),), urgent=True) == 0  # same offset
        assert await actor.append("b", batch(10, 10), urgent=True) == 10
        assert load_snapshot(store, meta).rows == 20

    asyncio.run(scenario())


def test_a_finished_failed_flush_does_not_fail_appends_that_came_after_it(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01))
        store.arm("after_upload", "raise")
        with pytest.raises(FlushFailed):
            await actor.append("a", batch(0, 10), urgent=True)
        assert await actor.append("b", batch(10, 10), urgent=True) == 10
        assert await actor.append("a", batch(0, 10), urgent=True) == 10
        assert load_snapshot(store, meta).rows == 20

    asyncio.run(scenario())


def test_one_batch_id_sent_twice_while_the_buffer_is_full_is_stored_once(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01, max_buffer_bytes=200, buffer_timeout=60))
        store.arm("before_upload", "pause")
        first = asyncio.ensure_future(actor.append("x", batch(0, 10), urgent=True))
        await until(store.paused)  # x holds the buffer: the next appends wait for space
        twins = [asyncio.ensure_future(actor.append("y", batch(10, 10))) for _ in range(2)]
        for _ in range(10):
            await asyncio.sleep(0)
        assert not actor.owner.buffered_rows  # both are waiting
        store.release()
        written = await asyncio.gather(first, *twins)
        assert written[0] == 10 and sorted(written[1:]) in ([0, 10], [10, 10])
        assert load_snapshot(store, meta).rows == 20

    asyncio.run(scenario())


def test_buffer_space_is_counted_in_payload_bytes_and_taken_before_unpacking(table):
    store, meta = table

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=60, max_buffer_bytes=5000, buffer_timeout=0.2))
        payload = batch(0, 10)
        held = asyncio.ensure_future(actor.append("a", payload))
        await until(lambda: actor.owner.buffered_rows)
        assert actor.status()["held_bytes"] == len(payload)
        with pytest.raises(IngestTimeout, match="buffered"):  # never unpacked: it would not parse
            await actor.append("b", b"\0" * 5000)
        assert await actor.append("c", batch(10, 1), urgent=True) == 1  # fits: flushes a with it
        assert await held == 10

    asyncio.run(scenario())


def test_repeating_columns_are_dictionary_encoded_and_unique_ones_are_not_in_every_flush(table, monkeypatch):
    import pyarrow.parquet as pq

    from engine.ingest import encode as encode_module

    store, meta = table
    monkeypatch.setattr(encode_module, "DICTIONARY_FLUSHES", 2)  # chosen again within the test

    def rows(start: int, n: int) -> bytes:
        times = pa.array([BASE_US + i * 1_000_000 for i in range(start, start + n)], pa.int64())
        return pack(pa.table({"timestamp": times.cast(pa.timestamp("us", tz="UTC")),
                              "id": pa.array(range(start, start + n), pa.int64()),
                              "level": pa.array(["info", "warn", "error"] * (n // 3))}))

    async def scenario() -> None:
        actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01))
        for i in range(5):
            assert await actor.append(f"b{i}", rows(i * 300, 300), urgent=True) == 300

    asyncio.run(scenario())
    segments = load_snapshot(store, meta).segments
    assert len(segments) == 5
    for entry in segments:
        metadata = pq.ParquetFile(pa.BufferReader(store.get(f"{meta.path}/{entry.path}"))).metadata
        encodings = {metadata.schema.column(i).name: metadata.row_group(0).column(i).encodings
                     for i in range(metadata.num_columns)}
        assert any("DICTIONARY" in e for e in encodings["level"]), encodings
        assert not any("DICTIONARY" in e for e in encodings["id"]), encodings
