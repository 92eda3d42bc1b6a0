"""Which columns a segment stores as dictionaries: repetitive strings, even those a small sample sees as varied, not unique ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.segment import dictionary_columns, encode_segment

BASE = 1_793_491_200_000_000


def _hits(rows: int) -> pa.Table:
    rng = np.random.default_rng(4)
    pages = rng.integers(0, 3_000, rows)  # most of a small sample distinct, a few thousand values in all
    return pa.table({
        "ts": pa.array(BASE + np.arange(rows) * 1_000, pa.timestamp("us", "UTC")),
        "url": pa.array([f"https://example.com/page/{p}" for p in pages]),
        "request_id": pa.array([f"req-{i:08d}" for i in range(rows)]),
        "n": pa.array(rng.integers(0, 1 << 40, rows)),
        "level": pa.array(rng.choice(["info", "warn"], rows).tolist()),
    })


def test_varied_strings_take_a_dictionary_and_unique_ones_do_not():
    table = _hits(20_000)
    sample = table.slice(0, 2048).column("url")
    assert 0.25 < len(sample.unique()) / 2048 < 0.9  # past the threshold of other types, under that of strings
    chosen = dictionary_columns(table)
    assert "url" in chosen and "level" in chosen
    assert "request_id" not in chosen and "n" not in chosen


def test_a_varied_string_column_is_stored_as_a_dictionary():
    table = _hits(20_000)
    entry, data = encode_segment(table, partition=0, time_column="ts")
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    columns = {metadata.schema.column(i).name: metadata.row_group(0).column(i) for i in range(metadata.num_columns)}
    assert columns["url"].has_dictionary_page and not columns["request_id"].has_dictionary_page
    assert pq.read_table(pa.BufferReader(data)).column("url").equals(table.column("url"))
    assert entry.rows == 20_000
