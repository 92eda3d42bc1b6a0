"""Checkpoints fold the offsets of finished sources into digests, so a partition's offsets do not grow with files."""

from __future__ import annotations

import json
import uuid

import numpy as np

from storage.catalog import Catalog
from storage.finished import FinishedSources, digest
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table

FILES = 400


def file_record(n: int, finished: bool) -> dict:
    """What ingest_files commits for a file: about the size of the real record (an S3 ETag as the version)."""
    return {"version": f"etag:{uuid.UUID(int=n).hex}", "chunk": 1, "done": finished,
            "layout": {"rows": 200000, "bytes": 33554432}, "rejected": False, "finished": finished}


def source(n: int) -> str:
    return f"s3://landing-bucket/exports/2026/11/01/events-{n:06d}.jsonl"


def test_a_checkpoint_keeps_finished_files_as_digests_not_records():
    store = ObjectStore(f"memory://finished-{uuid.uuid4().hex[:8]}")
    meta = Catalog(store).create_table("default", "files", partitions=1)
    log = PartitionLog(store, meta.path, 0, checkpoint_interval=50)
    state = log.load()
    for n in range(FILES):  # one commit per file, as ingest_files makes for one-chunk files
        state = log.commit(state, epoch=None, offsets={source(n): file_record(n, True)}, batch_ids=[f"f{n}"])
    state = log.commit(state, epoch=None, offsets={"s3://landing-bucket/partial.jsonl": file_record(10**9, False)})
    _, checkpoints = log.versions()
    checkpoint = json.loads(store.get(log.checkpoint_path(checkpoints[-1])))
    kept = len(json.dumps(checkpoint["offsets"])) + len(json.dumps(checkpoint.get("finished")))
    assert kept < FILES * 25, kept  # 16-byte digests (base64), not ~180-byte records
    loaded = log.load()
    assert len(loaded.finished) == FILES and list(loaded.offsets) == ["s3://landing-bucket/partial.jsonl"]
    assert all(loaded.finished.contains(source(n), file_record(n, True)["version"]) for n in range(FILES))
    assert not loaded.finished.contains(source(0), "etag:rewritten")  # another version is another file
    assert not loaded.finished.contains("s3://landing-bucket/partial.jsonl", file_record(10**9, False)["version"])
    assert state.finished == loaded.finished and state.offsets == loaded.offsets  # the writer's state is folded too


def test_the_fold_of_a_vacuum_and_the_snapshot_carry_finished_sources():
    store = ObjectStore(f"memory://finished-{uuid.uuid4().hex[:8]}")
    meta = Catalog(store).create_table("default", "files", partitions=2)
    for p in range(2):
        log = PartitionLog(store, meta.path, p)
        state = log.load()
        for n in range(3):
            state = log.commit(state, epoch=None, offsets={source(n): file_record(n, n != 2)})
    vacuum_table(store, meta, older_than=0)
    snapshot = load_snapshot(store, meta)
    for p in range(2):
        assert set(snapshot.offsets[p]) == {source(2)}
        assert snapshot.finished[p].contains(source(1), file_record(1, True)["version"])
        _, checkpoints = PartitionLog(store, meta.path, p).versions()
        kept = json.loads(store.get(PartitionLog(store, meta.path, p).checkpoint_path(checkpoints[-1])))
        assert set(kept["offsets"]) == {source(2)}


def test_finished_sources_fold_again_without_losing_any_and_round_trip():
    first, rest = FinishedSources().fold({source(n): file_record(n, True) for n in range(5)})
    assert rest == {} and len(first) == 5
    again, rest = first.fold({source(3): file_record(3, True), source(9): file_record(9, True), "x": {"last": 4}})
    assert len(again) == 6 and rest == {"x": {"last": 4}}
    assert FinishedSources.from_json(again.to_json()) == again
    assert again.contains(source(9), file_record(9, True)["version"])
    raw = np.frombuffer(FinishedSources.from_json(again.to_json())._digests.tobytes(), "S16")
    assert list(raw) == sorted(raw) and digest(source(0), "v") != digest(source(0), "w")
