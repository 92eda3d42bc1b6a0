"""Chaos: ingest owners die at every point of a flush, zombies wake up, files are re-run.

Whatever happens, the rows stored are exactly the union of the batches sent:
none missing, none doubled (checked by a unique event id).  Every test runs
on local disk and on the loopback S3.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time
import uuid

import pyarrow as pa
import pytest
import ray

from engine.file_access import FileAccess
from engine.ingest.actor import IngestActor
from engine.ingest.client import Ingestion, IngestOptions
from engine.ingest.files import ingest_files
from engine.ingest.owner import IngestConfig
from engine.ingest.transfer import pack
from storage.errors import Fenced, IngestError
from tests.engine.ingest.store_faults import FAULT_POINTS, FaultyStore
from tests.engine.ingest.ingest_fixtures import event_rows, stored

pytestmark = [pytest.mark.chaos, pytest.mark.usefixtures("ray_session")]


def assert_exactly(db, table: str, expected: set[int]) -> None:
    counts = collections.Counter(stored(db, table).column("id").to_pylist())
    doubled = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(expected - set(counts))
    extra = sorted(set(counts) - expected)
    assert not doubled and not missing and not extra, (doubled[:10], missing[:10], extra[:10])


def faulty(db, tmp_path, options: IngestOptions | None = None) -> tuple[Ingestion, FaultyStore]:
    """An ingestion whose owners write through a store with injectable faults (the session's own, for db.ingest)."""
    store = FaultyStore.over(db.store, str(tmp_path / "faults"))
    ingestion = Ingestion(store, db.catalog, db.namespace, options or db.ingestion.options)
    return ingestion, store


def send(db, table: str, batch_id: str, rows: list[dict], acked: set[str], lock: threading.Lock) -> None:
    """A client: retry the same batch id until it is acknowledged."""
    for _ in range(10):
        try:
            db.ingest(table, rows, batch_id=batch_id)
        except IngestError:
            continue
        with lock:
            acked.add(batch_id)
        return
    raise AssertionError(f"batch {batch_id} was never acknowledged")


def test_owners_killed_at_every_point_lose_nothing_and_store_nothing_twice(db, tmp_path):
    db.create_table("chaos", partitions=2)
    db._ingestion, store = faulty(db, tmp_path)
    client = db.ingestion.client("chaos")
    rng = random.Random(20261101)
    rounds = 6 if db.store.protocol == "file" else 4  # the fault points in turn, then again
    per_round = 4
    # the odd batches are big enough to travel through shared memory, the even ones through Ray
    batches = {f"b{i}": event_rows(i * 25, 25, **({"message": "x" * 3000} if i % 2 else {}))
               for i in range(rounds * per_round)}
    acked: set[str] = set()
    lock = threading.Lock()
    points = list(FAULT_POINTS) + ["kill"]
    for round_no in range(rounds):
        point = points[round_no % len(points)]
        victim = client.owner(rng.randrange(2))
        if point != "kill":
            store.arm(point)  # the first owner to reach it dies there
        ids = [f"b{round_no * per_round + k}" for k in range(per_round)]
        threads = [threading.Thread(target=send, args=(db, "chaos", i, batches[i], acked, lock)) for i in ids]
        for thread in threads:
            thread.start()
        if point == "kill":
            time.sleep(rng.uniform(0.0, 0.2))
            ray.kill(victim, no_restart=False)  # the process dies; Ray restarts the owner
        for thread in threads:
            thread.join()
        for old in rng.sample(sorted(acked), k=min(2, len(acked))):  # late duplicate retries
            assert db.ingest("chaos", batches[old], batch_id=old).accepted == 25
    assert acked == set(batches)
    assert_exactly(db, "chaos", set(range(rounds * per_round * 25)))
    assert db.ingestion.shared.written > 0 and os.listdir(db.ingestion.shared.folder) == []  # none left behind
    epochs = [ray.get(client.owner(p).status.remote())["epoch"] for p in range(2)]
    assert sum(epochs) > 2  # owners really were replaced


def test_a_zombie_owner_is_fenced_and_nothing_it_buffered_appears(db, tmp_path):
    meta = db.create_table("zombie")
    _, store = faulty(db, tmp_path)
    zombie = ray.remote(IngestActor).options(num_cpus=0).remote(store, meta, 0, IngestConfig(max_age=0.01))
    store.arm("after_upload", "pause")
    rows = db.ingestion.client("zombie").fit(event_rows(0, 10), time.time_ns() // 1000).table
    late = zombie.append.remote("zombie-batch", pack(rows))
    while not store.paused():
        time.sleep(0.05)
    db.ingest("zombie", event_rows(100, 10))  # a new owner claims the partition
    store.release()
    with pytest.raises(Fenced, match="stale"):
        ray.get(late, timeout=60)
    assert_exactly(db, "zombie", set(range(100, 110)))
    new_epoch = ray.get(db.ingestion.client("zombie").owner(0).status.remote())["epoch"]
    assert ray.get(zombie.status.remote())["epoch"] < new_epoch
    ray.kill(zombie)


def test_ingest_files_killed_midway_and_rerun(db, tmp_path):
    db.create_table("files", partitions=2)
    folder = tmp_path / "drop"
    folder.mkdir()
    for n in range(3):
        lines = [json.dumps(r) for r in event_rows(n * 200, 200)]
        (folder / f"part-{n}.jsonl").write_text("\n".join(lines) + "\n")
    source = str(folder / "*.jsonl")
    if db.store.protocol == "s3":  # the files come from the object store too, beside the warehouse, allow-listed
        incoming = db.store.url.rsplit("/", 1)[0] + f"/incoming-{uuid.uuid4().hex[:8]}/"
        for path in sorted(folder.iterdir()):
            db.store.fs.pipe(incoming[len("s3://"):] + path.name, path.read_bytes())
        db.file_access = FileAccess({incoming: db.store.storage_options}, db.store)
        source = incoming + "*.jsonl"
    once, store = faulty(db, tmp_path, IngestOptions(max_attempts=1, actor=IngestConfig(max_age=0.05)))
    failures = 0
    faults = [(1, "after_commit"), (0, "before_upload"), (1, "after_upload"), (0, "after_commit")]
    for partition, point in faults[: 4 if db.store.protocol == "file" else 3]:
        store.arm(point)
        try:
            ingest_files(once, "files", source, progress=False, chunk_bytes=2000)
        except IngestError:
            failures += 1
        once.client("files").forget(partition)
    assert failures >= 2
    finished = db.ingest_files("files", source, progress=False)  # other chunk sizes: the first run's are kept
    assert 0 < finished.accepted < 600
    assert_exactly(db, "files", set(range(600)))
    again = db.ingest_files("files", source, progress=False)
    assert (again.accepted, len(again.skipped)) == (0, 3)
    assert_exactly(db, "files", set(range(600)))


def test_ingest_files_whose_rejected_rows_failed_to_commit_stores_them_on_the_rerun(db, tmp_path):
    db.create_table("files", partitions=2)
    path = tmp_path / "bad-first.jsonl"
    lines = ["not json"] + [json.dumps(r) for r in event_rows(0, 60)]
    path.write_text("\n".join(lines) + "\n")
    once, store = faulty(db, tmp_path, IngestOptions(max_attempts=1, actor=IngestConfig(max_age=0.05)))
    store.arm("after_upload", "raise", table="/_rejected/")  # chunk 0's data lands, its rejections do not
    with pytest.raises(IngestError):
        ingest_files(once, "files", str(path), progress=False, chunk_bytes=1000)
    assert stored(db, "_rejected").num_rows == 0
    rerun = db.ingest_files("files", str(path), progress=False)
    assert rerun.rejected == 1
    again = db.ingest_files("files", str(path), progress=False)
    assert (again.accepted, again.skipped) == (0, [again.skipped[0]])
    kept = stored(db, "_rejected")
    assert kept.num_rows == 1 and kept.column("table").to_pylist() == ["files"]
    assert_exactly(db, "files", set(range(60)))
