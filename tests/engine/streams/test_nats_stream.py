"""NATS JetStream into tables exactly once: a real nats-server, consumers SIGKILLed, the broker restarted."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import time

import nats
import pytest

from engine.ingest.actor import IngestConfig
from engine.ingest.client import IngestOptions
from engine.ingest.deliver import Slice
from engine.ingest.offsets import StreamBatch
from engine.streams.consumer import StreamOptions
from storage.errors import IngestError
from storage.log import PartitionLog

BASE = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
OPTIONS = StreamOptions(max_messages=500, max_wait=0.05, lag_interval=0.2,
                        ingest=IngestOptions(actor=IngestConfig(max_age=0.05)))


@pytest.fixture
def sdb(tmp_path, ray_session):
    import engine

    session = engine.connect(str(tmp_path / "warehouse"), maintenance=False)
    session.ingestion.options = OPTIONS.ingest
    yield session
    session.close()


def messages(start: int, count: int) -> tuple[list[tuple[str, bytes, str]], list[int], list[int]]:
    """(subject, payload, msg id) for messages start..start+count-1; good event ids; malformed message numbers.

    Every 40th message is malformed, every 25th carries three events as JSON lines.
    """
    out, good, bad = [], [], []
    for i in range(start, start + count):
        subject = f"events.svc{i % 3}"
        if i % 40 == 39:
            out.append((subject, f'{{"id": {i}, broken'.encode(), f"m{i}"))
            bad.append(i)
            continue
        ids = [1_000_000 + 3 * i + k for k in range(3)] if i % 25 == 0 else [i]
        lines = [json.dumps({"timestamp": (BASE + dt.timedelta(seconds=i)).isoformat(), "id": n,
                             "level": ["INFO", "ERROR"][n % 2], "message": f"op status={200 + n % 5}"})
                 for n in ids]
        out.append((subject, "\n".join(lines).encode(), f"m{i}"))
        good.extend(ids)
    return out, good, bad


async def _publish(url: str, items, duplicate_every: int = 7) -> int:
    """Publish with retries; every ``duplicate_every``-th message is sent twice with its Nats-Msg-Id."""
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    last = 0
    for index, (subject, payload, msg_id) in enumerate(items):
        for _ in range(2 if index % duplicate_every == 0 else 1):
            for attempt in range(100):
                try:
                    ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=2)
                    last = max(last, ack.seq)
                    break
                except Exception:  # noqa: BLE001 - a publisher retries until the broker takes it
                    await asyncio.sleep(0.1)
    await nc.close()
    return last


async def _create_stream(url: str, name: str = "EVENTS", subjects: str = "events.>") -> None:
    nc = await nats.connect(url)
    await nc.jetstream().add_stream(name=name, subjects=[subjects], duplicate_window=300)
    await nc.close()


def publish(url: str, items) -> int:
    return asyncio.run(_publish(url, items))


def kill_consumers(handle, lanes: list[int]) -> None:
    """SIGKILL the consumer processes of ``lanes`` (waiting for one restarting from an earlier kill)."""
    deadline = time.monotonic() + 60
    while True:
        statuses = {s["lane"]: s for s in handle.status()}
        if all("pid" in statuses[lane] for lane in lanes) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for lane in lanes:
        os.kill(statuses[lane]["pid"], signal.SIGKILL)


def check_exactly_once(db, table: str, good: list[int], bad: list[int]) -> None:
    row = db.sql(f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM {table}").to_pylist()[0]
    assert row == {"n": len(good), "d": len(good)}
    ids = db.sql(f"SELECT id FROM {table} ORDER BY id").column("id").to_pylist()
    assert ids == sorted(good)
    rejected = db.sql(f"SELECT row, reason FROM _rejected WHERE \"table\" = '{table}' ORDER BY row").to_pylist()
    assert len(rejected) == len(bad)
    assert all("subject events.svc" in r["reason"] and f"sequence {r['row']}" in r["reason"] for r in rejected)


def test_stream_lands_once_lag_status_and_resume_after_stop(sdb, nats_server):
    asyncio.run(_create_stream(nats_server.url))
    sdb.create_table("events")
    first, good, bad = messages(0, 120)
    last = publish(nats_server.url, first)
    handle = sdb.ingest_stream("events", nats_server.url, subject="events.>", stream="EVENTS",
                               durable="petrel-events", options=OPTIONS)
    with pytest.raises(IngestError, match="already being ingested"):
        sdb.ingest_stream("events", nats_server.url, subject="events.>", stream="EVENTS", durable="petrel-events")
    lag = handle.wait_caught_up(timeout=60, through=last)
    assert lag.messages == 0
    status = handle.status()[0]
    assert status["stored_through"] == last and status["rejected"] == len(bad) and status["errors"] == 0
    handle.stop()
    second, good2, bad2 = messages(120, 60)
    last = publish(nats_server.url, second)
    handle = sdb.ingest_stream("events", nats_server.url, subject="events.>", stream="EVENTS",
                               durable="petrel-events", options=OPTIONS)
    handle.wait_caught_up(timeout=60, through=last)
    handle.stop()
    check_exactly_once(sdb, "events", good + good2, bad + bad2)


@pytest.mark.chaos
@pytest.mark.parametrize("lanes", [1, 2], ids=["one-fetcher", "two-lanes"])
def test_sigkilled_consumers_and_a_broker_restart_lose_and_double_nothing(sdb, nats_server, lanes):
    asyncio.run(_create_stream(nats_server.url))
    sdb.create_table("events", partitions=2)
    handle = sdb.ingest_stream("events", nats_server.url, subject="events.>", stream="EVENTS",
                               durable="petrel-events", options=OPTIONS, lanes=lanes)
    good, bad = [], []
    last = 0
    for phase in range(4):
        items, g, b = messages(phase * 500, 500)
        good += g
        bad += b
        last = max(last, publish(nats_server.url, items))
        if phase == 0:
            kill_consumers(handle, [0])
        elif phase == 1:
            nats_server.restart()
        elif phase == 2:
            kill_consumers(handle, sorted({0, 1 % lanes}))
        time.sleep(0.3)
    kill_consumers(handle, [1 % lanes])
    handle.wait_caught_up(timeout=90, through=last)
    assert sum(s["stored_through"] > 0 for s in handle.status()) == lanes
    handle.stop()
    check_exactly_once(sdb, "events", good, bad)
    for partition in range(2):  # every partition took its share from each lane, with the lane's sequence
        log = PartitionLog(sdb.store, sdb.table("events").path, partition).load()
        assert log.segments
        assert {key.rsplit("#", 1)[1] for key in log.offsets if key.startswith("nats:")} >= \
            {f"{lane}/{lanes}" for lane in range(lanes) if lanes == 1 or lane == partition}


def test_one_fetcher_feeds_every_partition_and_the_broker_sends_each_message_once(sdb, nats_server):
    asyncio.run(_create_stream(nats_server.url))
    sdb.create_table("events", partitions=2)
    items, good, bad = messages(0, 1100)  # sequences past ROUTE_RUN: both partitions get rows
    last = publish(nats_server.url, items)
    options = StreamOptions(max_messages=300, max_wait=0.05, lag_interval=0.2, ingest=OPTIONS.ingest)
    handle = sdb.ingest_stream("events", nats_server.url, subject="events.>", stream="EVENTS",
                               durable="petrel-events", options=options)
    handle.wait_caught_up(timeout=60, through=last)
    [status] = handle.status()
    consumers = asyncio.run(_consumers(nats_server.url))
    handle.stop()
    assert status["stored_through"] == last and status["messages"] == last and status["batches"] >= 4
    # one durable consumer, delivered every message once, and every one acknowledged after its commit
    assert [(c.name, c.delivered.stream_seq, c.num_ack_pending, c.num_redelivered) for c in consumers] == \
        [("petrel-events", last, 0, 0)]
    check_exactly_once(sdb, "events", good, bad)
    key = "nats:EVENTS:petrel-events#0/1"
    for partition in range(2):
        log = PartitionLog(sdb.store, sdb.table("events").path, partition).load()
        assert log.segments and log.offsets[key]["last"] == last


def test_a_batch_stored_in_one_partition_and_not_the_other_is_completed_once(sdb, nats_server):
    """A consumer died between its batch's commits: its successor ends its first batch where that one did."""
    asyncio.run(_create_stream(nats_server.url))
    sdb.create_table("events", partitions=2)
    first, good, _ = messages(0, 30)
    last = publish(nats_server.url, first)
    key = "nats:EVENTS:petrel-events#0/1"
    client = sdb.ingestion.client("events")
    result = client.fit(b"\n".join(payload for _, payload, _ in first), time.time_ns() // 1000)
    # sequences 1..30 are all routed to partition 0, which committed the batch; partition 1 never did
    sdb.ingestion.deliver([Slice(client, 0, f"{key}@1", result.table, (StreamBatch(key, 1, last),))])
    second, good2, _ = messages(30, 30)
    last = publish(nats_server.url, second)  # the successor finds both batches' messages waiting
    handle = sdb.ingest_stream("events", nats_server.url, subject="events.>", stream="EVENTS",
                               durable="petrel-events", options=OPTIONS)
    handle.wait_caught_up(timeout=60, through=last)
    handle.stop()
    row = sdb.sql("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events").to_pylist()[0]
    assert row == {"n": len(good + good2), "d": len(good + good2)}
    for partition in range(2):
        assert PartitionLog(sdb.store, sdb.table("events").path, partition).load().offsets[key]["last"] == last


def test_a_stream_stored_in_two_lanes_resumes_in_two_lanes(sdb, nats_server):
    asyncio.run(_create_stream(nats_server.url))
    sdb.create_table("events", partitions=2)
    first, good, bad = messages(0, 40)
    last = publish(nats_server.url, first)
    start = dict(subject="events.>", stream="EVENTS", durable="petrel-events", options=OPTIONS)
    handle = sdb.ingest_stream("events", nats_server.url, lanes=2, **start)
    handle.wait_caught_up(timeout=60, through=last)
    handle.stop()
    with pytest.raises(IngestError, match="lanes=2"):  # its watermarks are the two lanes': one would start over
        sdb.ingest_stream("events", nats_server.url, lanes=1, **start)
    second, good2, bad2 = messages(40, 40)
    last = publish(nats_server.url, second)
    handle = sdb.ingest_stream("events", nats_server.url, **start)
    assert len(handle.actors) == 2
    handle.wait_caught_up(timeout=60, through=last)
    handle.stop()
    check_exactly_once(sdb, "events", good + good2, bad + bad2)


async def _consumers(url: str, stream: str = "EVENTS") -> list:
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().consumers_info(stream)
    finally:
        await nc.close()


def test_one_stream_feeds_two_tables_through_their_transforms(sdb, nats_server):
    asyncio.run(_create_stream(nats_server.url))
    sdb.create_table("errors", transform="SELECT id, timestamp, "
                     "CAST(regexp_extract(message, 'status=(\\d+)', 1) AS INT) AS status FROM input "
                     "WHERE level = 'ERROR'")
    sdb.create_table("infos", partitions=2, routing_key="service",
                     transform="SELECT *, 'svc' || CAST(id % 4 AS VARCHAR) AS service FROM input "
                               "WHERE level = 'INFO'")
    items, good, bad = messages(0, 200)
    last = publish(nats_server.url, items)
    handles = [sdb.ingest_stream(t, nats_server.url, subject="events.>", stream="EVENTS", durable=f"petrel-{t}",
                                 lanes=1, options=OPTIONS) for t in ("errors", "infos")]
    for handle in handles:
        handle.wait_caught_up(timeout=60, through=last)
    for handle in handles:
        handle.stop()
    errors = sdb.sql("SELECT id, status FROM errors ORDER BY id").to_pylist()
    assert [r["id"] for r in errors] == sorted(i for i in good if i % 2 == 1)
    assert all(r["status"] == 200 + r["id"] % 5 for r in errors)
    infos = sdb.sql("SELECT count(*) AS n, count(DISTINCT id) AS d FROM infos").to_pylist()[0]
    expected = len([i for i in good if i % 2 == 0])
    assert infos == {"n": expected, "d": expected}
    assert sdb.sql("SELECT count(*) AS n FROM _rejected WHERE \"table\" = 'errors'").to_pylist()[0]["n"] == len(bad)


def test_cli_ingest_stream_creates_table_and_stream_and_drains(tmp_path, ray_session, nats_server, capsys):
    from engine.cli import main

    warehouse = str(tmp_path / "cli-warehouse")
    args = ["--warehouse", warehouse, "ingest-stream", "clicks", nats_server.url, "--subject", "events.>",
            "--stream", "CLICKS", "--durable", "petrel-clicks", "--create-stream", "--status-every", "0.3",
            "--seconds", "60", "--transform", "SELECT *, upper(level) AS level FROM input"]
    asyncio.run(_create_stream(nats_server.url, "CLICKS"))
    items, good, bad = messages(0, 50)
    publish(nats_server.url, items)
    assert main(args + ["--drain"]) == 0
    output = capsys.readouterr().out
    assert f"stopped: {len(good):,} events stored, {len(bad):,} rejected" in output
    import engine

    with engine.connect(warehouse, maintenance=False) as db:
        assert db.table("clicks").transform is not None
        levels = db.sql("SELECT DISTINCT level FROM clicks ORDER BY level").column("level").to_pylist()
        assert levels == ["ERROR", "INFO"]
