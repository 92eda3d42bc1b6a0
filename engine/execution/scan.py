"""Reading segments with the filter and projection pushed into the Parquet reader.

A :class:`SegmentReader` keeps every segment's parsed Parquet footer (the
fragment object with its row-group metadata): segments never change, so a
footer read once serves every later query on the same process.  Segments
with older schemas are read under the snapshot's unified schema: missing
columns come back NULL and narrower types are widened by the reader.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds

from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry

_FORMAT = ds.ParquetFileFormat()


@dataclass
class ScanStats:
    """What one scan read: segments, their rows and bytes, and the rows it returned."""

    segments: int = 0
    rows_read: int = 0
    bytes_read: int = 0
    rows_out: int = 0
    footer_hits: int = 0
    extra: dict = field(default_factory=dict)


class SegmentReader:
    """Reads segments of one warehouse, caching Parquet footers (LRU)."""

    def __init__(self, store: ObjectStore, cache_size: int = 20_000) -> None:
        self.store = store
        self.filesystem = store.arrow_filesystem()
        self._fragments: collections.OrderedDict[str, ds.ParquetFileFragment] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def fragment(self, table_path: str, segment: SegmentEntry, stats: ScanStats | None = None) -> ds.ParquetFileFragment:
        """The segment's Parquet fragment, with its footer parsed once and kept."""
        key = f"{table_path}/{segment.path}"
        with self._lock:
            cached = self._fragments.get(key)
            if cached is not None:
                self._fragments.move_to_end(key)
                if stats is not None:
                    stats.footer_hits += 1
                return cached
        fragment = _FORMAT.make_fragment(self.store.arrow_path(key), self.filesystem)
        fragment.ensure_complete_metadata()
        with self._lock:
            self._fragments[key] = fragment
            while len(self._fragments) > self._cache_size:
                self._fragments.popitem(last=False)
        return fragment

    def read(
        self,
        table_path: str,
        schema: pa.Schema,
        segments: tuple[SegmentEntry, ...] | list[SegmentEntry],
        columns: list[str] | dict[str, object],
        filter: object | None = None,
        limit: int | None = None,
        stats: ScanStats | None = None,
        check: Callable[[], None] | None = None,
    ) -> pa.Table:
        """Rows of ``segments`` passing ``filter``, as ``columns`` (names or named expressions).

        With ``limit`` the read stops once that many rows were produced;
        ``check`` runs between record batches and may raise to abandon the read.
        """
        stats = stats if stats is not None else ScanStats()
        fragments = [self.fragment(table_path, s, stats) for s in segments]
        dataset = ds.FileSystemDataset(fragments, schema, _FORMAT, self.filesystem)
        stats.segments += len(segments)
        stats.rows_read += sum(s.rows for s in segments)
        stats.bytes_read += sum(s.bytes for s in segments)
        if limit is not None:
            # small batches: the reader decodes only the first rows of a row group, not all of it
            batch = min(max(limit, 4096), 131_072)
            table = (dataset.head(limit, columns=columns, filter=filter, batch_size=batch, fragment_readahead=1)
                     if fragments else _empty(dataset, columns, filter))
        elif check is None or not fragments:
            table = dataset.to_table(columns=columns, filter=filter)
        else:
            scanner = dataset.scanner(columns=columns, filter=filter)
            batches = []
            for batch in scanner.to_batches():
                check()
                batches.append(batch)
            table = pa.Table.from_batches(batches, schema=scanner.projected_schema)
        stats.rows_out += table.num_rows
        return table


def _empty(dataset: ds.Dataset, columns, filter) -> pa.Table:
    return dataset.to_table(columns=columns, filter=filter)
