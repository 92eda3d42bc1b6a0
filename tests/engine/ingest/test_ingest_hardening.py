"""Bad input on the ingest path: out-of-range times, deep nesting, huge rejected rows, key collisions (no Ray)."""

from __future__ import annotations

import pyarrow as pa

from engine.ingest.normalize import normalize
from engine.ingest.parse import parse

NOW = 1_700_000_000_000_000
GOOD_US = 1_704_067_200_000_000  # 2024-01-01


def run(data, max_row_bytes=1 << 20):
    return normalize(parse(data, max_row_bytes, None, "timestamp"), time_column="timestamp", schema=None,
                     now_us=NOW, max_row_bytes=max_row_bytes)


def test_times_outside_the_years_1_to_9999_are_rejected_per_row_never_wrapped():
    year_20000 = pa.array([GOOD_US, 568_971_820_800_000_000, GOOD_US], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    wraps = pa.array([1_704_067_200, 10_000_000_000_000, 1_704_067_200], pa.timestamp("s"))  # naive, 1e13 s
    for column in (year_20000, wraps):
        result = run(pa.table({"timestamp": column, "id": [0, 1, 2]}))
        assert result.table.column("id").to_pylist() == [0, 2]
        assert [row for row, _ in result.rejected] == [1]
        assert "years 1-9999" in result.rejected[0][1]
    epochs = run([{"timestamp": 1_704_067_200, "id": 0}, {"timestamp": -8e10, "id": 1},
                  {"timestamp": -80_000_000_000, "id": 2}])
    assert epochs.table.column("id").to_pylist() == [0] and [r for r, _ in epochs.rejected] == [1, 2]
    assert all(t.year == 2024 for t in epochs.table.column("timestamp").to_pylist())


def test_the_retention_reason_names_any_stored_time_even_before_year_1():
    from engine.ingest.expired import _instant

    assert _instant(0) == "1970-01-01T00:00:00+00:00"
    assert _instant(-80_000_000_000_000_000) == "-80000000000000000 microseconds from 1970-01-01T00:00:00+00:00"


def test_rows_nested_too_deep_are_rejected_before_parsing_and_the_good_rows_land():
    import json

    deep_line = b'{"timestamp": 1704067200, "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    good = [json.dumps({"timestamp": 1_704_067_200 + i, "id": i}).encode() for i in range(100)]
    result = run(b"\n".join(good[:50] + [deep_line] + good[50:]))  # pyarrow's reader would crash the process
    assert result.table.num_rows == 100 and [row for row, _ in result.rejected] == [50]
    assert "nested more than" in result.rejected[0][1]
    braces_in_text = json.dumps({"timestamp": 1_704_067_200, "text": "{" * 200}).encode()
    assert run(braces_in_text).rejected == []  # brackets inside strings do not nest
    deep_dict: dict = {"timestamp": 1_704_067_200}
    for _ in range(5000):
        deep_dict = {"a": deep_dict}
    dicts = [{"timestamp": 1_704_067_200, "id": i} for i in range(100)] + [deep_dict]
    result = run(dicts)  # RecursionError before
    assert result.table.num_rows == 100 and [row for row, _ in result.rejected] == [100]
    assert "nested more than" in result.rejected[0][1]


def test_two_fields_that_flatten_to_one_name_reject_the_row_instead_of_losing_one():
    rows = [{"timestamp": 1_704_067_200, "a": {"b": 1}, "a.b": 2}, {"timestamp": 1_704_067_200, "a": {"b": 3}},
            {"timestamp": 1_704_067_200, "a.b": 4}]
    import json

    for data in (rows, "\n".join(json.dumps(r) for r in rows).encode(), pa.Table.from_pylist(rows)):
        result = run(data)
        assert [row for row, _ in result.rejected] == [0], (type(data), result.rejected)
        assert "given twice" in result.rejected[0][1]
        assert sorted(result.table.column("a.b").to_pylist()) == [3, 4]


def test_a_huge_rejected_row_is_kept_as_a_bounded_prefix_with_its_length_and_hash():
    import hashlib
    import json

    from engine.ingest.rejected import RAW_PREFIX_BYTES, rejected_rows

    huge = json.dumps({"timestamp": 1_704_067_200, "blob": "x" * (8 << 20)}).encode()
    result = run(huge + b"\n" + json.dumps({"timestamp": 1_704_067_200}).encode())
    assert result.table.num_rows == 1 and [row for row, _ in result.rejected] == [0]
    kept = rejected_rows("logs", "b1", result, NOW).to_pylist()[0]
    assert len(kept["raw"].encode()) <= RAW_PREFIX_BYTES and huge.startswith(kept["raw"].encode())
    assert kept["raw_bytes"] == len(huge) and kept["raw_sha256"] == hashlib.sha256(huge).hexdigest()
