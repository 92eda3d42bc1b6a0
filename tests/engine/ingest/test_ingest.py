"""Ingestion through the session: inputs, retries, rejections, schema evolution, files.

Every test runs on local disk and on the loopback S3.
"""

from __future__ import annotations

import collections
import json
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from engine.ingest.actor import IngestActor
from engine.ingest.owner import IngestConfig
from engine.ingest.transfer import pack
from engine.ingest.router import stable_hash
from storage.errors import IngestTimeout, RejectedRows, TableNotFound
from storage.snapshot import load_snapshot
from tests.engine.ingest.ingest_fixtures import event_rows, stored

pytestmark = pytest.mark.usefixtures("ray_session")


def test_every_input_kind_lands_once_and_retries_are_not_stored_again(db):
    db.create_table("logs", partitions=2)
    rows = event_rows(0, 40)
    jsonl = "\n".join(json.dumps(r) for r in event_rows(40, 40)).encode()
    arrow = pa.Table.from_pylist(event_rows(80, 40))
    frame = pd.DataFrame(event_rows(120, 40))
    receipts = [db.ingest("logs", data, batch_id=f"b{i}") for i, data in enumerate([rows, jsonl, arrow, frame])]
    assert [r.accepted for r in receipts] == [40, 40, 40, 40]
    again = db.ingest("logs", rows, batch_id="b0")
    assert (again.accepted, again.rejected, again.batch_id) == (40, [], "b0")
    ids = stored(db, "logs").column("id").to_pylist()
    assert sorted(ids) == list(range(160))
    assert db.ingest("logs", event_rows(160, 1)).batch_id  # a generated batch id


def test_nested_objects_become_dotted_columns(db):
    db.create_table("web")
    db.ingest("web", [{"timestamp": "2026-11-01T00:00:00Z", "http": {"status_code": 200, "req": {"path": "/"}}}])
    table = stored(db, "web")
    assert table.column("http.status_code").to_pylist() == [200]
    assert table.column("http.req.path").to_pylist() == ["/"]


def test_bad_input_is_rejected_row_by_row_and_kept(db):
    db.create_table("logs", partitions=2)
    db.ingest("logs", event_rows(0, 4))  # id is an int column from now on
    lines = [json.dumps(r) for r in event_rows(100, 10)]
    lines[1] = '{"id": 101, "timestamp": '  # malformed JSON
    lines[3] = json.dumps({"id": "one hundred three", "timestamp": "2026-11-01T00:00:00Z"})  # type conflict
    lines[5] = json.dumps({"id": 105, "timestamp": "the day after tomorrow"})  # bad timestamp
    lines[7] = json.dumps({"id": 107, "blob": "x" * 2_000_000})  # oversized
    receipt = db.ingest("logs", "\n".join(lines).encode(), batch_id="mixed")
    assert receipt.accepted == 6
    reasons = dict(receipt.rejected)
    assert sorted(reasons) == [1, 3, 5, 7]
    assert "not valid JSON" in reasons[1]
    assert "'id'" in reasons[3] and "'one hundred three'" in reasons[3] and "int64" in reasons[3]
    assert "'timestamp'" in reasons[5] and "'the day after tomorrow'" in reasons[5]
    assert "limit" in reasons[7]
    assert sorted(stored(db, "logs").column("id").to_pylist()) == [0, 1, 2, 3, 100, 102, 104, 106, 108, 109]
    kept = stored(db, "_rejected")
    assert sorted(kept.column("row").to_pylist()) == [1, 3, 5, 7]
    assert set(kept.column("table").to_pylist()) == {"logs"}
    raw = dict(zip(kept.column("row").to_pylist(), kept.column("raw").to_pylist()))
    assert raw[1] == lines[1] and "one hundred three" in raw[3]
    db.ingest("logs", "\n".join(lines).encode(), batch_id="mixed")  # a retry keeps them once
    assert stored(db, "_rejected").num_rows == 4
    queried = db.sql("SELECT row, reason FROM _rejected WHERE \"table\" = 'logs' ORDER BY row")
    assert queried.column("row").to_pylist() == [1, 3, 5, 7]


def test_one_batch_id_sent_to_two_tables_keeps_the_rejections_of_both(db):
    lines = [json.dumps(r) for r in event_rows(0, 3)] + ["not json"]
    for table in ("raw", "parsed"):
        db.create_table(table)
        assert db.ingest(table, "\n".join(lines).encode(), batch_id="shared").rejected[0][0] == 3
    assert sorted(stored(db, "_rejected").column("table").to_pylist()) == ["parsed", "raw"]


def test_all_rows_rejected_raises_with_the_reasons(db):
    db.create_table("logs")
    db.ingest("logs", event_rows(0, 2))
    with pytest.raises(RejectedRows, match="all 2 rows") as info:
        db.ingest("logs", [{"id": "a"}, {"id": "b"}])
    assert [row for row, _ in info.value.rejected] == [0, 1]


def test_empty_batches_store_nothing_and_unknown_tables_are_named(db):
    db.create_table("logs")
    for empty in ([], b"", b"\n", pa.table({"timestamp": pa.array([], pa.string())})):
        receipt = db.ingest("logs", empty)
        assert (receipt.accepted, receipt.rejected) == (0, [])
    assert load_snapshot(db.store, db.table("logs")).segments == ()
    with pytest.raises(TableNotFound, match="default.lgos does not exist; did you mean logs"):
        db.ingest("lgos", event_rows(0, 1))


def test_schema_evolves_across_partitions(db):
    db.create_table("metrics", partitions=2)
    # small batches go whole to one partition, chosen by their batch id: one id for each partition
    ids = {stable_hash(f"b{i}") % 2: f"b{i}" for i in range(10)}
    db.ingest("metrics", [{"timestamp": f"2026-11-01T00:00:0{i}Z", "value": i} for i in range(9)], batch_id=ids[0])
    evolved = [{"timestamp": f"2026-11-01T01:00:0{i}Z", "value": i + 0.5, "host": f"h{i}"} for i in range(9)]
    db.ingest("metrics", evolved, batch_id=ids[1])
    clash = db.ingest("metrics", [{"value": "high"}, {"value": 3, "region": "eu"}])
    assert clash.accepted == 1 and clash.rejected[0][0] == 0
    meta = db.table("metrics")
    snapshot = load_snapshot(db.store, meta)
    assert snapshot.schema.field("value").type == pa.float64()
    assert snapshot.schema.field("host").type == pa.string()
    assert len({s.partition for s in snapshot.segments}) == 2
    table = stored(db, "metrics")
    assert sorted(table.column("value").to_pylist()) == sorted([float(i) for i in range(9)] + [i + 0.5 for i in range(9)] + [3.0])
    assert table.column("region").drop_null().to_pylist() == ["eu"]


def test_sessions_with_stale_schemas_agree_on_new_column_types(db):
    db.create_table("t", partitions=2)
    other = type(db)(db.store.url, db.store.storage_options, namespace=db.namespace)
    other.ingestion.options = db.ingestion.options
    try:
        db.ingest("t", [{"x": 1}])
        receipt = other.ingest("t", [{"y": "text"}, {"y": 7}])  # the first type of a new column wins
        assert receipt.accepted == 1 and receipt.rejected[0][0] == 1
        with pytest.raises(RejectedRows, match="'y'"):  # db has not seen y yet; it learns y holds strings
            db.ingest("t", [{"y": 8}])
        assert db.ingest("t", [{"y": "eight"}]).accepted == 1
    finally:
        other.close()
    assert load_snapshot(db.store, db.table("t")).schema.field("y").type == pa.string()
    assert sorted(stored(db, "t").column("y").drop_null().to_pylist()) == ["eight", "text"]


def test_routing_key_keeps_a_key_in_one_partition(db):
    db.create_table("events", partitions=3, routing_key="service")
    db.ingest("events", event_rows(0, 200))
    snapshot = load_snapshot(db.store, db.table("events"))
    where = collections.defaultdict(set)
    for segment in snapshot.segments:
        from storage.segment import read_segment

        for service in set(read_segment(db.store, db.table("events").path, segment, ["service"]).column("service").to_pylist()):
            where[service].add(segment.partition)
    assert all(len(parts) == 1 for parts in where.values()) and len(where) == 5


def test_many_small_calls_are_group_committed(db):
    db.create_table("logs", partitions=1)
    threads = [threading.Thread(target=db.ingest, args=("logs", event_rows(i * 5, 5))) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = load_snapshot(db.store, db.table("logs"))
    assert sorted(stored(db, "logs").column("id").to_pylist()) == list(range(200))
    assert snapshot.versions[0] < 20  # 40 calls, far fewer commits (version 0 is the owner's claim)


def test_concurrent_calls_share_ray_calls_and_a_batch_sent_twice_at_once_is_stored_once(db):
    db.create_table("logs", partitions=2)
    ids = [f"b{i % 15}" for i in range(30)]  # every batch id sent by two threads at the same time
    receipts = []

    def send(batch_id: str) -> None:
        receipts.append(db.ingest("logs", event_rows(int(batch_id[1:]) * 5, 5), batch_id=batch_id))

    threads = [threading.Thread(target=send, args=(b,)) for b in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.batch_id for r in receipts) == sorted(ids)
    assert sorted(stored(db, "logs").column("id").to_pylist()) == list(range(75))


def test_an_idle_owner_channel_lets_its_thread_go_and_starts_another_when_needed(db, monkeypatch):
    from engine.ingest import deliver

    monkeypatch.setattr(deliver, "IDLE_SECONDS", 0.1)
    db.create_table("logs", partitions=1)
    db.ingest("logs", event_rows(0, 5))
    sender = db.ingestion.client("logs")._channels[0]
    deadline = time.monotonic() + 30
    while sender._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sender._thread is None
    db.ingest("logs", event_rows(5, 5))
    assert sorted(stored(db, "logs").column("id").to_pylist()) == list(range(10))


@ray.remote
class _SlowOwner:
    """Stands in for an owner: answers each call after ``delay`` s, remembering which appends came together."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []

    async def append_many(self, items):
        import asyncio

        self.calls.append([batch_id for batch_id, *_ in items])
        await asyncio.sleep(self.delay)
        return [len(data) for _, data, *_ in items]

    def seen(self) -> list[list[str]]:
        return self.calls


def test_with_a_call_in_flight_the_owner_channel_lingers_for_company_and_a_lone_append_goes_at_once(monkeypatch):
    from engine.ingest import deliver

    monkeypatch.setattr(deliver, "LINGER_SECONDS", 0.5)
    owner = _SlowOwner.remote(0.4)
    ray.get(owner.seen.remote())  # started
    sender = deliver.OwnerChannel(lambda: owner, "test-channel")
    payload = pack(pa.table({"x": [1, 2, 3]}))
    deadline = time.monotonic() + 30
    first = sender.send("a", payload, (), False)  # nothing in flight: sent at once
    first.sent.result(timeout=10)
    second = sender.send("b", payload, (), False)  # "a" in flight: waits for company ...
    time.sleep(0.1)
    third = sender.send("c", payload, (), False)  # ... which comes
    assert [t.result(deadline) for t in (first, second, third)] == [len(payload)] * 3
    while sender._in_flight and time.monotonic() < deadline:  # the replies' callbacks run on Ray's threads
        time.sleep(0.01)
    assert sender._in_flight == 0
    sender.send("d", payload, (), False).result(deadline)
    assert sorted(ray.get(owner.seen.remote())) == [["a"], ["b", "c"], ["d"]]  # an async actor may reorder calls
    sender.close()


def test_files_are_ingested_exactly_once(db, tmp_path):
    db.create_table("logs", partitions=2)
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.jsonl").write_text("\n".join(json.dumps(r) for r in event_rows(0, 50)) + "\nnot json\n")
    pd.DataFrame(event_rows(50, 50)).to_csv(folder / "b.csv", index=False)
    pq.write_table(pa.Table.from_pylist(event_rows(100, 50)), folder / "c.parquet")
    first = db.ingest_files("logs", str(folder / "*"), progress=False)
    assert (len(first.ingested), first.accepted, first.rejected) == (3, 150, 1)
    second = db.ingest_files("logs", [str(folder / "a.jsonl"), str(folder / "*.csv"), str(folder / "c.parquet")],
                             progress=False)
    assert (len(second.skipped), second.accepted) == (3, 0)
    pq.write_table(pa.Table.from_pylist(event_rows(150, 10)), folder / "d.parquet")
    third = db.ingest_files("logs", str(folder / "*"), progress=True)
    assert third.ingested == [third.ingested[0]] and third.ingested[0].endswith("d.parquet")
    assert sorted(stored(db, "logs").column("id").to_pylist()) == list(range(160))


def test_a_full_buffer_makes_callers_wait_then_time_out(db):
    meta = db.create_table("slow")
    config = IngestConfig(max_age=60.0, max_buffer_bytes=1000, buffer_timeout=0.5)
    owner = ray.remote(IngestActor).options(num_cpus=0).remote(db.store, meta, 0, config)
    first = owner.append.remote("b1", pack(pa.Table.from_pylist(event_rows(0, 100)).drop(["timestamp"])))
    while ray.get(owner.status.remote())["buffered_rows"] == 0:
        time.sleep(0.05)
    second = owner.append.remote("b2", pack(pa.Table.from_pylist(event_rows(100, 100)).drop(["timestamp"])))
    with pytest.raises(IngestTimeout, match="buffered"):
        ray.get(second, timeout=60)
    ray.kill(owner)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(first, timeout=60)


def test_a_flush_is_one_sorted_segment_whatever_hours_it_spans(db):
    import random

    from storage.segment import read_segment

    rows = event_rows(0, 300)  # 37 s apart: over four hours
    random.Random(3).shuffle(rows)
    for table, sort_key in (("by_time", None), ("by_service", ["service"])):
        meta = db.create_table(table, sort_key=sort_key)
        db.ingest(table, rows)
        snapshot = load_snapshot(db.store, meta)
        assert len(snapshot.segments) == 1 and snapshot.segments[0].rows == 300
        segment = snapshot.segments[0]
        assert segment.path.startswith("data/2026-11-01/")  # the day of its first event
        part = read_segment(db.store, meta.path, segment)
        keys = list(zip(*(part.column(k).to_pylist() for k in meta.full_sort_key)))
        assert keys == sorted(keys)
        assert segment.max_time - segment.min_time == 299 * 37 * 1_000_000


def test_a_retry_first_sent_longer_ago_than_the_dedup_window_is_refused_not_stored(db):
    from storage.errors import DedupExpired

    db.create_table("logs")
    db.ingest("logs", event_rows(0, 5), batch_id="kept")
    assert db.ingest("logs", event_rows(0, 5), batch_id="kept", first_sent=time.time() - 3 * 86400).accepted == 5
    with pytest.raises(DedupExpired, match="dedup window"):
        db.ingest("logs", event_rows(5, 5), batch_id="stale", first_sent=time.time() - 2 * 86400)
    assert sorted(stored(db, "logs").column("id").to_pylist()) == list(range(5))
