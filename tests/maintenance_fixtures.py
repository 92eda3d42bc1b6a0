"""Builders shared by the compaction, retention and maintenance tests."""

from __future__ import annotations

import datetime as dt

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from storage.catalog import TableMeta
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.schema import conform
from storage.segment import write_segment
from storage.snapshot import Snapshot, load_snapshot
from tests.storage_fixtures import BASE


def small_segments(store: ObjectStore, meta: TableMeta, count: int, rows: int, *, hours: int = 1,
                   per_commit: int = 100, start_id: int = 0) -> int:
    """Write ``count`` segments of ``rows`` events round-robin over partitions and hours,
    committing ``per_commit`` at a time; returns the next free event id."""
    tables = []
    next_id = start_id
    for i in range(count):
        partition = i % meta.partitions
        hour = (i // meta.partitions) % hours
        seconds = [(next_id + j) * 7 % 3600 for j in range(rows)]
        table = pa.table({
            "timestamp": pa.array([BASE + dt.timedelta(hours=hour, seconds=s) for s in seconds],
                                  pa.timestamp("us", tz="UTC")),
            "id": pa.array(range(next_id, next_id + rows), pa.int64()),
            "service": pa.array([f"svc-{(next_id + j) % 5}" for j in range(rows)]),
        })
        next_id += rows
        tables.append((partition, table))

    def write(item):
        partition, table = item
        return write_segment(store, meta.path, table, partition=partition, time_column=meta.time_column,
                             sort_key=meta.full_sort_key)

    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = list(pool.map(write, tables))
    for partition in range(meta.partitions):
        mine = [e for e in entries if e.partition == partition]
        for i in range(0, len(mine), per_commit):
            commit(store, meta, partition, mine[i:i + per_commit])
    return next_id


def commit(store: ObjectStore, meta: TableMeta, partition: int, entries: list) -> PartitionState:
    log = PartitionLog(store, meta.path, partition)
    return log.commit(log.load(), epoch=None, added=entries)


def snapshot_rows(store: ObjectStore, snapshot: Snapshot) -> pa.Table:
    """Every row of a snapshot, in one canonical order (for comparing contents)."""

    def read(entry):  # one request per segment: these are small
        return conform(pq.read_table(pa.BufferReader(store.get(f"{snapshot.meta.path}/{entry.path}"))),
                       snapshot.schema)

    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(read, snapshot.segments))
    if not tables:
        return snapshot.schema.empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by([(name, "ascending") for name in table.column_names])


def table_rows(store: ObjectStore, meta: TableMeta) -> pa.Table:
    return snapshot_rows(store, load_snapshot(store, meta))
