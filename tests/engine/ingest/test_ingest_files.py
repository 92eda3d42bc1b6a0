"""ingest_files: a file is its name and version, read in streamed chunks, each stored exactly once."""

from __future__ import annotations

import collections
import io
import json
import os
import uuid

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine.ingest.files as files
from engine.file_access import FileAccess
from engine.ingest.offsets import FileOffset, covered
from storage.errors import IngestError
from storage.finished import FinishedSources
from storage.snapshot import load_snapshot
from tests.engine.ingest.ingest_fixtures import event_rows, stored

pytestmark = pytest.mark.usefixtures("ray_session")


def jsonl(rows: list[dict]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def drop_folder(db, tmp_path) -> str:
    """A folder the session may read files from: local, or beside the warehouse on S3 (ETags)."""
    if db.store.protocol == "s3":
        folder = db.store.url.rsplit("/", 1)[0] + f"/incoming-{uuid.uuid4().hex[:8]}/"
        db.file_access = FileAccess({folder: db.store.storage_options}, db.store)
        return folder
    folder = tmp_path / "drop"
    folder.mkdir()
    return str(folder) + "/"


def put(db, url: str, data: bytes) -> None:
    if url.startswith("s3://"):
        db.store.fs.pipe(url[len("s3://"):], data)
        db.store.fs.invalidate_cache()
    else:
        with open(url, "wb") as handle:
            handle.write(data)


def ids(db, table: str) -> collections.Counter:
    return collections.Counter(stored(db, table).column("id").to_pylist())


def test_a_file_rewritten_under_the_same_name_is_ingested_again_once(db, tmp_path):
    db.create_table("logs", partitions=2)
    path = drop_folder(db, tmp_path) + "a.jsonl"
    put(db, path, jsonl(event_rows(0, 30)))
    assert db.ingest_files("logs", path, progress=False).accepted == 30
    put(db, path, jsonl(event_rows(100, 40)))  # new content, same name
    assert db.ingest_files("logs", path, progress=False).accepted == 40
    again = db.ingest_files("logs", path, progress=False)
    assert (again.accepted, len(again.skipped)) == (0, 1)
    assert ids(db, "logs") == collections.Counter(list(range(30)) + list(range(100, 140)))


def test_files_folded_by_a_checkpoint_are_still_skipped_and_a_rewrite_still_read(db, tmp_path):
    db.create_table("logs", partitions=2)
    folder = drop_folder(db, tmp_path)
    for n in range(3):
        put(db, f"{folder}f{n}.jsonl", jsonl(event_rows(n * 10, 10)))
    assert db.ingest_files("logs", folder + "*.jsonl", progress=False).accepted == 30
    db.vacuum("logs", older_than=0)  # checkpoints every partition: the finished files' offsets are folded
    snapshot = load_snapshot(db.store, db.table("logs"))
    assert all(not offsets for offsets in snapshot.offsets.values())
    assert all(len(finished) == 3 for finished in snapshot.finished.values())
    again = db.ingest_files("logs", folder + "*.jsonl", progress=False)
    assert (again.accepted, len(again.skipped)) == (0, 3)
    put(db, f"{folder}f1.jsonl", jsonl(event_rows(100, 5)))  # a new version of a folded file is a new file
    assert db.ingest_files("logs", folder + "*.jsonl", progress=False).accepted == 5
    assert ids(db, "logs") == collections.Counter(list(range(30)) + list(range(100, 105)))


def test_an_offset_of_a_folded_file_is_covered_and_another_version_is_not():
    version = "etag:abc"
    finished, rest = FinishedSources().fold({"s3://b/a.jsonl": FileOffset("s3://b/a.jsonl", version=version, chunk=2,
                                                                            last=True).record(None)})
    assert rest == {}
    chunk = FileOffset("s3://b/a.jsonl", version=version, chunk=0)
    assert covered((chunk,), {}, finished) and not covered((chunk,), {})
    assert not covered((FileOffset("s3://b/a.jsonl", version="etag:new", chunk=0),), {}, finished)
    with_rejects = FileOffset("s3://b/c.jsonl", version=version, chunk=0, last=True, rejected=True).record(None)
    assert FinishedSources().fold({"s3://b/c.jsonl": with_rejects})[1] == {"s3://b/c.jsonl": with_rejects}


def test_a_file_replaced_after_a_crash_part_way_is_read_from_its_start(db, tmp_path, monkeypatch):
    db.create_table("logs", partitions=2)
    path = drop_folder(db, tmp_path) + "a.jsonl"
    put(db, path, jsonl(event_rows(0, 100)))
    sent = []
    real = files._ingest_chunk

    def crash_after_two(*args, **kwargs):
        if len(sent) == 2:
            raise IngestError("the client died")
        sent.append(args[4])
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "_ingest_chunk", crash_after_two)
    with pytest.raises(IngestError):
        files.ingest_files(db.ingestion, "logs", path, progress=False, chunk_bytes=1000)
    monkeypatch.setattr(files, "_ingest_chunk", real)
    partial = ids(db, "logs")
    assert 0 < len(partial) < 100
    put(db, path, jsonl(event_rows(1000, 100)))
    rerun = files.ingest_files(db.ingestion, "logs", path, progress=False, chunk_bytes=1000)
    assert rerun.accepted == 100
    assert ids(db, "logs") == partial + collections.Counter(range(1000, 1100))


def test_a_read_of_a_file_failing_midway_is_opened_again_and_goes_on_where_it_was(db, tmp_path, monkeypatch):
    db.create_table("logs", partitions=2)
    path = drop_folder(db, tmp_path) + "a.jsonl"
    put(db, path, jsonl(event_rows(0, 100)))
    failures = []

    class Resetting:  # the connection under the file reset part-way, twice
        def __init__(self, handle):
            self.handle, self.read_bytes = handle, 0

        def read(self, size=-1):
            if self.read_bytes > 1500 and len(failures) < 2:
                failures.append(self.read_bytes)
                raise ConnectionResetError("connection reset by peer")
            data = self.handle.read(size)
            self.read_bytes += len(data)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __getattr__(self, name):
            return getattr(self.handle, name)

    real = files.chunks

    def resetting_chunks(fs, path, *args):
        opened = fs.open

        def open_resetting(*a, **k):
            return Resetting(opened(*a, **k))

        monkeypatch.setattr(fs, "open", open_resetting)
        try:
            yield from real(fs, path, *args)
        finally:
            monkeypatch.setattr(fs, "open", opened)

    monkeypatch.setattr(files, "chunks", resetting_chunks)
    receipt = files.ingest_files(db.ingestion, "logs", path, progress=False, chunk_bytes=1000)
    assert len(failures) == 2 and receipt.accepted == 100
    assert ids(db, "logs") == collections.Counter(range(100))  # every row once: no chunk lost, none sent twice


def test_the_version_is_the_etag_else_size_and_mtime(tmp_path):
    local = fsspec.filesystem("file")
    path = str(tmp_path / "a.jsonl")
    put(None, path, b"{}\n")
    first = files.file_version(local, path)
    assert first.startswith("size:3:")
    put(None, path, b"[]\n")  # same size: the modification time tells them apart
    os.utime(path, ns=(1, 10**18))
    assert files.file_version(local, path) not in (first, "")


class CountingFS:
    """A local filesystem that counts the bytes read from the files it opens."""

    def __init__(self) -> None:
        self.fs = fsspec.filesystem("file")
        self.read = 0

    def open(self, path, mode="rb", compression=None):
        return Counted(self.fs.open(path, mode, compression=compression), self)


class Counted(io.RawIOBase):
    def __init__(self, inner, owner: CountingFS) -> None:
        self.inner, self.owner = inner, owner

    def readable(self):
        return True

    def seekable(self):
        return self.inner.seekable()

    def seek(self, offset, whence=0):
        return self.inner.seek(offset, whence)

    def tell(self):
        return self.inner.tell()

    def read(self, size=-1):
        data = self.inner.read(size)
        self.owner.read += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self):
        self.inner.close()
        super().close()


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_files_are_streamed_chunk_by_chunk_not_read_whole(tmp_path, kind):
    rows = event_rows(0, 60_000)
    path = str(tmp_path / f"big.{kind}")
    if kind == "jsonl":
        put(None, path, jsonl(rows))
    elif kind == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2_000)
    fs = CountingFS()
    size = fsspec.filesystem("file").size(path)
    stream = files.chunks(fs, path, chunk_rows=1_000, chunk_bytes=1 << 16)
    first = next(stream)
    assert 0 < fs.read < size / 2
    everything = [first, *stream]
    if kind == "jsonl":
        assert b"".join(everything) == open(path, "rb").read()
        assert all(c.endswith(b"\n") and len(c) >= 1 << 16 for c in everything[:-1])
        assert all(c.find(b"\n", 1 << 16) == len(c) - 1 for c in everything[:-1])
    else:
        assert [c.num_rows for c in everything] == [1_000] * 60
        assert pa.concat_tables(everything).column("id").to_pylist() == list(range(60_000))


def test_an_empty_file_is_one_empty_chunk(tmp_path):
    for name, data in (("e.jsonl", b""), ("e.csv", b"id,timestamp\n")):
        path = str(tmp_path / name)
        put(None, path, data)
        got = list(files.chunks(fsspec.filesystem("file"), path, 10, 100))
        assert len(got) == 1 and len(got[0]) == 0
