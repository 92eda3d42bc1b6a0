"""Encoding a flush: the appends' rows as one sorted Parquet segment, not yet stored.

Pure CPU (concatenate, sort, Parquet-encode; the GIL is released for most
of it), so an owner runs several of these side by side on its encoder
threads.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.catalog import TableMeta
from storage.schema import conform, unify
from storage.segment import SegmentEntry, dictionary_columns, encode_segment, time_micros

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
    """The rows of ``tables`` as ONE segment sorted by the table's sort key (none if there are no rows).

    However many hours or days the rows span, a flush writes one file: the
    number of segments follows the rows stored, not the time they cover.
    The segment goes in the folder of the day of its first event (see
    :func:`day_folder`); its manifest's min/max time is what pruning and
    retention use, so a flush spanning days is still dropped whole, once
    its newest event is past the period.
    """
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return []
    schema = unify(t.schema for t in tables)
    tables = [t if t.schema.equals(schema) else conform(t, schema) for t in tables]
    time_column = meta.time_column
    by_time = tuple(meta.full_sort_key) == (time_column,) and time_column in schema.names
    if by_time:
        # appends arrive out of order from concurrent callers, each mostly sorted within:
        # in order of their first event, the flush often needs no row sort at all
        tables.sort(key=lambda t: t.column(time_column)[0].value or 0)
    table = pa.concat_tables(tables)
    sorted_already = False
    if by_time:
        table = _sorted_by_time(table, time_column)
        sorted_already = True
    return [
        encode_segment(
            table,
            partition=partition,
            time_column=time_column,
            sort_key=meta.full_sort_key,
            sorted_already=sorted_already,
            # one row group per ingest segment: its statistics are the segment's own
            row_group_size=max(table.num_rows, 1),
            dictionary=dictionary.columns(table),
            folder=day_folder(table, time_column),
        )
    ]


def day_folder(table: pa.Table, time_column: str) -> str:
    """The ``data/<folder>`` of a flush: the UTC day of its earliest event (``unknown`` without times).

    A coarse bucket for people and tools browsing the store, never a reason
    to cut a file.
    """
    if time_column not in table.column_names or table.column(time_column).null_count == table.num_rows:
        return "unknown"
    first = pc.min(time_micros(table.column(time_column))).as_py()
    return time.strftime("%Y-%m-%d", time.gmtime((first // 1_000_000) // 86_400 * 86_400))


def _sorted_by_time(table: pa.Table, time_column: str) -> pa.Table:
    """``table`` sorted by its time column (not touched when it arrived in order, as streams mostly do)."""
    micros = time_micros(table.column(time_column)).to_numpy(zero_copy_only=False)
    if len(micros) > 1 and not np.all(micros[1:] >= micros[:-1]):
        table = table.take(pa.array(np.argsort(micros, kind="stable")))
    return table
