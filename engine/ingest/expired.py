"""Retention at the door: events already past a table's retention are refused.

Ingestion calls :func:`expired_rows` on each normalised batch (time column as
``timestamp[us, UTC]``) and rejects those rows with the reason given, next to
its other rejected rows; the rest of the batch goes on.  Dropping data that
ages out after it was stored is :func:`storage.retention.apply_retention`.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.catalog import TableMeta
from storage.retention import retention_cutoff
from storage.segment import time_micros


def expired_rows_mask(table: pa.Table, meta: TableMeta, now: float | None = None) -> pa.Array | None:
    """True for the rows of ``table`` whose event time is past ``meta``'s retention; None if
    the table keeps events forever or has no time column in ``table``."""
    cutoff = retention_cutoff(meta, now)
    if cutoff is None or meta.time_column not in table.column_names:
        return None
    micros = time_micros(table.column(meta.time_column))
    return pc.fill_null(pc.less(micros, pa.scalar(cutoff, pa.int64())), False)


def expired_rows(table: pa.Table, meta: TableMeta, row_numbers: np.ndarray | None = None,
                 now: float | None = None) -> list[tuple[int, str]]:
    """(input row number, reason) for each row of ``table`` past the retention period.

    ``row_numbers`` maps the rows of ``table`` to the caller's input rows (default: 0..n-1).
    """
    now = time.time() if now is None else now
    mask = expired_rows_mask(table, meta, now)
    if mask is None or not pc.any(mask).as_py():
        return []
    positions = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
    if row_numbers is not None:
        positions = np.asarray(row_numbers)[positions]
    cutoff = dt.datetime.fromtimestamp(retention_cutoff(meta, now) / 1e6, dt.timezone.utc)
    times = time_micros(table.column(meta.time_column)).filter(mask).to_pylist()
    reason = (
        "event time {} is older than the {} retention of table {}.{} (events before {} are not kept); "
        "send it with a recent time or raise the retention with alter_table"
    )
    period = _duration(meta.retention)
    return [
        (int(row), reason.format(_instant(t), period, meta.namespace, meta.name, cutoff.isoformat()))
        for row, t in zip(positions.tolist(), times)
    ]


def _instant(micros: int) -> str:
    """An instant for a message: ISO 8601 where Python's datetime holds it (years 1-9999), else raw."""
    try:
        return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)).isoformat()
    except OverflowError:
        return f"{micros} microseconds from 1970-01-01T00:00:00+00:00"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def split_expired(table: pa.Table, meta: TableMeta, row_numbers: np.ndarray,
                  now: float | None = None) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """(the rows inside the retention period, their input row numbers, (row, reason) of the others)."""
    now = time.time() if now is None else now
    expired = expired_rows(table, meta, row_numbers, now)
    if not expired:
        return table, row_numbers, []
    keep = pc.invert(expired_rows_mask(table, meta, now))
    return table.filter(keep), np.asarray(row_numbers)[keep.to_numpy(zero_copy_only=False)], expired
