"""The memory bound of a query: the bytes of Arrow data it holds in one process, and a limit on them.

A :class:`MemoryBudget` is shared by every fragment of one query running
in one process (a worker, or the coordinator).  The operators charge what
they materialise: the record batches a scan has read so far, and the table
every operator returns (aggregate states, sort output, join results, the
fragment results the coordinator gathers).  When an operator finishes, its
inputs are released and its output stays charged until its parent
finishes.  An operator's inputs and output are counted together while it
runs, even where the output shares the inputs' buffers (a rename, a slice),
so the count errs on the side of refusing.  Going over the limit raises
:class:`~storage.errors.QueryTooLarge` at once, before the next batch is
read, so the process never holds much more than the limit for one query.

Pure pyarrow: no Ray.
"""

from __future__ import annotations

import threading
from typing import Callable

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storage.errors import QueryTooLarge

MIB = 1 << 20


def table_bytes(data: pa.Table | pa.RecordBatch) -> int:
    """The bytes of the buffers ``data`` references (a slice counts only its part)."""
    return data.nbytes


def readahead(limit: int | None) -> dict[str, int]:
    """Scanner read-ahead under ``limit``: batches read ahead are held too, so a small limit reads fewer ahead."""
    if limit is None or limit >= 1 << 30:
        return {}
    return {"batch_readahead": 2, "fragment_readahead": 2, "batch_size": 32_768}


def _size(nbytes: int) -> str:
    return f"{nbytes / MIB:,.1f} MiB" if nbytes >= MIB else f"{nbytes:,} bytes"


class MemoryBudget:
    """The bytes one query holds in this process, refused past ``limit`` (None: counted, never refused)."""

    def __init__(self, limit: int | None = None, where: str = "a worker") -> None:
        self.limit = limit
        self.where = where
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    def charge(self, nbytes: int, what: str) -> None:
        """Hold ``nbytes`` more for ``what`` (fewer, if negative); raises :class:`QueryTooLarge` past the limit."""
        if nbytes <= 0:
            self.release(-nbytes)
            return
        with self._lock:
            needed = self.held + nbytes
            if self.limit is not None and needed > self.limit:
                raise QueryTooLarge(
                    f"the query needed more than its memory limit of {_size(self.limit)} on {self.where} "
                    f"(it would hold {_size(needed)} at {what}) and was stopped; add a filter or a narrower time "
                    "range, select fewer columns, aggregate, add a LIMIT, or ask for a larger max_query_memory",
                    self.limit, needed)
            self.held = needed
            self.peak = max(self.peak, needed)

    def release(self, nbytes: int) -> None:
        """Stop holding ``nbytes`` (a table no longer referenced by the query)."""
        with self._lock:
            self.held = max(0, self.held - nbytes)


STREAM_ROWS = 131_072  # a row group with more rows than this is decoded batch by batch under a memory bound


def streams(footers: list) -> bool:
    """Whether a bounded read of segments with these footers must decode row groups in batches.

    The dataset scanner decodes a whole row group before it hands out its
    first batch; segments flushed by ingestion are often one row group of
    every row, more than a small budget.
    """
    return any(f.rows > STREAM_ROWS * max(1, f.row_groups) for f in footers)


def read_in_batches(
    filesystem: pafs.FileSystem,
    footers: list,
    schema: pa.Schema,
    columns: list[str] | dict[str, object],
    filter: object | None,
    stored: list[str],
    charge: Callable[[int], None],
    check: Callable[[], None] | None,
    row_groups: Callable[[object], list[int]],
    batch_size: int = 32_768,
) -> pa.Table:
    """Segments read ``batch_size`` rows at a time (never a whole row group), each batch charged before the next.

    Each batch of the stored columns is put under the snapshot's schema
    (missing columns NULL, narrower types widened), then filtered and
    projected; the decoded batch is released once its projection is kept.
    """
    target = pa.schema([schema.field(name) for name in stored])
    parts = []
    for footer in footers:
        fragment = footer.fragment
        groups = row_groups(fragment)
        if not groups:
            continue
        present = [name for name in stored if name in fragment.physical_schema.names]
        with filesystem.open_input_file(fragment.path) as handle:
            parquet = pq.ParquetFile(handle, metadata=fragment.metadata)
            for batch in parquet.iter_batches(batch_size=batch_size, row_groups=groups, columns=present):
                if check is not None:
                    check()
                charge(batch.nbytes)
                part = ds.dataset(_conform(batch, target)).to_table(columns=columns, filter=filter)
                charge(part.nbytes - batch.nbytes)
                parts.append(part)
    if not parts:
        return ds.dataset(target.empty_table()).to_table(columns=columns, filter=filter)
    if len(parts) == 1:
        return parts[0]
    if not parts[0].num_columns:  # concatenating tables of no columns loses their rows (a COUNT(*) over a filter)
        return pa.table({"n": pa.nulls(sum(p.num_rows for p in parts))}).select([])
    return pa.concat_tables(parts)


def _conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.Table:
    arrays = []
    for field in target:
        if field.name in batch.schema.names:
            column = batch.column(field.name)
            arrays.append(column if column.type == field.type else column.cast(field.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=target)
