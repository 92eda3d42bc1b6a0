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
import functools
import json
import threading
from typing import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from engine.query.execution.memory import read_in_batches, streams
from storage.errors import SegmentMissing
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
    dictionary_encoded: frozenset[str] = frozenset()  # string columns stored as dictionaries in every row group

    @classmethod
    def of(cls, fragment: ds.ParquetFileFragment) -> Footer:
        metadata = fragment.metadata
        sizes: dict[str, int] = {}
        encoded = set()
        start = 0
        groups = [metadata.row_group(g) for g in range(metadata.num_row_groups)]
        for field_ in fragment.physical_schema:
            width = _leaves(field_.type)
            sizes[field_.name] = sum(group.column(leaf).total_compressed_size
                                     for group in groups for leaf in range(start, start + width))
            if pa.types.is_string(field_.type) and all(group.column(start).has_dictionary_page for group in groups):
                encoded.add(field_.name)
            start += width
        return cls(fragment, metadata.num_rows, metadata.num_row_groups, sizes, frozenset(encoded))


@dataclass(frozen=True)
class RowGroup:
    """One row group of a segment: its index, first row, rows, and time range in microseconds (None: unknown)."""

    index: int
    first: int
    rows: int
    min_time: int | None
    max_time: int | None


_TO_MICROS = {"milliseconds": (1000, 1), "microseconds": (1, 1), "nanoseconds": (1, 1000)}


def _scaled(raw: int, scale: tuple[int, int], floor: bool) -> int:
    """A raw Parquet timestamp as microseconds (rounded outward, so the range still holds every row)."""
    multiply, divide = scale
    value = raw * multiply
    return value // divide if floor else -(-value // divide)


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
        self._dictionary_fragments: collections.OrderedDict[tuple, ds.ParquetFileFragment] = collections.OrderedDict()
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

    def _dictionary_fragment(self, table_path: str, segment: SegmentEntry, columns: tuple[str, ...]
                             ) -> ds.ParquetFileFragment:
        """``segment`` as a fragment that reads ``columns`` as Arrow dictionaries (kept like footers)."""
        key = (f"{table_path}/{segment.path}", columns)
        with self._lock:
            cached = self._dictionary_fragments.get(key)
            if cached is not None:
                self._dictionary_fragments.move_to_end(key)
                return cached
        fragment = _dictionary_format(columns).make_fragment(self.store.arrow_path(key[0]), self.filesystem)
        fragment.ensure_complete_metadata()
        with self._lock:
            self._dictionary_fragments[key] = fragment
            while len(self._dictionary_fragments) > self._cache_size:
                self._dictionary_fragments.popitem(last=False)
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
        stored: list[str] | None = None,
        charge: Callable[[int], None] | None = None,
        options: dict[str, int] | None = None,
        dictionary: tuple[str, ...] = (),
    ) -> pa.Table:
        """Rows of ``segments`` passing ``filter``, as ``columns`` (names or named expressions).

        ``dictionary`` names string columns the caller takes as Arrow
        dictionaries: those stored dictionary-encoded in every segment come
        back so, without decoding a string per row (a group-by over them
        then hashes small integers).  A bounded or limited read ignores it.

        With ``limit`` the read stops once that many rows were produced;
        ``check`` runs between record batches and may raise to abandon the read.
        ``stats`` gets the rows and bytes of the row groups and columns the
        reader actually reads (``stored`` names the stored columns the
        expressions use; without it, a list of names, or else every column).
        ``charge`` is told the bytes of every batch read, before the next is
        read, and may raise to stop the read (a query's memory bound);
        ``options`` are scanner options that go with it (less read-ahead).
        SegmentMissing if a segment's file is not there (a real absence: transient
        store failures are retried underneath, see ``storage.transient``).
        """
        try:
            return self._read(table_path, schema, segments, columns, filter, limit, stats, check, stored, charge,
                              options, dictionary)
        except FileNotFoundError as exc:
            raise SegmentMissing(
                f"a segment of {table_path} that the query's snapshot lists is not in the object store "
                f"({exc}); vacuum may have deleted it after the snapshot was read"
            ) from None

    def _read(self, table_path: str, schema: pa.Schema, segments: tuple[SegmentEntry, ...] | list[SegmentEntry],
              columns: list[str] | dict[str, object], filter: object | None, limit: int | None,
              stats: ScanStats | None, check: Callable[[], None] | None, stored: list[str] | None,
              charge: Callable[[int], None] | None, options: dict[str, int] | None,
              dictionary: tuple[str, ...]) -> pa.Table:
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
        dictionary = tuple(c for c in dictionary if footers and all(c in f.dictionary_encoded for f in footers))
        if dictionary and charge is None:
            fragments = [self._dictionary_fragment(table_path, s, dictionary) for s in segments]
            for name in dictionary:
                schema = schema.set(schema.get_field_index(name),
                                    schema.field(name).with_type(pa.dictionary(pa.int32(), pa.string())))
            dataset = ds.FileSystemDataset(fragments, schema, _dictionary_format(dictionary), self.filesystem)
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

    def row_groups(self, table_path: str, segment: SegmentEntry, time_column: str) -> list[RowGroup]:
        """``segment``'s row groups in file order, each with its first row and its time range (from statistics)."""
        metadata = self.footer(table_path, segment).fragment.metadata
        leaf = next((j for j in range(metadata.num_columns) if metadata.schema.column(j).path == time_column), None)
        scale = None
        if leaf is not None:
            logical = json.loads(metadata.schema.column(leaf).logical_type.to_json())
            scale = _TO_MICROS.get(logical.get("timeUnit")) if logical.get("Type") == "Timestamp" else None
        groups, first = [], 0
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            low = high = None
            statistics = group.column(leaf).statistics if scale is not None else None
            if statistics is not None and statistics.has_min_max:
                low, high = _scaled(statistics.min_raw, scale, floor=True), _scaled(statistics.max_raw, scale, floor=False)
            groups.append(RowGroup(index, first, group.num_rows, low, high))
            first += group.num_rows
        return groups

    def read_group(self, table_path: str, schema: pa.Schema, segment: SegmentEntry, columns: list[str], group: int,
                   stats: ScanStats | None = None) -> pa.Table:
        """One row group of ``segment``, as the stored ``columns`` (under ``schema``, as :meth:`read` reads them)."""
        stats = stats if stats is not None else ScanStats()
        fragment = self.footer(table_path, segment, stats).fragment
        piece = fragment.subset(row_group_ids=[group])
        table = ds.FileSystemDataset([piece], schema, _FORMAT, self.filesystem).to_table(columns=columns)
        _count_read(fragment, [group], stats, columns)
        return table

    def read_positions(self, table_path: str, schema: pa.Schema, segment: SegmentEntry, columns: list[str],
                       positions: pa.Array, stats: ScanStats | None = None) -> pa.Table:
        """The rows at ``positions`` (row numbers within ``segment``) of the stored ``columns``, in that order.

        Each row group is decoded only up to the last row wanted: Parquet's
        record batch reader decodes page by page, so the first rows of a
        wide row group cost a page per column, not the whole group.  (A
        dataset scan with a filter decodes every row group it cannot rule
        out whole.)  Columns the segment lacks come back NULL, narrower
        types widened, as :meth:`read` does.
        """
        stats = stats if stats is not None else ScanStats()
        if isinstance(positions, pa.ChunkedArray):
            positions = positions.combine_chunks()
        footer = self.footer(table_path, segment, stats)
        metadata = footer.fragment.metadata
        physical = set(footer.fragment.physical_schema.names)
        present = [c for c in columns if c in physical]
        order = pc.sort_indices(positions)
        wanted = positions.take(order).to_numpy(zero_copy_only=False)
        parts: list[pa.Table] = []
        remote = self.filesystem.type_name != "local"  # on object storage, fetch each group's chunks in one go
        with self.filesystem.open_input_file(self.store.arrow_path(f"{table_path}/{segment.path}")) as source:
            parquet = pq.ParquetFile(source, metadata=metadata, pre_buffer=remote)
            start = taken = 0
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                end = taken
                while end < len(wanted) and wanted[end] < start + rows:
                    end += 1
                if end > taken:
                    local = wanted[taken:end] - start
                    needed = int(local[-1]) + 1
                    batches, read = [], 0
                    for batch in parquet.iter_batches(batch_size=needed, row_groups=[group], columns=present):
                        batches.append(batch)
                        read += batch.num_rows
                        if read >= needed:
                            break
                    parts.append(pa.Table.from_batches(batches).take(pa.array(local)))
                    stats.rows_read += needed
                    stats.bytes_read += sum(footer.column_bytes.get(c, 0) for c in present) * needed // max(
                        footer.rows, 1)
                taken = end
                start += rows
        if not parts:
            return pa.Table.from_batches([], schema=pa.schema([schema.field(c) for c in columns]))
        found = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        found = found.take(pc.sort_indices(order))  # back to the order asked
        arrays = []
        for name in columns:
            type_ = schema.field(name).type
            if name not in present:
                arrays.append(pa.nulls(found.num_rows, type_))
            else:
                column = found.column(name)
                arrays.append(column if column.type == type_ else column.cast(type_))
        table = pa.Table.from_arrays(arrays, schema=pa.schema([schema.field(c) for c in columns]))
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


@functools.lru_cache(maxsize=64)
def _dictionary_format(columns: tuple[str, ...]) -> ds.ParquetFileFormat:
    """A Parquet format that reads ``columns`` as Arrow dictionaries."""
    return ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(columns)))


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
