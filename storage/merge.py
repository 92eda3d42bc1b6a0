"""The streaming k-way merge of sorted segments into sorted segments.

Compaction must not read a whole time bucket into memory.  Each input is read
a batch at a time; a merge step takes, from every input, the rows up to the
smallest of the inputs' current last keys (everything that can come next is
at or after it), sorts that slice with Arrow and emits it.  Memory holds at
most one batch per input plus one row group of output, whatever the size of
the inputs.  Inputs may have different schemas: every batch is conformed to
their union before it is merged.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.objectstore import ObjectStore, fsync_directory
from storage.schema import conform, unify
from storage.segment import (
    DEFAULT_ROW_GROUP_SIZE,
    COMPRESSION,
    ColumnStats,
    SegmentEntry,
    column_encodings,
    column_stats,
    dictionary_columns,
    time_micros,
)
from storage.windows import NULL_WINDOW, Windows

DEFAULT_BATCH_ROWS = 64 * 1024
MIN_BATCH_ROWS = 1024
WHOLE_OBJECT_BYTES = 1024 * 1024  # inputs up to this size are fetched with one request, ahead
FETCH_THREADS = 8


@dataclass
class MergeStats:
    """What one merge read, wrote and held in memory at most."""

    rows: int = 0
    batches_read: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    prefetched_bytes: int = 0  # compressed bytes of small inputs fetched whole, ahead of the merge
    peak_input_rows: int = 0  # rows held in the inputs' current batches at once
    peak_output_rows: int = 0  # rows waiting to be written as a row group

    @property
    def peak_rows(self) -> int:
        return self.peak_input_rows + self.peak_output_rows


def merge_sorted(
    sources: Sequence[Iterator[pa.Table]], sort_key: Sequence[str], stats: MergeStats | None = None
) -> Iterator[pa.Table]:
    """Merge iterators of sorted tables (one schema) into one sorted stream of tables.

    Sorted means ascending by ``sort_key`` with nulls last, as ``Table.sort_by``
    orders them.  No Python code runs per row: each step is a few Arrow
    kernels over the batches currently held.
    """
    stats = stats if stats is not None else MergeStats()
    sources = list(sources)
    keys = [(k, "ascending") for k in sort_key]
    buffers: dict[int, pa.Table] = {}
    live = list(range(len(sources)))
    while True:
        for i in list(live):
            if i in buffers:
                continue
            for batch in sources[i]:
                stats.batches_read += 1
                if batch.num_rows:
                    buffers[i] = batch
                    break
            else:
                live.remove(i)
        if not live:
            return
        stats.peak_input_rows = max(stats.peak_input_rows, sum(b.num_rows for b in buffers.values()))
        if len(live) == 1 or not keys:
            chunk = buffers.pop(live[0])
            stats.rows += chunk.num_rows
            yield chunk
            continue
        lasts = pa.concat_tables([buffers[i].select(sort_key).slice(buffers[i].num_rows - 1, 1) for i in live])
        first = pc.sort_indices(lasts, sort_keys=keys)[0].as_py()
        frontier = [lasts.column(k)[first] for k in sort_key]
        parts = [buffers.pop(live[first])]  # the input whose last key is the frontier is taken whole
        for i in live:
            if i == live[first]:
                continue
            buffer = buffers[i]
            mask = _at_or_before(buffer, sort_key, frontier)
            taken = pc.sum(mask).as_py() or 0
            if taken == 0:
                continue
            if taken == buffer.num_rows:
                parts.append(buffers.pop(i))
            else:
                parts.append(buffer.filter(mask))
                buffers[i] = buffer.filter(pc.invert(mask))
        chunk = parts[0] if len(parts) == 1 else pa.concat_tables(parts).sort_by(keys)
        stats.rows += chunk.num_rows
        yield chunk


def _at_or_before(table: pa.Table, sort_key: Sequence[str], frontier: Sequence[pa.Scalar]) -> pa.Array:
    """Rows of ``table`` whose key is at or before ``frontier`` (nulls last, NaN before nulls)."""
    result = None
    for name, value in reversed(list(zip(sort_key, frontier))):  # build lexicographic (k1, (k2, ...))
        before, equal = _compare(table.column(name), value)
        result = pc.or_(before, equal) if result is None else pc.or_(before, pc.and_(equal, result))
    return result


def _compare(column: pa.ChunkedArray, value: pa.Scalar) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(column sorts before value, column equals value), as non-null booleans."""
    if not value.is_valid:
        return pc.is_valid(column), pc.is_null(column)
    if pa.types.is_floating(column.type):
        nan = pc.fill_null(pc.is_nan(column), False)
        if math.isnan(value.as_py()):
            return pc.and_(pc.is_valid(column), pc.invert(nan)), nan
    return pc.fill_null(pc.less(column, value), False), pc.fill_null(pc.equal(column, value), False)


def segment_batches(
    store: ObjectStore, table_path: str, entry: SegmentEntry, schema: pa.Schema, batch_rows: int,
    stats: MergeStats | None = None, fetched: Future | None = None,
) -> Iterator[pa.Table]:
    """The rows of one segment, ``batch_rows`` at a time, conformed to ``schema``.

    ``fetched``: the whole object's bytes, already being fetched.
    """
    if fetched is not None:
        handle = pa.BufferReader(fetched.result())
    else:
        handle = store.arrow_filesystem().open_input_file(store.arrow_path(f"{table_path}/{entry.path}"))
        store.calls["get"] += 1
    try:
        reader = pq.ParquetFile(handle)
        for batch in reader.iter_batches(batch_size=batch_rows):
            if stats is not None:
                stats.bytes_read += batch.nbytes
            table = pa.Table.from_batches([batch])
            if table.schema.equals(schema, check_metadata=False):  # the usual case: nothing to conform
                yield table.replace_schema_metadata(schema.metadata)
            else:
                yield conform(table, schema)
    finally:
        handle.close()


def _sort_all(sources: list[Iterator[pa.Table]], keys: list[str], stats: MergeStats) -> pa.Table:
    tables = [t for source in sources for t in source]
    stats.batches_read += len(tables)
    table = pa.concat_tables(tables)
    stats.peak_input_rows = max(stats.peak_input_rows, table.num_rows)
    stats.rows += table.num_rows
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


class SegmentSink:
    """Writes one sorted segment row group by row group, keeping its manifest statistics."""

    def __init__(self, store: ObjectStore, table_path: str, folder: str, schema: pa.Schema, *,
                 partition: int, time_column: str, level: int, sort_key: Sequence[str] = (),
                 row_group_size: int = DEFAULT_ROW_GROUP_SIZE, stats: MergeStats | None = None) -> None:
        self.store = store
        self.schema = schema
        self.partition = partition
        self.time_column = time_column
        self.sort_key = tuple(sort_key)
        self.level = level
        self.row_group_size = row_group_size
        self.stats = stats if stats is not None else MergeStats()
        self.id = uuid.uuid4().hex
        self.path = f"{folder}/{self.id}.parquet"
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._columns: dict[str, list] = {f.name: [None, None, 0, True] for f in schema}  # min, max, nulls, known
        self._time = [None, None]
        self._out = _AtomicOutput(store, f"{table_path}/{self.path}")
        self._writer: pq.ParquetWriter | None = None  # opened with the first row group, which picks the encodings

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        self.stats.peak_output_rows = max(self.stats.peak_output_rows, self._pending_rows)
        if self._pending_rows >= self.row_group_size:
            self._flush(final=False)

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def spill(self) -> None:
        """Write the pending rows now as a (shorter) row group, to free their memory."""
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        if not self._pending_rows:
            return
        table = pa.concat_tables(self._pending)
        cut = table.num_rows if final else table.num_rows // self.row_group_size * self.row_group_size
        ready, rest = table.slice(0, cut), table.slice(cut)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self._observe(ready)
        self._open(ready).write_table(ready, row_group_size=self.row_group_size)

    def _open(self, sample: pa.Table) -> pq.ParquetWriter:
        """The file's writer, encoding columns as ingestion does (see ``storage.segment``), chosen from ``sample``."""
        if self._writer is None:
            dictionary = dictionary_columns(sample)
            self._writer = pq.ParquetWriter(
                self._out.stream, self.schema, compression=COMPRESSION, write_statistics=True,
                use_dictionary=dictionary,
                column_encoding=column_encodings(self.schema, (*self.sort_key, self.time_column), dictionary),
            )
        return self._writer

    def _observe(self, table: pa.Table) -> None:
        for name, acc in self._columns.items():
            column = table.column(name)
            part = column_stats(column)
            acc[2] += part.null_count
            if part.null_count == len(column):
                continue
            if part.min is None:
                acc[3] = False
            elif acc[3]:
                acc[0] = part.min if acc[0] is None else min(acc[0], part.min)
                acc[1] = part.max if acc[1] is None else max(acc[1], part.max)
        if self.time_column in table.column_names:
            micros = time_micros(table.column(self.time_column))
            if micros.null_count < len(micros):
                bounds = pc.min_max(micros)
                lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
                self._time = [lo if self._time[0] is None else min(self._time[0], lo),
                              hi if self._time[1] is None else max(self._time[1], hi)]

    def close(self) -> SegmentEntry:
        """Finish the file (it appears whole) and return its manifest entry."""
        self._flush(final=True)
        self._open(self.schema.empty_table()).close()
        size = self._out.commit()
        self.stats.bytes_written += size
        columns = {
            name: ColumnStats(lo if known else None, hi if known else None, nulls)
            for name, (lo, hi, nulls, known) in self._columns.items()
        }
        return SegmentEntry(
            id=self.id, path=self.path, partition=self.partition, rows=self.rows, bytes=size,
            min_time=self._time[0], max_time=self._time[1], columns=columns, schema=self.schema,
            created_at=time.time(), level=self.level,
        )

    def abort(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._out.abort()


class _AtomicOutput:
    """An output stream whose object appears whole on commit: a renamed temp file on
    local disk, a (multipart) upload that completes on close elsewhere."""

    def __init__(self, store: ObjectStore, path: str) -> None:
        self.store = store
        self.full = store.arrow_path(path)
        store.calls["put"] += 1
        if store.protocol == "file":
            os.makedirs(os.path.dirname(self.full), exist_ok=True)
            self.tmp = os.path.join(os.path.dirname(self.full), f".tmp-{uuid.uuid4().hex}")
            self.stream = open(self.tmp, "wb")
        else:
            self.tmp = None
            self.stream = store.arrow_filesystem().open_output_stream(self.full)

    def commit(self) -> int:
        size = self.stream.tell()
        if self.tmp is not None:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
            os.replace(self.tmp, self.full)
            fsync_directory(os.path.dirname(self.full))  # the rename itself survives a power loss
        else:
            self.stream.close()
        return size

    def abort(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)


def merge_segments(
    store: ObjectStore,
    table_path: str,
    inputs: Sequence[SegmentEntry],
    *,
    sort_key: Sequence[str],
    time_column: str,
    rows_per_segment: int,
    memory_rows: int = 1_000_000,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    stats: MergeStats | None = None,
    windows: Windows | None = None,
) -> list[SegmentEntry]:
    """Merge sorted ``inputs`` (one partition) into sorted segments of at most
    ``rows_per_segment`` rows; returns their entries.

    With ``windows``, no output holds rows of two windows: each goes to its
    window's ``data/<folder>``.  Without, every output goes next to the first
    input.  At most ``memory_rows`` input rows are held at once (split across
    the inputs), plus one row group per output being written.
    """
    if not inputs:
        return []
    stats = stats if stats is not None else MergeStats()
    schema = unify(e.schema for e in inputs)
    keys = [k for k in sort_key if k in schema.names]
    batch_rows = max(MIN_BATCH_ROWS, min(DEFAULT_BATCH_ROWS, memory_rows // len(inputs)))
    router = _Router(store, table_path, schema, inputs, windows, time_column=time_column, sort_key=sort_key,
                     rows_per_segment=rows_per_segment, row_group_size=row_group_size, stats=stats,
                     in_time_order=bool(keys) and keys[0] == time_column, memory_rows=memory_rows)
    fetcher = ThreadPoolExecutor(max_workers=FETCH_THREADS)
    try:
        sources = []
        for entry in inputs:
            fetched = None
            if entry.bytes <= WHOLE_OBJECT_BYTES:
                fetched = fetcher.submit(store.get, f"{table_path}/{entry.path}")
                stats.prefetched_bytes += entry.bytes
            sources.append(segment_batches(store, table_path, entry, schema, batch_rows, stats, fetched))
        if sum(e.rows for e in inputs) <= memory_rows:  # it all fits the budget: one sort does it
            chunks = [_sort_all(sources, keys, stats)]
        else:
            chunks = merge_sorted(sources, keys, stats)
        for chunk in chunks:
            router.write(chunk)
        return router.close()
    finally:
        fetcher.shutdown(wait=True, cancel_futures=True)
        router.abort()


class _Router:
    """Sends a sorted stream of rows to output segments: one per window, cut by size."""

    def __init__(self, store: ObjectStore, table_path: str, schema: pa.Schema, inputs: Sequence[SegmentEntry],
                 windows: Windows | None, *, time_column: str, sort_key: Sequence[str], rows_per_segment: int,
                 row_group_size: int, stats: MergeStats, in_time_order: bool, memory_rows: int) -> None:
        self.store, self.table_path, self.schema = store, table_path, schema
        self.windows = windows
        self.time_column = time_column if time_column in schema.names else None
        self.sort_key = sort_key
        self.rows_per_segment = rows_per_segment
        self.row_group_size = min(row_group_size, rows_per_segment)
        self.stats = stats
        self.in_time_order = in_time_order
        self.memory_rows = memory_rows
        self.partition = inputs[0].partition
        self.level = max(e.level for e in inputs) + 1
        self.folder = inputs[0].path.rsplit("/", 1)[0]
        self.sinks: dict[int, SegmentSink] = {}
        self.entries: list[SegmentEntry] = []

    def write(self, chunk: pa.Table) -> None:
        for window, part in self._split(chunk):
            if self.in_time_order:  # every earlier window is complete
                for done in [w for w in self.sinks if w < window]:
                    self.entries.append(self.sinks.pop(done).close())
            while part.num_rows:
                sink = self.sinks.get(window)
                if sink is None:
                    folder = self.folder if self.windows is None else f"data/{self.windows.folder(window)}"
                    sink = self.sinks[window] = SegmentSink(
                        self.store, self.table_path, folder, self.schema, partition=self.partition,
                        time_column=self.time_column or "", level=self.level, sort_key=self.sort_key,
                        row_group_size=self.row_group_size, stats=self.stats)
                room = self.rows_per_segment - sink.rows
                sink.write(part.slice(0, room))
                part = part.slice(room)
                if sink.rows >= self.rows_per_segment:
                    self.entries.append(self.sinks.pop(window).close())
        self._bound_memory()

    def _split(self, chunk: pa.Table) -> list[tuple[int, pa.Table]]:
        """(window, rows of ``chunk`` in it), in window order; each part keeps the chunk's order."""
        if self.windows is None or self.time_column is None or not chunk.num_rows:
            return [(0, chunk)] if chunk.num_rows else []
        micros = time_micros(chunk.column(self.time_column))
        starts = self.windows.starts(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False))
        if micros.null_count:
            starts = np.where(micros.is_null().to_numpy(zero_copy_only=False), NULL_WINDOW, starts)
        if starts[0] == starts[-1] and (starts == starts[0]).all():
            return [(int(starts[0]), chunk)]
        if (np.diff(starts) >= 0).all():  # in time order: contiguous runs
            cuts = [0, *(np.flatnonzero(np.diff(starts)) + 1).tolist(), len(starts)]
            return [(int(starts[a]), chunk.slice(a, b - a)) for a, b in zip(cuts, cuts[1:])]
        return [(int(w), chunk.filter(pa.array(starts == w))) for w in np.unique(starts)]

    def _bound_memory(self) -> None:
        """Write out the largest pending row groups while the open outputs hold more than the budget."""
        while len(self.sinks) > 1 and sum(s.pending_rows for s in self.sinks.values()) > self.memory_rows:
            max(self.sinks.values(), key=lambda s: s.pending_rows).spill()

    def close(self) -> list[SegmentEntry]:
        for window in sorted(self.sinks):
            self.entries.append(self.sinks.pop(window).close())
        return self.entries

    def abort(self) -> None:
        for sink in self.sinks.values():
            sink.abort()
        self.sinks.clear()
