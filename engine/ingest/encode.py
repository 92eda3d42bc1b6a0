"""Encoding a flush: the appends' rows as sorted Parquet segments, not yet stored.

Pure CPU (concatenate, sort, Parquet-encode; the GIL is released for most
of it), so an owner runs several of these side by side on its encoder
threads.
"""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from storage.catalog import TableMeta
from storage.schema import conform, unify
from storage.segment import BUCKET_SECONDS, SegmentEntry, dictionary_columns, encode_segment, split_by_bucket, time_micros

DICTIONARY_FLUSHES = 32  # the columns to dictionary-encode are chosen again after this many flushes


class DictionaryChoice:
    """The columns to dictionary-encode, sampled once per DICTIONARY_FLUSHES flushes of one schema.

    A stream's columns keep their character (ids stay unique, levels stay
    few) from flush to flush; sampling each one cost about a millisecond.
    Encoders share one choice.
    """

    def __init__(self) -> None:
        self._cached: tuple[pa.Schema, list[str], int] | None = None  # schema, columns, flushes left
        self._lock = threading.Lock()

    def columns(self, table: pa.Table) -> list[str]:
        with self._lock:
            cached = self._cached
            if cached is not None and cached[2] > 0 and cached[0].equals(table.schema):
                self._cached = (cached[0], cached[1], cached[2] - 1)
                return cached[1]
        columns = dictionary_columns(table)
        with self._lock:
            self._cached = (table.schema, columns, DICTIONARY_FLUSHES - 1)
        return columns


def encode_flush(
    tables: list[pa.Table], meta: TableMeta, partition: int, dictionary: DictionaryChoice
) -> list[tuple[SegmentEntry, bytes]]:
    """The rows of ``tables`` as sorted Parquet segments, one per hour bucket."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return []
    schema = unify(t.schema for t in tables)
    tables = [t if t.schema.equals(schema) else conform(t, schema) for t in tables]
    time_column = meta.time_column
    if tuple(meta.full_sort_key) == (time_column,) and time_column in schema.names:
        # appends arrive out of order from concurrent callers, each mostly sorted within:
        # in order of their first event, the flush often needs no row sort at all
        tables.sort(key=lambda t: t.column(time_column)[0].value or 0)
    table = pa.concat_tables(tables)
    columns = dictionary.columns(table)
    return [
        encode_segment(
            part,
            partition=partition,
            time_column=time_column,
            sort_key=meta.full_sort_key,
            sorted_already=in_order,
            # one row group per ingest segment: its statistics are the segment's own
            row_group_size=max(part.num_rows, 1),
            dictionary=columns,
        )
        for part, in_order in _buckets(table, meta)
    ]


def _buckets(table: pa.Table, meta: TableMeta) -> list[tuple[pa.Table, bool]]:
    """The flush's rows cut into one table per hour bucket, and whether each is sorted already.

    Sorted by time alone (the default), the table is sorted once (not at
    all when it arrived in order, as streams mostly do) and the buckets
    are zero-copy slices; with a longer sort key each bucket is sorted
    when it is written.
    """
    time_column = meta.time_column
    if tuple(meta.full_sort_key) != (time_column,):
        return [(part, False) for part in split_by_bucket(table, time_column)]
    micros = time_micros(table.column(time_column)).to_numpy(zero_copy_only=False)
    if len(micros) > 1 and not np.all(micros[1:] >= micros[:-1]):
        order = np.argsort(micros, kind="stable")
        table, micros = table.take(pa.array(order)), micros[order]
    buckets = micros // (BUCKET_SECONDS * 1_000_000)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(buckets)) + 1, [len(buckets)]))
    return [(table.slice(int(a), int(b - a)), True) for a, b in zip(bounds[:-1], bounds[1:])]
