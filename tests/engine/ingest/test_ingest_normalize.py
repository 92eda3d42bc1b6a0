"""Parsing and normalisation of ingested data: pure, no Ray."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from engine.ingest.normalize import normalize
from engine.ingest.parse import parse
from engine.ingest.router import MIN_SLICE_ROWS, partitions_of, split
from storage.errors import IngestError

NOW = 1_700_000_000_000_000
UTC = dt.timezone.utc


def run(data, schema=None, declared=frozenset(), max_row_bytes=1 << 20):
    parsed = parse(data, max_row_bytes, schema, "timestamp")
    return normalize(parsed, time_column="timestamp", schema=schema, declared=declared, now_us=NOW,
                     max_row_bytes=max_row_bytes)


def times(result):
    return [t.astimezone(UTC) for t in result.table.column("timestamp").to_pylist()]


def test_every_input_kind_gives_the_same_rows():
    rows = [{"timestamp": "2024-05-01T10:00:00Z", "http": {"status_code": 200}, "msg": "a"},
            {"timestamp": "2024-05-01T11:00:00Z", "http": {"status_code": 404}, "msg": "b"}]
    jsonl = "\n".join(json.dumps(r) for r in rows).encode()
    arrow = pa.Table.from_pylist(rows)
    frame = pd.DataFrame([{"timestamp": r["timestamp"], "http.status_code": r["http"]["status_code"], "msg": r["msg"]}
                          for r in rows])
    results = [run(rows), run(jsonl), run(arrow), run(arrow.to_batches()[0]), run(frame), run(jsonl.decode())]
    for result in results:
        assert result.rejected == []
        assert sorted(result.table.column_names) == ["http.status_code", "msg", "timestamp"]
        assert result.table.column("http.status_code").to_pylist() == [200, 404]
        assert times(result) == [dt.datetime(2024, 5, 1, 10, tzinfo=UTC), dt.datetime(2024, 5, 1, 11, tzinfo=UTC)]
        assert result.table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_timestamps_in_every_spelling_become_utc_microseconds():
    spellings = ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01 00:00:00",
                 "2024-01-01", 1704067200, 1704067200000, 1704067200000000, 1704067200000000000,
                 1704067200.0, "2024-01-01T00:00:00.000000000Z"]
    result = run([{"timestamp": s, "i": i} for i, s in enumerate(spellings)])
    assert result.rejected == []
    assert set(times(result)) == {dt.datetime(2024, 1, 1, tzinfo=UTC)}
    arrow = pa.table({"timestamp": pa.array([1704067200000000000], pa.timestamp("ns"))})
    assert times(run(arrow)) == [dt.datetime(2024, 1, 1, tzinfo=UTC)]


def test_rows_without_a_time_get_the_ingest_time():
    result = run([{"x": 1}, {"x": 2, "timestamp": None}])
    assert [t.timestamp() for t in times(result)] == [NOW / 1e6, NOW / 1e6]


def test_bad_timestamps_reject_only_their_rows():
    result = run(pa.table({"timestamp": ["2024-01-01T00:00:00Z", "2024-13-45", "yesterday", "2024-01-02T00:00:00Z"],
                           "x": [1, 2, 3, 4]}))
    assert result.table.column("x").to_pylist() == [1, 4]
    assert [r for r, _ in result.rejected] == [1, 2]
    assert "'timestamp'" in result.rejected[1][1] and "'yesterday'" in result.rejected[1][1]
    assert "ISO-8601" in result.rejected[0][1]


def test_malformed_json_lines_are_rejected_and_good_lines_kept():
    lines = [json.dumps({"x": i}) for i in range(200)]
    lines[5] = '{"x": 5'
    lines[77] = "[1, 2]"
    lines[150] = "not json at all"
    result = run(("\n".join(lines) + "\n\n").encode())
    assert result.total == 200
    assert [r for r, _ in result.rejected] == [5, 77, 150]
    assert "not valid JSON" in result.rejected[0][1] and "not an object" in result.rejected[1][1]
    assert result.table.column("x").to_pylist() == [i for i in range(200) if i not in (5, 77, 150)]
    assert result.rows.tolist() == [i for i in range(200) if i not in (5, 77, 150)]
    assert result.raw(150) == "not json at all"


def test_type_conflict_in_a_new_column_keeps_the_first_type():
    result = run([{"x": 1}, {"x": "one"}, {"x": 3}])
    assert result.table.column("x").to_pylist() == [1, 3]
    (row, reason), = result.rejected
    assert row == 1 and "'x'" in reason and "'one'" in reason and "int64" in reason


def test_type_conflict_against_the_table_schema_rejects_the_row():
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("status", pa.int64())])
    result = run(b'{"status": 200}\n{"status": "teapot"}\n{"status": 201}', schema)
    assert result.table.column("status").to_pylist() == [200, 201]
    assert result.rejected[0][0] == 1 and "'teapot'" in result.rejected[0][1] and "int64" in result.rejected[0][1]
    whole = run([{"status": "a"}, {"status": "b"}], schema)
    assert whole.accepted == 0 and len(whole.rejected) == 2


def test_schema_evolves_new_columns_and_int_to_float():
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("n", pa.int64())])
    result = run([{"n": 1.5, "extra": "e"}], schema)
    assert result.schema.field("n").type == pa.float64()
    assert result.schema.field("extra").type == pa.string()
    assert result.table.column("n").to_pylist() == [1.5]


def test_declared_types_are_kept_and_values_cast():
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("n", pa.int32())])
    declared = frozenset({"timestamp", "n"})
    result = run([{"n": 1}, {"n": 2.5}, {"n": 3.0}], schema, declared)
    assert result.schema.field("n").type == pa.int32()
    assert result.table.column("n").to_pylist() == [1, 3]
    assert [r for r, _ in result.rejected] == [1]
    text = run(b'{"n": "7"}\n{"n": "x"}', schema, declared)
    assert text.table.column("n").to_pylist() == [7]
    assert text.rejected[0][0] == 1 and "'x'" in text.rejected[0][1] and "int32" in text.rejected[0][1]


def test_oversized_rows_are_rejected():
    rows = [{"x": "a" * 10}, {"x": "b" * 5000}, {"x": "c"}]
    for data in (rows, "\n".join(json.dumps(r) for r in rows).encode(), pa.Table.from_pylist(rows)):
        result = run(data, max_row_bytes=1000)
        assert result.table.column("x").to_pylist() == ["a" * 10, "c"]
        assert result.rejected[0][0] == 1 and "limit is 1000 bytes" in result.rejected[0][1]


def test_empty_batches_and_unknown_input():
    for data in ([], b"", b"\n\n", pa.table({"x": pa.array([], pa.int64())})):
        result = run(data)
        assert result.accepted == 0 and result.rejected == []
    with pytest.raises(IngestError, match="cannot ingest a int"):
        run(42)


def test_non_objects_in_a_list_are_rejected():
    result = run([{"x": 1}, "text", None])
    assert result.accepted == 1
    assert [r for r, _ in result.rejected] == [1, 2]


def test_routing_is_deterministic_and_keeps_keys_together():
    table = pa.table({"k": [f"user{i % 7}" for i in range(100)], "v": list(range(100))})
    rows = np.arange(100)
    by_key = partitions_of(table, rows, 100, 4, "batch", "k")
    for key in set(table.column("k").to_pylist()):
        assert len({int(p) for p, k in zip(by_key, table.column("k").to_pylist()) if k == key}) == 1
    whole = partitions_of(table, rows, 100, 4, "batch")
    assert len(set(whole.tolist())) == 1  # a small batch goes to one partition
    firsts = [int(partitions_of(table, rows, 100, 4, f"batch-{i}")[0]) for i in range(400)]
    assert min(np.bincount(firsts, minlength=4)) > 60  # batches spread over the partitions

    total = 4 * MIN_SLICE_ROWS
    big = pa.table({"v": np.arange(total)})
    spread = partitions_of(big, np.arange(total), total, 4, "batch")
    assert np.bincount(spread).tolist() == [MIN_SLICE_ROWS] * 4
    assert (spread == partitions_of(big, np.arange(total), total, 4, "batch")).all()
    # a row keeps its partition when other rows of the batch were rejected
    assert (partitions_of(big.slice(50), np.arange(50, total), total, 4, "batch") == spread[50:]).all()
    parts = split(big, spread, 4)
    assert sorted(v for t in parts.values() for v in t.column("v").to_pylist()) == list(range(total))
