"""Small builders of event tables and segments shared by the storage tests."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from storage.catalog import TableMeta
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore
from storage.segment import write_segment

BASE = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def events(n: int, start: int = 0, hour: int = 0, **extra: list) -> pa.Table:
    """``n`` events with ids start..start+n-1, one second apart from ``hour``."""
    times = [BASE + dt.timedelta(hours=hour, seconds=i) for i in range(n)]
    columns = {
        "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "id": pa.array(range(start, start + n), pa.int64()),
        "service": pa.array([f"svc-{i % 3}" for i in range(n)]),
    }
    for name, values in extra.items():
        columns[name] = pa.array(values)
    return pa.table(columns)


def append(store: ObjectStore, meta: TableMeta, table: pa.Table, partition: int = 0,
           state: PartitionState | None = None, epoch: int | None = None, **kwargs) -> PartitionState:
    """Write ``table`` as one segment and commit it to ``partition``."""
    log = PartitionLog(store, meta.path, partition)
    entry = write_segment(store, meta.path, table, partition=partition, time_column=meta.time_column,
                          sort_key=meta.full_sort_key)
    return log.commit(state if state is not None else log.load(), epoch=epoch, added=[entry], **kwargs)
