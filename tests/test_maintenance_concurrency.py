"""Ingestion, compaction, vacuum and queries at the same time: every answer is the
answer over exactly the acknowledged batches of the snapshot it read."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pyarrow as pa

import engine
from tests.test_maintenance import wait_for
from storage.log import PartitionLog
from storage.segment import write_segment

PARTITIONS = 2
BATCHES = 120  # per partition
QUERY = ("SELECT part, count(*) AS n, sum(id) AS s, min(seq) AS lo, max(seq) AS hi, "
         "count(DISTINCT id) AS d FROM events GROUP BY part ORDER BY part")


def batch_size(seq: int) -> int:
    return 5 + seq % 7


def batch(seq: int, partition: int, start: dt.datetime) -> pa.Table:
    n = batch_size(seq)
    return pa.table({
        "timestamp": pa.array([start + dt.timedelta(milliseconds=seq * 10 + j) for j in range(n)],
                              pa.timestamp("us", tz="UTC")),
        "id": pa.array([seq * 1000 + j for j in range(n)], pa.int64()),
        "seq": pa.array([seq] * n, pa.int64()),
        "part": pa.array([partition] * n, pa.int64()),
    })


def expected(hi: int) -> tuple[int, int]:
    """(rows, sum of ids) of batches 0..hi of one partition."""
    rows = sum(batch_size(s) for s in range(hi + 1))
    ids = sum(s * 1000 + j for s in range(hi + 1) for j in range(batch_size(s)))
    return rows, ids


def test_ingestion_compaction_vacuum_and_queries_together(tmp_path, ray_session):
    root = str(tmp_path / "wh")
    options = {"interval": 0.2, "vacuum_interval": 0.5, "grace": 3.0}
    with engine.connect(root, maintenance=options) as db:
        schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("id", pa.int64()), ("seq", pa.int64()),
                            ("part", pa.int64())])
        meta = db.create_table("events", schema=schema, partitions=PARTITIONS)
        start = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        acked = [0] * PARTITIONS
        errors: list[BaseException] = []

        def owner(partition: int) -> None:  # what a partition's ingest owner does: claim, then append
            try:
                log = PartitionLog(db.store, meta.path, partition)
                state = log.claim()
                for seq in range(BATCHES):
                    entry = write_segment(db.store, meta.path, batch(seq, partition, start), partition=partition,
                                          time_column=meta.time_column, sort_key=meta.full_sort_key)
                    state = log.commit(state, epoch=state.epoch, added=[entry], batch_ids=[f"{partition}-{seq}"])
                    acked[partition] = seq + 1
                    time.sleep(0.05)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        # let the background loop and the query workers start before the race begins
        wait_for(lambda: db.maintenance.status().ticks, "the maintenance loop's first round", timeout=180)
        assert db.sql(QUERY).num_rows == 0
        writers = [threading.Thread(target=owner, args=(p,)) for p in range(PARTITIONS)]
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
            for partition in range(PARTITIONS):
                row = seen.get(partition)
                if row is None:
                    assert before[partition] == 0
                    continue
                assert row["lo"] == 0 and row["hi"] + 1 >= before[partition]  # nothing acknowledged is missing
                assert (row["n"], row["s"]) == expected(row["hi"])  # a prefix of the batches, none twice
                assert row["d"] == row["n"]
        for w in writers:
            w.join()
        assert not errors
        final = {row["part"]: row for row in db.sql(QUERY).to_pylist()}
        assert all(final[p]["hi"] == BATCHES - 1 for p in range(PARTITIONS))
        status = wait_for(lambda: (s := db.maintenance.status()).vacuum.segments and s,
                          "vacuum to delete merged-away segments", timeout=120)
        assert status.compaction.removed > BATCHES and not status.errors
        assert db.table_stats("events").segments <= 4 * PARTITIONS
        assert answers >= 5
