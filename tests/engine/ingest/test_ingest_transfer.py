"""Rows on their way to an owner: shared-memory files, their clean-up, and the way back to Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from engine.ingest.transfer import SHARED_MIN_BYTES, SharedArea, SharedRows, discard, pack, sweep, unpack
from engine.ingest.router import stable_hash
from storage.errors import SharedRowsMissing
from tests.engine.ingest.ingest_fixtures import event_rows, stored


def big_batch(start: int, n: int = 4_000) -> pa.Table:
    """Enough rows that they travel through shared memory (SHARED_MIN_BYTES and more)."""
    table = pa.Table.from_pylist(event_rows(start, n, message="x" * 40))
    assert table.nbytes >= SHARED_MIN_BYTES
    return table


def test_a_shared_file_gives_back_the_rows_and_goes_with_its_call_and_its_session(tmp_path):
    area = SharedArea(str(tmp_path))
    table = pa.table({"x": list(range(1000)), "s": [str(i) for i in range(1000)]})
    shared = area.write(table)
    assert os.path.dirname(shared.path) == area.folder and len(shared) == os.path.getsize(shared.path)
    assert unpack(shared).equals(table) and unpack(pack(table)).equals(table)
    discard(shared)
    assert not os.path.exists(shared.path)
    discard(shared)  # twice is harmless
    left = area.write(table)
    area.close()
    assert not os.path.exists(left.path) and not os.path.exists(os.path.dirname(left.path))


def test_without_usable_shared_memory_the_rows_go_through_ray(tmp_path):
    assert SharedArea(str(tmp_path / "absent")).write(pa.table({"x": [1]})) is None


def test_an_owner_that_cannot_read_the_file_says_so_with_the_path(tmp_path):
    missing = str(tmp_path / "rows")
    with pytest.raises(SharedRowsMissing, match=f"{missing}.*another machine"):
        unpack(SharedRows(missing, 10))


def test_a_new_session_removes_the_folders_of_client_processes_that_died(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"petrel-ingest-{int(gone.stdout)}-abc"
    live = tmp_path / f"petrel-ingest-{os.getpid()}-def"
    other = tmp_path / "someone-else"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "rows").write_bytes(b"x")
    area = SharedArea(str(tmp_path))
    area.write(pa.table({"x": [1]}))
    assert not dead.exists() and live.exists() and other.exists() and os.path.isdir(area.folder)
    assert sweep(str(tmp_path)) == []
    area.close()


def test_rows_to_an_owner_on_this_machine_travel_through_shared_memory(local_db):
    local_db.create_table("logs", partitions=1)
    area = local_db.ingestion.shared
    before = area.written
    local_db.ingest("logs", big_batch(0), batch_id="big")
    local_db.ingest("logs", event_rows(10_000, 3), batch_id="small")  # small rows ride inside the call
    assert area.written == before + 1
    assert os.listdir(area.folder) == []  # each file went with its call
    assert sorted(stored(local_db, "logs").column("id").to_pylist()) == list(range(4_000)) + [10_000, 10_001, 10_002]


class _Unseen(SharedArea):
    """Shared memory the owner cannot see, as on another machine: the file is gone before it looks."""

    def write(self, table: pa.Table) -> SharedRows | None:
        shared = super().write(table)
        discard(shared)
        return shared


def test_rows_an_owner_cannot_read_in_shared_memory_go_through_ray_once_each(local_db, tmp_path):
    local_db.create_table("logs", partitions=2)
    (tmp_path / "shm").mkdir()
    unseen = _Unseen(str(tmp_path / "shm"))
    writer = local_db.ingestion.client("logs")
    writer._shared = unseen
    batch_ids = [f"b{k}" for k in range(6)]
    for k, batch_id in enumerate(batch_ids):
        assert local_db.ingest("logs", big_batch(k * 4_000), batch_id=batch_id).accepted == 4_000
    owners = {stable_hash(b) % 2 for b in batch_ids}  # a batch this small goes whole to one partition
    assert len(owners) == 2
    assert unseen.written == 2 and writer._remote == owners  # once per owner: then it knows it is elsewhere
    assert sorted(stored(local_db, "logs").column("id").to_pylist()) == list(range(24_000))


def test_an_owner_removes_the_folders_a_crashed_client_left_without_waiting_for_a_new_session(tmp_path):
    import asyncio
    import time
    import uuid

    from engine.ingest.actor import IngestActor
    from engine.ingest.owner import IngestConfig
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore

    store = ObjectStore(f"memory://sweep-{uuid.uuid4().hex[:8]}")
    meta = Catalog(store).create_table("default", "events", partitions=1)
    actor = IngestActor(store, meta, 0, IngestConfig(max_age=0.01, shared_sweep_interval=0.2))
    area = SharedArea(str(tmp_path))
    rows = big_batch(0)
    times = pa.array([int(i) * 1_000_000 for i in range(rows.num_rows)], pa.timestamp("us", "UTC"))
    shared = area.write(rows.set_column(rows.schema.get_field_index("timestamp"), "timestamp", times))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    crashed = tmp_path / f"petrel-ingest-{int(gone.stdout)}-abc"  # a client that died after the session started
    crashed.mkdir()
    (crashed / "rows").write_bytes(b"x")
    old = time.time() - 10
    os.utime(crashed, (old, old))
    recent = tmp_path / f"petrel-ingest-{int(gone.stdout)}-new"  # changed within the interval: left for now
    recent.mkdir()
    os.utime(recent, (time.time() + 60, time.time() + 60))

    async def run() -> None:
        assert await actor.append("b", shared, urgent=True) == 4_000
        await asyncio.sleep(0.5)

    asyncio.run(run())
    assert not crashed.exists() and recent.exists() and os.path.isdir(area.folder)
    area.close()
