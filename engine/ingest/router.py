"""Routing: which partition each row of a batch goes to.

With a routing key, a row goes to ``hash(key) mod P`` — a stable hash (CRC32
of the value's text), the same in every process and on every run, so one
key's events stay together.  Without one, a batch is cut into contiguous
ranges by input row number, as many as the partitions but none smaller than
``MIN_SLICE_ROWS``, and the ranges go to consecutive partitions starting at
a hash of the batch id: a small batch goes whole to one partition (one
commit to wait for, not P), batches spread evenly over the partitions, and a
retried batch is cut exactly as before.  That is what makes exactly-once
work per partition: each partition commits its slice of the batch under the
batch id, and a retry sends every partition the same slice again.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MIN_SLICE_ROWS = 16_384  # below this, what a slice costs on its way (a call, a commit) outweighs its rows


def stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def _key_text(value: object) -> str:
    """A key's text; 5 and 5.0 are one key (a column may widen from int to float)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def partitions_of(
    table: pa.Table,
    rows: np.ndarray,
    total: int,
    partitions: int,
    batch_id: str,
    routing_key: str | None = None,
) -> np.ndarray:
    """The partition of every row of ``table`` (``rows``: input row numbers, of ``total``)."""
    if partitions == 1:
        return np.zeros(table.num_rows, dtype=np.int64)
    if routing_key is not None and routing_key in table.column_names:
        column = table.column(routing_key)
        if not isinstance(column, pa.ChunkedArray) or column.num_chunks != 1:
            column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        else:
            column = column.chunk(0)
        encoded = pc.dictionary_encode(column)
        targets = np.asarray(
            [stable_hash(_key_text(v)) % partitions for v in encoded.dictionary.to_pylist()],
            dtype=np.int64,
        )
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        nulls = np.asarray(pc.is_null(encoded.indices).to_numpy(zero_copy_only=False), dtype=bool)
        out = targets[np.where(nulls, 0, indices).astype(np.int64)] if len(targets) else np.zeros(len(indices), np.int64)
        if nulls.any():
            out[nulls] = stable_hash("") % partitions
        return out
    pieces = max(1, min(partitions, total // MIN_SLICE_ROWS))
    first = stable_hash(batch_id) % partitions
    return ((rows * pieces) // max(total, 1) + first) % partitions


def split(table: pa.Table, targets: np.ndarray, partitions: int) -> dict[int, pa.Table]:
    """``table`` cut into one table per partition (keeping row order); empty ones left out."""
    if table.num_rows == 0:
        return {}
    if len(targets) and np.all(targets == targets[0]):
        return {int(targets[0]): table}
    changes = np.flatnonzero(np.diff(targets)) + 1
    if len(changes) < partitions * 2:  # a few contiguous runs: zero-copy slices
        out: dict[int, list[pa.Table]] = {}
        bounds = np.concatenate(([0], changes, [len(targets)]))
        for start, end in zip(bounds[:-1], bounds[1:]):
            out.setdefault(int(targets[start]), []).append(table.slice(int(start), int(end - start)))
        return {p: parts[0] if len(parts) == 1 else pa.concat_tables(parts) for p, parts in out.items()}
    order = np.argsort(targets, kind="stable")
    ordered = table.take(pa.array(order))
    counts = np.bincount(targets, minlength=partitions)
    result, start = {}, 0
    for partition, count in enumerate(counts.tolist()):
        if count:
            result[partition] = ordered.slice(start, count)
            start += count
    return result
