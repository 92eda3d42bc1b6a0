"""Tables with an ingest transform: rows transformed before routing, failures in _rejected, alter applies to new data."""

from __future__ import annotations

import json

import pytest

from storage.errors import SqlError
from tests.engine.ingest.ingest_fixtures import stored

TRANSFORM = """SELECT *, lower(level) AS level,
       CAST(regexp_extract(message, 'status=(\\d+)', 1) AS INT) AS status,
       json_extract_string(payload, '$.user.id') AS user_id
FROM input WHERE level <> 'debug'"""


def lines(n: int, start: int = 0) -> bytes:
    out = []
    for i in range(start, start + n):
        level = ["INFO", "debug", "ERROR", "WARN"][i % 4]
        status = "bad" if i % 10 == 7 else str(200 + i % 3)
        out.append(json.dumps({"timestamp": f"2026-11-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "id": i,
                               "level": level, "message": f"GET /x status={status}",
                               "payload": json.dumps({"user": {"id": f"u{i % 5}"}})}))
    return ("\n".join(out) + "\n").encode()


def test_transform_applies_before_routing_and_rejects_failed_rows(local_db):
    local_db.create_table("logs", partitions=2, routing_key="user_id", transform=TRANSFORM)
    receipt = local_db.ingest("logs", lines(40))
    expected = [i for i in range(40) if i % 4 != 1 and i % 10 != 7]  # debug rows dropped, bad status rejected
    rejected_ids = [i for i in range(40) if i % 10 == 7 and i % 4 != 1]
    assert receipt.accepted == len(expected)
    assert sorted(row for row, _ in receipt.rejected) == rejected_ids
    table = stored(local_db, "logs")
    assert sorted(table.column("id").to_pylist()) == expected
    assert set(table.column("level").to_pylist()) == {"info", "error", "warn"}
    assert set(table.column("user_id").to_pylist()) == {f"u{i}" for i in range(5)}
    # the derived routing key decides the partition: one user's rows are together
    by_user = local_db.sql("SELECT user_id, count(*) AS n FROM logs GROUP BY user_id ORDER BY user_id").to_pylist()
    assert sum(r["n"] for r in by_user) == len(expected)
    reasons = local_db.sql("SELECT row, reason, raw FROM _rejected WHERE \"table\" = 'logs' ORDER BY row").to_pylist()
    assert [r["row"] for r in reasons] == rejected_ids
    assert all("CAST" in r["reason"] and "value ''" in r["reason"] and "status=bad" in r["raw"] for r in reasons)


def test_alter_table_changes_the_transform_for_new_data_only(local_db):
    local_db.create_table("logs", transform="SELECT *, upper(level) AS level FROM input")
    local_db.ingest("logs", lines(4))
    meta = local_db.alter_table("logs", transform="SELECT * EXCLUDE (payload), lower(level) AS level FROM input")
    assert "lower" in meta.transform and "lower" in local_db.table("logs").transform
    local_db.ingest("logs", lines(4, start=100))
    rows = local_db.sql("SELECT id, level, payload FROM logs ORDER BY id").to_pylist()
    assert [r["level"] for r in rows[:4]] == ["INFO", "DEBUG", "ERROR", "WARN"]
    assert [r["level"] for r in rows[4:]] == ["info", "debug", "error", "warn"]
    assert all(r["payload"] is None for r in rows[4:]) and all(r["payload"] for r in rows[:4])
    local_db.alter_table("logs", transform=None)
    assert local_db.table("logs").transform is None


def test_one_source_feeds_several_tables_each_picking_its_events(local_db):
    local_db.create_table("errors", transform="SELECT id, message FROM input WHERE level = 'ERROR'")
    local_db.create_table("infos", transform="SELECT id, level FROM input WHERE level = 'INFO'")
    data = lines(20)
    for table in ("errors", "infos"):
        local_db.ingest(table, data, batch_id="batch-1")
        local_db.ingest(table, data, batch_id="batch-1")  # a retry: stored once per table
    assert sorted(stored(local_db, "errors").column("id").to_pylist()) == [i for i in range(20) if i % 4 == 2]
    assert sorted(stored(local_db, "infos").column("id").to_pylist()) == [i for i in range(20) if i % 4 == 0]


def test_a_bad_transform_is_refused_at_create_and_alter(local_db):
    with pytest.raises(SqlError, match="FROM input"):
        local_db.create_table("logs", transform="SELECT * FROM somewhere")
    assert "logs" not in local_db.tables()
    local_db.create_table("logs")
    with pytest.raises(SqlError, match="regular expression"):
        local_db.alter_table("logs", transform="SELECT regexp_extract(message, '([') AS x FROM input")
    assert local_db.table("logs").transform is None


def test_the_demo_transform_parses_raw_log_lines(local_db):
    from engine.demo import LOG_QUESTION, LOG_TABLE, LOG_TRANSFORM, generate_day, log_lines

    local_db.create_table(LOG_TABLE, transform=LOG_TRANSFORM)
    day = generate_day(3_000)
    receipt = local_db.ingest(LOG_TABLE, log_lines(day, 3_000))
    auth = day.slice(0, 3_000).column("service").to_pylist().count("auth")
    assert receipt.accepted == 3_000 - auth and not receipt.rejected
    rows = local_db.sql(LOG_QUESTION).to_pylist()
    assert rows and all(r["method"] in {"GET", "POST", "PUT", "DELETE"} and r["avg_ms"] > 0 for r in rows)
    assert local_db.sql(f"SELECT count(*) AS n FROM {LOG_TABLE} WHERE user_id = '-' OR user_id LIKE 'user-%'"
                   ).to_pylist()[0]["n"] == receipt.accepted


def test_the_text_functions_of_transforms_also_work_in_queries(local_db):
    local_db.create_table("raw")
    local_db.ingest("raw", lines(6))
    rows = local_db.sql("SELECT id, json_extract_string(payload, '$.user.id') AS user_id, "
                   "parse_kv(message, 'status') AS status FROM raw ORDER BY id").to_pylist()
    assert [r["user_id"] for r in rows] == [f"u{i % 5}" for i in range(6)]
    assert [r["status"] for r in rows] == [str(200 + i % 3) for i in range(6)]
