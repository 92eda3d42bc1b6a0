"""Ingestion, compaction, vacuum and queries at the same time: every answer is the
answer over exactly the acknowledged batches of the snapshot it read.

Each writer sends its batches one after the other (the next once the last is
acknowledged) under its own routing key, so a stream's batches land in one
partition in order: the rows of a stream in any snapshot must be exactly its
batches 0..k, none missing, none twice, with every batch acknowledged before
the query started among them."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pyarrow as pa
import pytest

import engine
from tests.engine.maintenance.loop_fixtures import wait_for

PARTITIONS = 2
BATCHES = 30  # per stream
STREAMS = 2
QUERY = ("SELECT part, count(*) AS n, sum(id) AS s, min(seq) AS lo, max(seq) AS hi, "
         "count(DISTINCT id) AS d FROM events GROUP BY part ORDER BY part")


def batch_size(seq: int) -> int:
    return 5 + seq % 7


def batch(seq: int, stream: int, start: dt.datetime) -> pa.Table:
    n = batch_size(seq)
    return pa.table({
        "timestamp": pa.array([start + dt.timedelta(milliseconds=seq * 10 + j) for j in range(n)],
                              pa.timestamp("us", tz="UTC")),
        "id": pa.array([seq * 1000 + j for j in range(n)], pa.int64()),
        "seq": pa.array([seq] * n, pa.int64()),
        "part": pa.array([stream] * n, pa.int64()),
    })


def expected(hi: int) -> tuple[int, int]:
    """(rows, sum of ids) of batches 0..hi of one stream."""
    rows = sum(batch_size(s) for s in range(hi + 1))
    ids = sum(s * 1000 + j for s in range(hi + 1) for j in range(batch_size(s)))
    return rows, ids


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_ingestion_compaction_vacuum_and_queries_together(backend, tmp_path, request, ray_session):
    if backend == "s3":
        root, storage = "s3://petrel-test/concurrency", request.getfixturevalue("s3_options")
    else:
        root, storage = str(tmp_path / "wh"), {}
    options = {"interval": 0.2, "vacuum_interval": 0.5, "grace": 3.0}
    with engine.connect(root, storage_options=storage, maintenance=options) as db:
        schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("id", pa.int64()), ("seq", pa.int64()),
                            ("part", pa.int64())])
        db.create_table("events", schema=schema, partitions=PARTITIONS, routing_key="part")
        start = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        acked = [0] * STREAMS
        errors: list[BaseException] = []

        def writer(stream: int) -> None:
            try:
                with engine.connect(root, storage_options=storage, maintenance=False) as client:
                    for seq in range(BATCHES):
                        receipt = client.ingest("events", batch(seq, stream, start), batch_id=f"{stream}-{seq}")
                        assert receipt.accepted == batch_size(seq) and not receipt.rejected
                        acked[stream] = seq + 1
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        # let the background loop and the query workers start before the race begins
        wait_for(lambda: db.maintenance.status().ticks, "the maintenance loop's first round", timeout=180)
        assert db.sql(QUERY).num_rows == 0
        writers = [threading.Thread(target=writer, args=(i,)) for i in range(STREAMS)]
        for w in writers:
            w.start()
        answers = 0
        deadline = time.monotonic() + 180

        def busy() -> bool:  # keep querying while ingesting, and until compaction has caught up
            if any(w.is_alive() for w in writers) or answers < 5:
                return True
            return db.table_stats("events").segments > 4 * PARTITIONS and time.monotonic() < deadline

        while busy():
            before = list(acked)
            result = db.sql(QUERY).to_pylist()  # never fails: no file under a snapshot is vacuumed
            answers += 1
            seen = {row["part"]: row for row in result}
            for stream in range(STREAMS):
                row = seen.get(stream)
                if row is None:
                    assert before[stream] == 0
                    continue
                assert row["lo"] == 0 and row["hi"] + 1 >= before[stream]  # nothing acknowledged is missing
                assert (row["n"], row["s"]) == expected(row["hi"])  # a prefix of the batches, none twice
                assert row["d"] == row["n"]
        for w in writers:
            w.join()
        assert not errors
        final = {row["part"]: row for row in db.sql(QUERY).to_pylist()}
        assert all(final[i]["hi"] == BATCHES - 1 for i in range(STREAMS))
        status = wait_for(lambda: (s := db.maintenance.status()).vacuum.segments and s,
                          "vacuum to delete merged-away segments", timeout=120)
        assert status.compaction.removed > BATCHES and not status.errors, status
        assert db.table_stats("events").segments <= 4 * PARTITIONS
        assert answers >= 5
