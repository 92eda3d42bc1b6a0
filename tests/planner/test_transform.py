"""Ingest transforms compiled by the planner: shape checks, column rules, per-row rejections."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.json as pajson
import pytest

from planner.transform import check_transform
from storage.errors import SqlError, UnsupportedSql

LOGS = """SELECT *, lower(level) AS level,
       CAST(regexp_extract(message, 'status=(\\d+)', 1) AS INT) AS status,
       json_extract_string(payload, '$.user.id') AS user_id
FROM input WHERE level <> 'debug'"""

ROWS = [
    {"level": "INFO", "message": "GET /a status=200", "payload": '{"user": {"id": "u1"}}'},
    {"level": "debug", "message": "status=200", "payload": '{"user": {"id": "u2"}}'},
    {"level": "WARN", "message": "GET /b status=oops", "payload": '{"user": {}}'},
    {"level": "ERROR", "message": "status=500", "payload": "{not json"},
    {"level": "ERROR", "message": "status=503", "payload": None},
]


def test_the_issue_example_keeps_transforms_and_rejects_per_row():
    applied = check_transform(LOGS).apply(pa.Table.from_pylist(ROWS))
    assert applied.table.column_names == ["level", "message", "payload", "status", "user_id"]
    assert applied.table.to_pylist() == [
        {"level": "info", "message": "GET /a status=200", "payload": '{"user": {"id": "u1"}}', "status": 200,
         "user_id": "u1"},
        {"level": "error", "message": "status=503", "payload": None, "status": 503, "user_id": None},
    ]
    assert applied.rows.tolist() == [0, 4]
    assert sorted(applied.rejected) == [2, 3]  # row 1 is filtered out, not rejected
    assert "CAST(REGEXP_EXTRACT" in applied.rejected[2] and "''" in applied.rejected[2]
    assert "not valid JSON" in applied.rejected[3]
    assert applied.table.schema.field("status").type == pa.int32()


def test_json_objects_are_read_through_flattened_columns():
    lines = "\n".join(json.dumps({"level": "INFO", "payload": {"user": {"id": f"u{i}"}}}) for i in range(3))
    table = pajson.read_json(io.BytesIO(lines.encode()))
    applied = check_transform("SELECT json_extract_string(payload, '$.user.id') AS user_id, "
                              "json_extract_string(payload, '$.user.name') AS name FROM input").apply(table)
    assert applied.table.to_pylist() == [{"user_id": f"u{i}", "name": None} for i in range(3)]


def test_json_paths_numbers_lists_and_mixed_kinds():
    table = pa.table({"j": ['{"a": [1, {"b": 2}]}', '{"a": [3]}', '{"a": "text"}', None, '{"n": 1.5}']})
    applied = check_transform(
        "SELECT j ->> '$.a[1].b' AS b, json_extract_string(j, '$.n') AS n, json_extract(j, '$.a') AS a FROM input"
    ).apply(table)
    assert [r["b"] for r in applied.table.to_pylist()] == ["2", None, None, None, None]
    assert [r["n"] for r in applied.table.to_pylist()] == [None, None, None, None, "1.5"]
    assert applied.table.column("a").to_pylist() == ['[1,{"b":2}]', "[3]", '"text"', None, None]


def test_parse_kv_both_spellings_quotes_and_delimiters():
    table = pa.table({"m": ['user=ann path=/x status=200', 'user="bob smith";status=404', "nothing here", None]})
    applied = check_transform(
        "SELECT parse_kv(m)['user'] AS user, parse_kv(m, 'status') AS status, "
        "parse_kv(m, 'path', ' ', '=') AS path FROM input"
    ).apply(table)
    assert applied.table.to_pylist() == [
        {"user": "ann", "status": "200", "path": "/x"},
        {"user": "bob smith", "status": "404", "path": None},
        {"user": None, "status": None, "path": None},
        {"user": None, "status": None, "path": None},
    ]


def test_try_cast_gives_null_where_cast_rejects():
    table = pa.table({"v": ["1", "x", None, " 7 "]})
    soft = check_transform("SELECT TRY_CAST(v AS BIGINT) AS n FROM input").apply(table)
    assert soft.table.column("n").to_pylist() == [1, None, None, 7] and not soft.rejected
    hard = check_transform("SELECT CAST(v AS BIGINT) AS n FROM input").apply(table)
    assert hard.table.column("n").to_pylist() == [1, None, 7]
    assert list(hard.rejected) == [1] and "'x'" in hard.rejected[1]


def test_exclude_replace_rename_and_explicit_lists():
    table = pa.table({"a": [1, 2], "b": ["x", "y"], "c": [True, False]})
    assert check_transform("SELECT * EXCLUDE (c) FROM input").apply(table).table.column_names == ["a", "b"]
    replaced = check_transform("SELECT * REPLACE (upper(b) AS b) FROM input").apply(table).table
    assert replaced.column("b").to_pylist() == ["X", "Y"] and replaced.column_names == ["a", "b", "c"]
    renamed = check_transform("SELECT a AS id, b FROM input WHERE c").apply(table).table
    assert renamed.to_pylist() == [{"id": 1, "b": "x"}]


def test_a_kernel_failure_rejects_only_its_row():
    table = pa.table({"n": [1, 9223372036854775807, 3]})
    applied = check_transform("SELECT n + 1 AS m FROM input").apply(table)
    assert applied.table.column("m").to_pylist() == [2, 4]
    assert list(applied.rejected) == [1] and "overflow" in applied.rejected[1]


def test_a_batch_without_a_referenced_column_is_rejected_whole_with_the_reason():
    applied = check_transform("SELECT lower(level) AS level FROM input").apply(pa.table({"other": [1, 2]}))
    assert applied.table.num_rows == 0
    assert set(applied.rejected) == {0, 1} and "level" in applied.rejected[0]


@pytest.mark.parametrize("sql, error, text", [
    ("SELECT count(*) FROM input", UnsupportedSql, "row by row"),
    ("SELECT a FROM logs", SqlError, "FROM input"),
    ("SELECT a FROM input ORDER BY a", UnsupportedSql, "ORDER BY"),
    ("SELECT a FROM input LIMIT 3", UnsupportedSql, "LIMIT"),
    ("SELECT nosuch(a) FROM input", UnsupportedSql, "nosuch"),
    ("SELECT regexp_extract(a, '(') FROM input", SqlError, "regular expression"),
    ("SELECT a FROM input a JOIN input b ON a.x = b.x", UnsupportedSql, "joins"),
    ("SELEC a FROM input", SqlError, "syntax"),
    ("", SqlError, "empty"),
])
def test_bad_transforms_are_refused_when_checked(sql, error, text):
    with pytest.raises(error, match=text):
        check_transform(sql)


def test_a_failed_cast_in_the_where_clause_rejects_and_one_in_a_dropped_row_does_not():
    table = pa.table({"v": ["5", "x", "0"], "w": ["1", "2", "y"]})
    applied = check_transform("SELECT CAST(w AS INT) AS w FROM input WHERE CAST(v AS INT) > 1").apply(table)
    assert applied.table.column("w").to_pylist() == [1]
    assert list(applied.rejected) == [1]  # row 2 fails the WHERE, so its bad w is never looked at
