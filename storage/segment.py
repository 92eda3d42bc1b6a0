"""Segments: immutable, sorted Parquet files and their manifest entries.

A segment holds the rows of one partition and one time bucket, sorted by the
table's sort key (time last).  Its :class:`SegmentEntry` — what the commit log
records — carries everything the planner needs to prune it without opening
it: row and byte counts, the time range, and per-column min/max/null counts.
"""

from __future__ import annotations

import decimal
import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.objectstore import ObjectStore
from storage.schema import schema_from_json, schema_to_json

DEFAULT_ROW_GROUP_SIZE = 128 * 1024
BUCKET_SECONDS = 3600
_MAX_STAT_STRING = 64
_DICTIONARY_SAMPLE_ROWS = 2048
_DICTIONARY_MAX_DISTINCT = 0.25  # of the sampled rows
# Strings such as URLs, titles and phrases repeat across a row group far more than within a few thousand rows
# (a skewed distribution keeps meeting new values in a small sample); their dictionary is what lets a query
# test or group each distinct string once.  Only nearly unique ones (ids, messages) are left plain.
_DICTIONARY_MAX_DISTINCT_STRINGS = 0.9
_US_PER_S = 1_000_000
COMPRESSION = "lz4"  # of every segment; why not zstd: docs/benchmarks.md ("Design measurements")


@dataclass(frozen=True)
class ColumnStats:
    """Min, max and null count of one column in one segment (min/max None if unknown)."""

    min: Any
    max: Any
    null_count: int


@dataclass(frozen=True)
class SegmentEntry:
    """The manifest entry of one segment, as the commit log stores it."""

    id: str
    path: str
    partition: int
    rows: int
    bytes: int
    min_time: int | None
    max_time: int | None
    columns: dict[str, ColumnStats]
    schema: pa.Schema
    created_at: float = field(default_factory=time.time)
    level: int = 0  # how many compactions its rows went through (0: as ingested)

    def to_json(self) -> dict[str, Any]:
        """The entry as the log records it; built once (an entry never changes), so do not modify it.

        Every checkpoint records every live segment again: encoding their
        statistics anew each time was most of a checkpoint's cost.
        """
        record = self.__dict__.get("_json")
        if record is None:
            record = self._record()
            object.__setattr__(self, "_json", record)
        return record

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_json"}  # entries travel to query workers

    def _record(self) -> dict[str, Any]:
        record = {
            "id": self.id,
            "path": self.path,
            "partition": self.partition,
            "rows": self.rows,
            "bytes": self.bytes,
            "min_time": self.min_time,
            "max_time": self.max_time,
            "columns": {
                name: [_encode(s.min, self.schema.field(name).type), _encode(s.max, self.schema.field(name).type), s.null_count]
                for name, s in self.columns.items()
            },
            "schema": schema_to_json(self.schema),
            "created_at": self.created_at,
        }
        if self.level:
            record["level"] = self.level
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> SegmentEntry:
        schema = schema_from_json(record["schema"])
        columns = {
            name: ColumnStats(
                _decode(lo, schema.field(name).type), _decode(hi, schema.field(name).type), int(nulls)
            )
            for name, (lo, hi, nulls) in record["columns"].items()
        }
        return cls(
            id=record["id"],
            path=record["path"],
            partition=int(record["partition"]),
            rows=int(record["rows"]),
            bytes=int(record["bytes"]),
            min_time=record["min_time"],
            max_time=record["max_time"],
            columns=columns,
            schema=schema,
            created_at=float(record.get("created_at") or 0.0),
            level=int(record.get("level") or 0),
        )


def _encode(value: Any, type_: pa.DataType) -> Any:
    """A JSON value for a stat of ``type_`` (timestamps and dates as integers)."""
    if value is None:
        return None
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_) or pa.types.is_time(type_) or pa.types.is_duration(type_):
        return pa.scalar(value, type_).cast(pa.int64() if type_.bit_width == 64 else pa.int32()).as_py()
    if pa.types.is_decimal(type_):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _decode(value: Any, type_: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_timestamp(type_) or pa.types.is_date(type_) or pa.types.is_time(type_) or pa.types.is_duration(type_):
        return pa.scalar(value, pa.int64() if type_.bit_width == 64 else pa.int32()).cast(type_).as_py()
    if pa.types.is_decimal(type_):
        return decimal.Decimal(value)
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        return bytes.fromhex(value)
    return value


def column_stats(column: pa.ChunkedArray | pa.Array) -> ColumnStats:
    """The manifest statistics of one column of a segment (or of a part of one)."""
    return _stats_of(column)


def _string_bounds(metadata: pq.FileMetaData, table: pa.Table) -> dict[str, tuple[str, str]]:
    """Min and max of the string columns, as the Parquet writer computed them while encoding.

    Parquet compares byte arrays as unsigned bytes, which for UTF-8 is the
    order ``pyarrow.compute.min_max`` uses; a column any of whose row groups
    lacks bounds is left out (and computed by :func:`_stats_of`).
    """
    wanted = {
        name: index
        for index, name in enumerate(metadata.schema.names)
        if name in table.column_names and pa.types.is_string(table.schema.field(name).type)
    }
    bounds: dict[str, tuple[str, str]] = {}
    for name, index in wanted.items():
        lows, highs = [], []
        for group in range(metadata.num_row_groups):
            column = metadata.row_group(group).column(index)
            stats = column.statistics
            if column.path_in_schema != name or stats is None or not stats.has_min_max:
                if stats is not None and stats.null_count == column.num_values:
                    continue  # all null in this row group
                break
            lows.append(stats.min)
            highs.append(stats.max)
        else:
            if lows:
                bounds[name] = (min(lows), max(highs))
    return bounds


def _stats_of(column: pa.ChunkedArray, known: tuple[Any, Any] | None = None) -> ColumnStats:
    """A column's statistics; ``known`` are its min and max when they were computed already."""
    nulls = column.null_count
    if known is not None:
        lo, hi = known
        if len(lo) > _MAX_STAT_STRING or len(hi) > _MAX_STAT_STRING:
            return ColumnStats(None, None, nulls)
        return ColumnStats(lo, hi, nulls)
    type_ = column.type
    orderable = (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_timestamp(type_)
        or pa.types.is_date(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_decimal(type_)
    )
    if not orderable or nulls == len(column):
        return ColumnStats(None, None, nulls)
    bounds = pc.min_max(column)
    try:
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    except (OverflowError, ValueError, OSError):  # a time Python cannot hold (year 0 or 20000): bounds unknown
        return ColumnStats(None, None, nulls)
    if isinstance(lo, float) and (lo != lo or hi != hi):  # NaN: no usable bounds
        return ColumnStats(None, None, nulls)
    if isinstance(lo, str) and (len(lo) > _MAX_STAT_STRING or len(hi) > _MAX_STAT_STRING):
        return ColumnStats(None, None, nulls)
    return ColumnStats(lo, hi, nulls)


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UNIT_FACTORS = {"s": (_US_PER_S, 1), "ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}  # (multiply, floor-divide)


def time_micros(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The values of a timestamp (or date) column as int64 microseconds since the epoch.

    Never raises on a value out of range: a time beyond what int64
    microseconds hold (a ``timestamp[s]`` of 1e13, say) saturates at the
    int64 bounds instead of wrapping, and nanoseconds round down.
    """
    type_ = column.type
    if pa.types.is_timestamp(type_):
        multiply, divide = _UNIT_FACTORS[type_.unit]
        raw = pc.cast(column, pa.int64())
    elif pa.types.is_date32(type_):
        multiply, divide = 86_400 * _US_PER_S, 1
        raw = pc.cast(column, pa.int32()).cast(pa.int64())
    elif pa.types.is_date64(type_):
        multiply, divide = 1000, 1
        raw = pc.cast(column, pa.int64())
    else:
        return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks() if raw.num_chunks else pa.array([], pa.int64())
    if multiply == 1 and divide == 1:
        return raw
    values = pc.fill_null(raw, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if multiply > 1:
        values = np.clip(values, _INT64_MIN // multiply, _INT64_MAX // multiply) * multiply
    else:
        values = values // divide
    mask = raw.is_null().to_numpy(zero_copy_only=False) if raw.null_count else None
    return pa.array(values, pa.int64(), mask=mask)


def bucket_of(micros: int) -> str:
    """The time-bucket folder name of an instant in microseconds (UTC, hourly)."""
    seconds = (micros // _US_PER_S) // BUCKET_SECONDS * BUCKET_SECONDS
    return time.strftime("%Y-%m-%dT%H", time.gmtime(seconds))


def split_by_bucket(table: pa.Table, time_column: str) -> list[pa.Table]:
    """``table`` cut into one table per hourly time bucket (rows keep their order)."""
    if table.num_rows == 0:
        return []
    micros = time_micros(table.column(time_column)).to_numpy(zero_copy_only=False)
    # floor division, as bucket_of rounds: an instant before 1970 belongs to the hour that starts before it
    buckets = micros // (BUCKET_SECONDS * _US_PER_S)
    values = np.unique(buckets)
    if len(values) == 1:
        return [table]
    return [table.filter(pa.array(buckets == value)) for value in values]


def dictionary_columns(table: pa.Table) -> list[str]:
    """The columns worth dictionary-encoding: those whose sampled values repeat a lot.

    Parquet tries a dictionary for every column chunk and falls back to plain
    encoding when it grows too big; on high-cardinality columns (ids, messages,
    latencies) that attempt is most of the write's cost, and it buys nothing.
    """
    sample = table.slice(0, _DICTIONARY_SAMPLE_ROWS)
    limit = max(1, int(sample.num_rows * _DICTIONARY_MAX_DISTINCT))
    strings = max(1, int(sample.num_rows * _DICTIONARY_MAX_DISTINCT_STRINGS))
    chosen = []
    for name, column in zip(sample.column_names, sample.columns):
        type_ = column.type
        if pa.types.is_nested(type_) or pa.types.is_boolean(type_) or pa.types.is_null(type_):
            continue
        bound = strings if pa.types.is_string(type_) or pa.types.is_large_string(type_) else limit
        if pa.types.is_dictionary(type_) or pc.count_distinct(column, mode="all").as_py() <= bound:
            chosen.append(name)
    return chosen


def column_encodings(schema: pa.Schema, sorted_by: Sequence[str], dictionary: Sequence[str]) -> dict[str, str]:
    """The Parquet encoding of the columns a segment is sorted by, where they delta-encode well.

    Integer, timestamp, date and time columns of the sort key (the time
    column last, or alone by default) get DELTA_BINARY_PACKED: sorted, their
    differences take a few bits where plain encoding takes eight bytes, and
    the codec then has a fraction of the bytes to compress.  Other columns, and
    those in ``dictionary``, keep Parquet's default (plain, or the
    dictionary); why not every integer column is in docs/benchmarks.md
    ("Design measurements").
    """
    keys = set(sorted_by) - set(dictionary)
    return {
        field.name: "DELTA_BINARY_PACKED"
        for field in schema
        if field.name in keys
        and (
            pa.types.is_integer(field.type)
            or pa.types.is_timestamp(field.type)
            or pa.types.is_date(field.type)
            or pa.types.is_time(field.type)
        )
    }


def write_segment(store: ObjectStore, table_path: str, table: pa.Table, **options: Any) -> SegmentEntry:
    """Sort ``table``, write it as one Parquet segment, and describe it (options: :func:`encode_segment`)."""
    entry, data = encode_segment(table, **options)
    store.put(f"{table_path}/{entry.path}", data)
    return entry


def encode_segment(
    table: pa.Table,
    *,
    partition: int,
    time_column: str,
    sort_key: tuple[str, ...] = (),
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    sorted_already: bool = False,
    dictionary: list[str] | None = None,
    folder: str | None = None,
) -> tuple[SegmentEntry, bytes]:
    """Sort ``table`` by ``sort_key`` and encode it: the segment's manifest entry and Parquet bytes, not yet stored.

    ``dictionary``: the columns to dictionary-encode, if already chosen (by
    default :func:`dictionary_columns` samples the table).  ``folder``: the
    ``data/<folder>`` it goes in (by default the hour of its first event).
    """
    if not sorted_already and table.num_rows > 1:
        keys = [(k, "ascending") for k in sort_key if k in table.column_names]
        if keys:
            table = table.sort_by(keys)
    micros = time_micros(table.column(time_column)) if time_column in table.column_names else None
    min_time = max_time = None
    if micros is not None and micros.null_count < len(micros):
        bounds = pc.min_max(micros)
        min_time, max_time = bounds["min"].as_py(), bounds["max"].as_py()
    segment_id = uuid.uuid4().hex
    bucket = folder or (bucket_of(min_time) if min_time is not None else "unknown")
    if dictionary is None:
        dictionary = dictionary_columns(table)
    sink = io.BytesIO()
    written: list[pq.FileMetaData] = []
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        row_group_size=row_group_size,
        write_statistics=True,
        use_dictionary=dictionary,
        column_encoding=column_encodings(table.schema, (*sort_key, time_column), dictionary),
        metadata_collector=written,
    )
    data = sink.getvalue()
    strings = _string_bounds(written[0], table)
    entry = SegmentEntry(
        id=segment_id,
        path=f"data/{bucket}/{segment_id}.parquet",
        partition=partition,
        rows=table.num_rows,
        bytes=len(data),
        min_time=min_time,
        max_time=max_time,
        columns={name: _stats_of(table.column(name), strings.get(name)) for name in table.column_names},
        schema=table.schema,
    )
    return entry, data


def read_segment(
    store: ObjectStore,
    table_path: str,
    entry: SegmentEntry,
    columns: list[str] | None = None,
    filter: pc.Expression | None = None,
) -> pa.Table:
    """Read one segment, with only ``columns`` and only rows passing ``filter``.

    Columns the segment does not have are left out (see ``storage.schema.conform``).
    """
    import pyarrow.dataset as ds  # here, not at the top: an ingest owner never reads and need not import it

    present = None if columns is None else [c for c in columns if c in entry.schema.names]
    dataset = ds.dataset(
        store.arrow_path(f"{table_path}/{entry.path}"),
        format="parquet",
        filesystem=store.arrow_filesystem(),
    )
    return dataset.to_table(columns=present, filter=filter)
