"""Reading segments with the filter and projection pushed into the Parquet reader.

A fragment's segments are read as one multi-file ``pyarrow.dataset`` scan
(filter and projection pushed down, pyarrow's threads reading many files
ahead), never one read per segment from Python.  A :class:`SegmentReader`
keeps every segment's parsed Parquet footer (the fragment object with its
row-group metadata, and the stored bytes per column): segments never
change, so a footer read once serves every later query on the same
process.  Segments with older schemas are read under the snapshot's
unified schema: missing columns come back NULL and narrower types are
widened by the reader.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds

from engine.query.execution.memory import read_in_batches, streams
from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry

_FORMAT = ds.ParquetFileFormat()
FILES_AHEAD = 32  # files the scan opens and reads ahead: small segments cost latency, not bandwidth
NO_VALUES = object()  # a segment's bound when it holds no non-NULL value of the column
UNBOUNDED = object()  # a segment's bound when some row group has no statistics for the column


@dataclass(frozen=True)
class Footer:
    """A segment's parsed footer: its Parquet fragment, and the rows and stored bytes per column it holds."""

    fragment: ds.ParquetFileFragment
    rows: int
    row_groups: int
    column_bytes: dict[str, int]

    @classmethod
    def of(cls, fragment: ds.ParquetFileFragment) -> Footer:
        metadata = fragment.metadata
        sizes: dict[str, int] = {}
        start = 0
        for field_ in fragment.physical_schema:
            width = _leaves(field_.type)
            sizes[field_.name] = sum(metadata.row_group(g).column(leaf).total_compressed_size
                                     for g in range(metadata.num_row_groups) for leaf in range(start, start + width))
            start += width
        return cls(fragment, metadata.num_rows, metadata.num_row_groups, sizes)


@dataclass
class ScanStats:
    """What one scan read: segments, the rows and stored bytes of the row groups and columns read, rows returned."""

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
        self._fragments: collections.OrderedDict[str, Footer] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def footer(self, table_path: str, segment: SegmentEntry, stats: ScanStats | None = None) -> Footer:
        """The segment's parsed footer, read once and kept."""
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
        footer = Footer.of(fragment)
        with self._lock:
            self._fragments[key] = footer
            while len(self._fragments) > self._cache_size:
                self._fragments.popitem(last=False)
        return footer

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
        stored: list[str] | None = None,
        charge: Callable[[int], None] | None = None,
        options: dict[str, int] | None = None,
    ) -> pa.Table:
        """Rows of ``segments`` passing ``filter``, as ``columns`` (names or named expressions).

        With ``limit`` the read stops once that many rows were produced;
        ``check`` runs between record batches and may raise to abandon the read.
        ``stats`` gets the rows and bytes of the row groups and columns the
        reader actually reads (``stored`` names the stored columns the
        expressions use; without it, a list of names, or else every column).
        ``charge`` is told the bytes of every batch read, before the next is
        read, and may raise to stop the read (a query's memory bound);
        ``options`` are scanner options that go with it (less read-ahead).
        """
        stats = stats if stats is not None else ScanStats()
        footers = [self.footer(table_path, s, stats) for s in segments]
        fragments = [f.fragment for f in footers]
        dataset = ds.FileSystemDataset(fragments, schema, _FORMAT, self.filesystem)
        stats.segments += len(segments)
        if stored is None and isinstance(columns, list):
            stored = columns
        if limit is not None:
            table = self._head(fragments, schema, columns, filter, limit, stats, check, stored, charge) \
                if fragments else _empty(dataset, columns, filter)
            stats.rows_out += table.num_rows
            return table
        for footer in footers:
            if filter is None or footer.row_groups == 1:  # read whole (the planner pruned by the same statistics)
                stats.rows_read += footer.rows
                stats.bytes_read += sum(footer.column_bytes.get(c, 0) for c in stored) if stored is not None \
                    else sum(footer.column_bytes.values())
            else:
                _count_read(footer.fragment, _row_groups(footer.fragment, filter, schema), stats, stored)
        if charge is not None and fragments and streams(footers):
            table = read_in_batches(self.filesystem, footers, schema, columns, filter, stored or schema.names, charge,
                                    check, lambda fragment: _row_groups(fragment, filter, schema))
        elif (check is None and charge is None) or not fragments:
            table = dataset.to_table(columns=columns, filter=filter, fragment_readahead=FILES_AHEAD)
        else:
            scanner = dataset.scanner(columns=columns, filter=filter,
                                      **{"fragment_readahead": FILES_AHEAD, **(options or {})})
            batches = []
            for batch in scanner.to_batches():
                if check is not None:
                    check()
                if charge is not None:
                    charge(batch.nbytes)
                batches.append(batch)
            table = pa.Table.from_batches(batches, schema=scanner.projected_schema)
        stats.rows_out += table.num_rows
        return table

    def _head(self, fragments: list[ds.ParquetFileFragment], schema: pa.Schema, columns, filter, limit: int,
              stats: ScanStats, check: Callable[[], None] | None, stored: list[str] | None,
              charge: Callable[[int], None] | None = None) -> pa.Table:
        """The first ``limit`` rows, reading one row group after another and no further than needed."""
        batch = min(max(limit, 4096), 131_072)  # small batches: only the first rows of a row group are decoded
        parts, remaining = [], limit
        for fragment in fragments:
            for piece in fragment.split_by_row_group(filter, schema=schema):
                if remaining <= 0:
                    break
                if check is not None:
                    check()
                part = ds.FileSystemDataset([piece], schema, _FORMAT, self.filesystem).head(
                    remaining, columns=columns, filter=filter, batch_size=batch)
                _count_read(fragment, [g.id for g in piece.row_groups], stats, stored)
                if charge is not None:
                    charge(part.nbytes)
                parts.append(part)
                remaining -= part.num_rows
            if remaining <= 0:
                break
        if not parts:
            return _empty(ds.FileSystemDataset(fragments, schema, _FORMAT, self.filesystem), columns, filter)
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _row_groups(fragment: ds.ParquetFileFragment, filter, schema: pa.Schema) -> list[int]:
    """The row groups of ``fragment`` that the reader reads for ``filter`` (the rest its statistics rule out)."""
    if filter is None:
        return list(range(fragment.metadata.num_row_groups))
    return [g.id for piece in fragment.split_by_row_group(filter, schema=schema) for g in piece.row_groups]


_BOUNDS: collections.OrderedDict[tuple[str, str, bool], object] = collections.OrderedDict()
_BOUNDS_KEPT = 100_000
_BOUNDS_LOCK = threading.Lock()


def segment_bound(footer: Footer, column: str, highest: bool) -> object:
    """The largest (``highest``) or smallest value of ``column`` the segment's row-group statistics allow.

    :data:`NO_VALUES` when the segment holds no non-NULL value of it (or
    not the column at all), :data:`UNBOUNDED` when a row group with values
    has no statistics (or the column is nested).  NaNs are left out of
    Parquet's statistics, as they are out of a top-k's values.  Kept per
    file and column (LRU): a segment never changes.
    """
    key = (footer.fragment.path, column, highest)
    with _BOUNDS_LOCK:
        if key in _BOUNDS:
            _BOUNDS.move_to_end(key)
            return _BOUNDS[key]
    value = _bound(footer.fragment, column, highest)
    with _BOUNDS_LOCK:
        _BOUNDS[key] = value
        while len(_BOUNDS) > _BOUNDS_KEPT:
            _BOUNDS.popitem(last=False)
    return value


def _bound(fragment: ds.ParquetFileFragment, column: str, highest: bool) -> object:
    """See :func:`segment_bound`."""
    index = fragment.physical_schema.get_field_index(column)
    if index < 0:
        return NO_VALUES
    leaf = sum(_leaves(f.type) for f in list(fragment.physical_schema)[:index])
    if _leaves(fragment.physical_schema.field(index).type) != 1 \
            or pa.types.is_nested(fragment.physical_schema.field(index).type):
        return UNBOUNDED
    metadata, best = fragment.metadata, NO_VALUES
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(leaf).statistics
        if statistics is None:
            return UNBOUNDED
        if not statistics.has_min_max:
            if statistics.num_values == 0:  # every value NULL
                continue
            return UNBOUNDED
        value = statistics.max if highest else statistics.min
        if best is NO_VALUES or (value > best if highest else value < best):
            best = value
    return best


def _leaves(type_: pa.DataType) -> int:
    """How many Parquet leaf columns a field of ``type_`` is stored as."""
    if pa.types.is_struct(type_):
        return sum(_leaves(type_.field(i).type) for i in range(type_.num_fields))
    if pa.types.is_map(type_):
        return _leaves(type_.key_type) + _leaves(type_.item_type)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        return _leaves(type_.value_type)
    return 1


def _count_read(fragment: ds.ParquetFileFragment, row_groups: list[int], stats: ScanStats,
                stored: list[str] | None) -> None:
    """Add the rows of ``row_groups`` and the stored bytes of their ``stored`` columns to ``stats``."""
    metadata = fragment.metadata
    leaves, start = [], 0
    for field in fragment.physical_schema:
        width = _leaves(field.type)
        if stored is None or field.name in stored:
            leaves.extend(range(start, start + width))
        start += width
    for index in row_groups:
        group = metadata.row_group(index)
        stats.rows_read += group.num_rows
        stats.bytes_read += sum(group.column(leaf).total_compressed_size for leaf in leaves)


def _empty(dataset: ds.Dataset, columns, filter) -> pa.Table:
    return dataset.to_table(columns=columns, filter=filter)
