"""The client side of ingestion without Ray: who owns a partition, store handles that cross processes, file resumes."""

from __future__ import annotations

import os
import pickle

from engine.ingest.client import owner_name
from engine.ingest.files import _resume_point
from storage.catalog import Catalog
from storage.objectstore import ObjectStore


def test_one_warehouse_spelled_two_ways_has_one_owner_per_table(tmp_path, monkeypatch):
    (tmp_path / "wh").mkdir()
    monkeypatch.chdir(tmp_path)
    relative, absolute = ObjectStore("./wh"), ObjectStore(str(tmp_path / "wh"))
    meta = Catalog(relative).create_table("default", "events", partitions=2)
    assert relative.location == absolute.location == f"file://{os.path.realpath(tmp_path / 'wh')}"
    assert owner_name(relative, meta) == owner_name(absolute, Catalog(absolute).table("default", "events"))
    assert owner_name(ObjectStore(f"file://{tmp_path}/wh/"), meta) == owner_name(relative, meta)


def test_an_unpickled_store_keeps_its_absolute_root_in_another_working_directory(tmp_path, monkeypatch):
    (tmp_path / "a" / "wh").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    store = ObjectStore("./wh")
    store.put("x/data.bin", b"payload")
    sent = pickle.dumps(store)
    monkeypatch.chdir(tmp_path / "b")  # the actor's process runs elsewhere
    received = pickle.loads(sent)
    assert received.get("x/data.bin") == b"payload"
    assert received.location == store.location


def test_remote_stores_pickle_as_they_are_and_odd_local_names_survive(tmp_path):
    for url in ("memory://petrel-client/wh", "s3://bucket/prefix"):
        store = pickle.loads(pickle.dumps(ObjectStore(url, {"anon": True} if url.startswith("s3") else None)))
        assert (store.location, store.url) == (url, url)
    odd = ObjectStore(str(tmp_path / "wh#1?x"))
    odd.put("k", b"v")
    assert pickle.loads(pickle.dumps(odd)).get("k") == b"v"


def test_a_file_resumes_at_the_chunk_whose_rejected_rows_are_missing():
    part = {"chunk": 3, "done": True, "rejected": True}
    assert _resume_point([part, dict(part)], lambda: 3) is None  # data and rejections all stored
    assert _resume_point([part, dict(part)], lambda: 1) == 2  # chunk 2's rejections did not land
    clean = {**part, "rejected": False}
    assert _resume_point([clean, dict(clean)], lambda: 1) is None  # chunk 2 had none to store
    assert _resume_point([{"chunk": 2, "done": False, "rejected": True}, part], lambda: 2) == 2
    assert _resume_point([{"chunk": 2, "done": False, "rejected": True}, part], lambda: 1) == 1
    assert _resume_point([None, part], lambda: 0) == 0
