"""File ingestion, exactly once per file: JSON lines, CSV and Parquet.

A file is read in chunks that are the same on every run (JSON lines cut at
line ends every ``chunk_bytes``, CSV and Parquet every ``chunk_rows`` rows).
Chunk k of a file goes to EVERY partition — its rows for that partition, or
none — with batch id ``<source>@<version>#k`` and the source offset
``FileOffset`` ``{"version": ..., "chunk": k + 1, "done": <last chunk>, "layout": <chunk sizes>}``,
committed in the same commit as the rows, through the same client path as
``session.ingest`` (fit, route, deliver).  So each partition's log says how far it got through each file:

- a file every partition has marked done is skipped (a partition's
  checkpoint folds a finished file's record into its finished sources,
  which still say so: the offsets kept do not grow with the files taken);
- otherwise the run resumes at the lowest chunk any partition lacks, cutting
  the file as the first run did, and a partition that already has a chunk
  acknowledges it without writing.

A chunk's rejected rows go to the rejected-rows table in a commit of their
own, with the offset "chunk k" (a :class:`~engine.ingest.offsets.SequenceRange`)
under ``<source>@<version>/rejected/<table>``;
the data offset says whether chunk k had any.  A chunk whose rejected rows
did not land is sent again (its data is acknowledged, the rejections are
stored), and a file counts as done only once they are.

A file is its URL and its version: the object store's ETag where it gives
one, else the size and modification time.  Offsets, batch ids and the
rejected-rows offset all carry the version, so a file rewritten under the
same name is a new file: it is read again (its new content, once), and a
file replaced after a crash part-way starts from its beginning, never in the
middle of the new content.  Running again, or after a crash midway,
therefore never ingests one version of a file twice and never skips one.

Files are streamed, never read whole: JSON lines ``chunk_bytes`` at a time,
CSV through pyarrow's streaming reader and Parquet row group by row group, each cut
into chunks of ``chunk_rows`` rows, so a run holds about one chunk in memory
(a compressed Parquet file, which cannot be read out of order, is the
exception).  A read that fails transiently (a connection reset, a timeout, a
500 from S3) opens the file again and goes on from the chunk it was at:
chunks are the same on every read.
"""

from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.ingest.client import Ingestion, TableClient
from engine.ingest.offsets import FileOffset, SequenceRange
from engine.ingest.rejected import rejected_batch_id
from storage.errors import IngestError, StoreUnavailable
from storage.snapshot import Snapshot, load_snapshot
from storage.transient import ATTEMPTS, backoff, is_transient, retrying

CHUNK_ROWS = 200_000
CHUNK_BYTES = 32 << 20
_FORMATS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".xz")
_FOLDED_CHUNK = 1 << 62  # a folded file has every chunk; never the lowest one a partition lacks


@dataclass
class FilesReceipt:
    """What an ``ingest_files`` run did: files read, files already ingested, rows stored and refused."""

    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0


def file_format(path: str) -> str:
    name = path.lower()
    for suffix in _COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for suffix, kind in _FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise IngestError(
        f"cannot tell the format of {path!r} from its name; use .jsonl/.ndjson/.json (JSON lines), .csv or .parquet"
    )


def expand(paths: Any, storage_options: dict | None) -> list[tuple[fsspec.AbstractFileSystem, str, str]]:
    """(filesystem, path, source URL) of every file ``paths`` names, globs expanded, sorted."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: dict[str, tuple[fsspec.AbstractFileSystem, str]] = {}
    for item in items:
        fs, _, matches = fsspec.core.get_fs_token_paths(str(item), storage_options=storage_options or {})
        if not matches:
            raise IngestError(f"no file matches {str(item)!r}; check the path or glob")
        for path in matches:
            if fs.isdir(path):
                continue
            found[fs.unstrip_protocol(path)] = (fs, path)
    if not found:
        raise IngestError(f"no file matches {paths!r}; check the path or glob")
    return [(fs, path, url) for url, (fs, path) in sorted(found.items())]


def file_version(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """What tells this content of the file from another under the same name: its ETag, else size and mtime."""
    info = fs.info(path)
    for key in ("ETag", "etag", "e_tag"):
        if info.get(key):
            return "etag:" + str(info[key]).strip('"')
    modified = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("created"))))
    if hasattr(modified, "timestamp"):
        modified = modified.timestamp()
    return f"size:{info.get('size')}:mtime:{modified!r}"


def chunks(fs: fsspec.AbstractFileSystem, path: str, chunk_rows: int, chunk_bytes: int) -> Iterator[Any]:
    """The file's chunks, the same on every run; at least one (maybe empty).  Streamed: about one chunk in memory."""
    kind = file_format(path)
    with fs.open(path, "rb", compression="infer") as handle:
        if kind == "json":
            yield from _line_chunks(handle, chunk_bytes)
            return
        if kind == "csv":  # the reader reads up to 32 blocks ahead (types come from the first block)
            block = max(1 << 14, min(chunk_bytes // 16, 1 << 20))
            options = pacsv.ReadOptions(block_size=block, use_threads=False)
            yield from _row_chunks(pacsv.open_csv(handle, read_options=options), chunk_rows)
            return
        if not getattr(handle, "seekable", lambda: False)():  # compressed: Parquet needs to seek to its footer
            handle = io.BytesIO(handle.read())
        parquet = pq.ParquetFile(handle)
        groups = (b for g in range(parquet.num_row_groups) for b in parquet.read_row_group(g).to_batches())
        yield from _row_chunks(groups, chunk_rows)


def _line_chunks(handle: Any, chunk_bytes: int) -> Iterator[bytes]:
    """JSON lines cut at the first line end at or after every ``chunk_bytes`` bytes (the rest: the last chunk)."""
    buffer = bytearray()
    ended = False

    def fill(needed: int) -> None:
        nonlocal ended
        while not ended and len(buffer) < needed:
            more = handle.read(max(chunk_bytes, 1 << 16))
            ended = not more
            buffer.extend(more)

    while True:
        fill(chunk_bytes + 1)
        if len(buffer) <= chunk_bytes:  # what is left fits one chunk
            yield bytes(buffer)
            return
        end = buffer.find(b"\n", chunk_bytes)
        while end < 0 and not ended:
            searched = len(buffer)
            fill(len(buffer) + 1)
            end = buffer.find(b"\n", searched)
        if end < 0:
            yield bytes(buffer)
            return
        yield bytes(buffer[: end + 1])
        del buffer[: end + 1]
        fill(1)
        if not buffer:  # the chunk ended the file
            return


def _row_chunks(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows from ``batches`` (the last one shorter, or one empty if none)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    sent = False
    schema = None
    for batch in batches:
        schema = batch.schema
        pending.append(batch)
        count += batch.num_rows
        while count >= chunk_rows:
            table = pa.Table.from_batches(pending, schema)
            yield table.slice(0, chunk_rows)
            sent = True
            rest = table.slice(chunk_rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count or not sent:
        yield pa.Table.from_batches(pending, schema) if schema is not None else pa.table({})


def ingest_files(
    ingestion: Ingestion,
    table: str,
    paths: Any,
    progress: bool = True,
    storage_options: dict | None = None,
    chunk_rows: int = CHUNK_ROWS,
    chunk_bytes: int = CHUNK_BYTES,
) -> FilesReceipt:
    """Ingest every file ``paths`` names into ``table``, each exactly once (see the module docstring)."""
    client = ingestion.client(table)
    meta = client.meta
    if storage_options is None and ingestion.store.protocol != "file":
        storage_options = ingestion.store.storage_options
    files = retrying(lambda: expand(paths, storage_options), f"listing {paths!r}")
    snapshot = load_snapshot(ingestion.store, meta)
    receipt = FilesReceipt()
    started = time.monotonic()
    for number, (fs, path, source) in enumerate(files, 1):
        version = retrying(lambda: file_version(fs, path), f"reading the version of {source}")
        committed = [_committed(snapshot, p, source, version) for p in range(meta.partitions)]
        resume = _resume_point(committed, lambda: _rejects_reached(ingestion, table, source, version))
        if resume is None:
            receipt.skipped.append(source)
            _report(progress, table, number, len(files), receipt, started)
            continue
        layout = {"rows": chunk_rows, "bytes": chunk_bytes}
        for c in committed:  # a file begun before is cut exactly as then
            if isinstance(c, dict) and isinstance(c.get("layout"), dict):
                layout = c["layout"]
        for index, chunk, last in _chunks_from(fs, path, source, layout, resume):
            accepted, rejected = _ingest_chunk(ingestion, client, table, (source, version), index, chunk, last, layout)
            receipt.accepted += accepted
            receipt.rejected += rejected
            _report(progress, table, number - 1, len(files), receipt, started)
        receipt.ingested.append(source)
        _report(progress, table, number, len(files), receipt, started)
    if progress:
        sys.stderr.write("\n")
    return receipt


def _chunks_from(fs: fsspec.AbstractFileSystem, path: str, source: str, layout: dict,
                 start: int) -> Iterator[tuple[int, Any, bool]]:
    """(index, chunk, whether it is the last) of the file's chunks from chunk ``start`` on.

    A transient failure of the read opens the file again and reads on to
    the chunk it was at (ATTEMPTS failures in a row: StoreUnavailable); any
    other error is raised as it is.
    """
    failures = 0
    while True:
        try:
            iterator = chunks(fs, path, layout["rows"], layout["bytes"])
            current, index = next(iterator), 0
            while current is not None:
                following = next(iterator, None)
                if index >= start:
                    yield index, current, following is None
                    start, failures = index + 1, 0
                current, index = following, index + 1
            return
        except Exception as exc:
            failures += 1
            if not is_transient(exc):
                raise
            if failures == ATTEMPTS:
                raise StoreUnavailable(
                    f"reading {source} failed {failures} times in a row (last: {type(exc).__name__}: {exc}); "
                    "the chunks stored so far stay, and running again goes on from there"
                ) from exc
            time.sleep(backoff(failures))


def _resume_point(committed: list[Any], rejects_reached: Callable[[], int]) -> int | None:
    """The first chunk of a file to send, from every partition's offset for it; None: all of it is stored.

    A run sends a chunk only once the one before is wholly stored, so only the
    last chunk every partition has can lack something: its rejected rows,
    committed to the rejected-rows table apart from the data.
    """
    reached = [c if isinstance(c, dict) else {} for c in committed]
    resume = min(c.get("chunk", 0) for c in reached)
    had_rejects = any(c.get("rejected") for c in reached if c.get("chunk", 0) == resume)  # chunk resume - 1
    if had_rejects and rejects_reached() < resume:
        return resume - 1
    if all(c.get("done") for c in reached):
        return None
    return resume


def _committed(snapshot: Snapshot, partition: int, source: str, version: str) -> Any:
    """A partition's record for this version of a file, else None (another version is another file, in effect)."""
    recorded = snapshot.offsets.get(partition, {}).get(source)
    if isinstance(recorded, dict) and recorded.get("version", "") == version:
        return recorded
    finished = snapshot.finished.get(partition)
    if finished is not None and finished.contains(source, version):  # folded by a checkpoint: wholly stored
        return {"version": version, "chunk": _FOLDED_CHUNK, "done": True}
    return None


def _rejects_reached(ingestion: Ingestion, table: str, source: str, version: str) -> int:
    """How many chunks of this version of ``source`` have their rejected rows for ``table`` stored (up to the last with any)."""
    rejected = ingestion.rejected_client().meta
    key = rejected_batch_id(table, f"{source}@{version}")
    offset = load_snapshot(ingestion.store, rejected).offsets.get(0, {}).get(key)
    if not isinstance(offset, dict):
        return 0
    return offset["last"] + 1 if offset.get("kind") == "sequence" else offset.get("chunk", 0)


def _ingest_chunk(
    ingestion: Ingestion, client: TableClient, table: str, file: tuple[str, str], index: int, data: Any, last: bool,
    layout: dict,
) -> tuple[int, int]:
    """Store chunk ``index`` of ``file`` (source, version): its rows in every partition with the file's offset,
    its rejections apart."""
    source, version = file
    batch_id = f"{source}@{version}#{index}"
    now_us = time.time_ns() // 1000
    result = client.fit(data, now_us)
    offset = FileOffset(source, version=version, chunk=index, last=last, layout=layout, rejected=bool(result.rejected))
    slices = client.slices(result, batch_id, (offset,), every_partition=True, urgent=True)
    if result.rejected:
        reached = SequenceRange(rejected_batch_id(table, f"{source}@{version}"), index, index)  # read back by _rejects_reached
        slices.append(ingestion.rejected_slice(table, batch_id, result, now_us, (reached,), urgent=True))
    ingestion.deliver(slices)
    return result.accepted, len(result.rejected)


def _report(progress: bool, table: str, done: int, total: int, receipt: FilesReceipt, started: float) -> None:
    if not progress:
        return
    elapsed = max(time.monotonic() - started, 1e-9)
    sys.stderr.write(
        f"\ringest_files {table}: {done}/{total} files, {receipt.accepted:,} rows "
        f"({receipt.accepted / elapsed:,.0f} rows/s), {receipt.rejected:,} rejected, "
        f"{len(receipt.skipped)} already ingested"
    )
    sys.stderr.flush()
