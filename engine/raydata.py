"""Tables as Ray Data datasets, and datasets into tables.

:func:`read_dataset` turns one snapshot of a table into a ``ray.data.Dataset``:
segments outside the time range are pruned from their manifest statistics,
only the asked-for columns are read, rows are filtered to the range inside
the Parquet reader, and each read task reads one group of segments (about
``target_bytes`` of Parquet, neighbours in time together).

:func:`write_dataset` stores a dataset through the table's ingest owners: its
batches, in a fixed order, each go in with the batch id ``<batch_id>#<n>``, so
running the same write again (after a crash, or by mistake) stores every row
exactly once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import PetrelError
from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry, read_segment
from storage.snapshot import load_snapshot

TARGET_TASK_BYTES = 128 << 20
WRITE_BATCH_ROWS = 100_000


def _micros(value: Any) -> int | None:
    """Microseconds since the epoch of a datetime, pandas Timestamp, ISO string or int (already micros)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(value.timestamp() * 1_000_000)
    raise PetrelError(f"cannot use {value!r} as a time; give a datetime, an ISO string or microseconds")


@dataclass(frozen=True)
class SegmentGroup:
    """What one read task reads: neighbouring segments, their columns and the time filter."""

    store: ObjectStore
    table_path: str
    segments: tuple[SegmentEntry, ...]
    columns: tuple[str, ...] | None
    time_column: str
    start: int | None
    end: int | None
    schema: pa.Schema

    def read(self) -> Iterable[pa.Table]:
        filter_ = None
        time_type = self.schema.field(self.time_column).type if self.time_column in self.schema.names else None
        if time_type is not None and self.start is not None:
            filter_ = pc.field(self.time_column) >= pa.scalar(self.start, pa.timestamp("us", "UTC")).cast(time_type)
        if time_type is not None and self.end is not None:
            upper = pc.field(self.time_column) < pa.scalar(self.end, pa.timestamp("us", "UTC")).cast(time_type)
            filter_ = upper if filter_ is None else filter_ & upper
        # the filter needs the time column; it is dropped afterwards when it was not asked for
        wanted = list(self.columns) if self.columns is not None else list(self.schema.names)
        reading = wanted + ([self.time_column] if filter_ is not None and self.time_column not in wanted else [])
        parts = [read_segment(self.store, self.table_path, entry, reading, filter_) for entry in self.segments]
        target = pa.schema([self.schema.field(name) for name in wanted])
        tables = [_conform(part, target) for part in parts]
        yield pa.concat_tables(tables) if tables else target.empty_table()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (absent ones null), in its order and types."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.table(columns, schema=schema)


def segment_groups(store: ObjectStore, meta: Any, columns: list[str] | None = None, start: Any = None,
                   end: Any = None, target_bytes: int = TARGET_TASK_BYTES) -> list[SegmentGroup]:
    """The read tasks of one snapshot: segments in the time range, grouped by size in time order."""
    snapshot = load_snapshot(store, meta)
    schema = snapshot.schema if snapshot.schema.names else (meta.schema or pa.schema([]))
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise PetrelError(f"table {meta.name} has no column(s) {missing}; it has {schema.names}")
    lo, hi = _micros(start), _micros(end)
    kept = [s for s in snapshot.segments
            if not (lo is not None and s.max_time is not None and s.max_time < lo)
            and not (hi is not None and s.min_time is not None and s.min_time >= hi)]
    kept.sort(key=lambda s: (s.min_time or 0, s.id))
    groups: list[list[SegmentEntry]] = []
    size = 0
    for segment in kept:
        if not groups or size + segment.bytes > target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(segment)
        size += segment.bytes
    return [SegmentGroup(store, meta.path, tuple(g), tuple(columns) if columns is not None else None,
                         meta.time_column, lo, hi, schema) for g in groups]


def read_dataset(session: Any, table: str, columns: list[str] | None = None, start: Any = None, end: Any = None,
                 target_bytes: int = TARGET_TASK_BYTES) -> Any:
    """The rows of ``table`` in ``[start, end)`` as a ``ray.data.Dataset``: one read task per segment group."""
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    groups = segment_groups(session.store, session.table(table), columns, start, end, target_bytes)

    class PetrelTable(Datasource):
        """One snapshot of a Petrel table, pruned and grouped into read tasks."""

        def estimate_inmemory_data_size(self) -> int:
            return sum(s.bytes for g in groups for s in g.segments)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[ReadTask]:
            tasks = []
            for group in groups:
                exact = group.start is None and group.end is None
                metadata = BlockMetadata(num_rows=sum(s.rows for s in group.segments) if exact else None,
                                         size_bytes=sum(s.bytes for s in group.segments), exec_stats=None,
                                         input_files=tuple(s.path for s in group.segments))
                tasks.append(ReadTask(group.read, metadata, per_task_row_limit=per_task_row_limit))
            return tasks

    if not groups:  # nothing in range: an empty dataset with the right columns
        empty = segment_groups(session.store, session.table(table), columns)[:1]
        schema = empty[0].schema if empty else pa.schema([])
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        return ray.data.from_arrow(schema.empty_table())
    return ray.data.read_datasource(PetrelTable(), override_num_blocks=len(groups))


def write_dataset(session: Any, table: str, dataset: Any, batch_id: str, rows_per_batch: int = WRITE_BATCH_ROWS) -> Any:
    """Ingest every row of ``dataset`` into ``table``; the same ``batch_id`` again stores nothing twice."""
    import ray.data

    from engine.ingest.client import Receipt

    if not batch_id:
        raise PetrelError("write_dataset needs a batch_id (the same one on a retry) so rows are stored once")
    context = ray.data.DataContext.get_current()
    previous = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # the same batches, in the same order, on every run
    accepted, rejected = 0, []
    try:
        for index, batch in enumerate(dataset.iter_batches(batch_size=rows_per_batch, batch_format="pyarrow")):
            receipt = session.ingest(table, batch, batch_id=f"{batch_id}#{index}")
            accepted += receipt.accepted
            rejected += [(index * rows_per_batch + row, reason) for row, reason in receipt.rejected]
    finally:
        context.execution_options.preserve_order = previous
    return Receipt(accepted, rejected, batch_id)
