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


class FlakyStore(ObjectStore):
    """The same warehouse root, with failures injected into chosen writes and deletes.

    ``lose_reply(match, error)``: the next put_if_absent of a path containing
    ``match`` writes the object, then raises ``error`` (a reply lost after the
    write landed).  ``refuse_put(match, error)``: the next such put raises
    without writing.  ``crash_on_delete(n)``: the n-th delete from now raises.
    Every deleted path is recorded in ``deleted``.
    """

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        super().__init__(url, storage_options)
        self.faults: list[tuple[str, Exception, bool]] = []
        self.deleted: list[str] = []
        self.deletes_until_crash: int | None = None

    def lose_reply(self, match: str, error: Exception) -> None:
        self.faults.append((match, error, True))

    def refuse_put(self, match: str, error: Exception) -> None:
        self.faults.append((match, error, False))

    def crash_on_delete(self, n: int) -> None:
        self.deletes_until_crash = n

    def put_if_absent(self, path: str, data: bytes) -> None:
        fault = next((f for f in self.faults if f[0] in path), None)
        if fault is None:
            return super().put_if_absent(path, data)
        self.faults.remove(fault)
        _, error, writes = fault
        if writes:
            super().put_if_absent(path, data)
        raise error

    def delete(self, path: str) -> None:
        if self.deletes_until_crash is not None:
            if self.deletes_until_crash == 0:
                self.deletes_until_crash = None
                raise OSError(f"crash while deleting {path}")
            self.deletes_until_crash -= 1
        self.deleted.append(path)
        super().delete(path)


def flaky(store: ObjectStore) -> FlakyStore:
    """A FlakyStore on the same root as ``store``."""
    return FlakyStore(store.url, store.storage_options)
