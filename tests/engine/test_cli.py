"""The petrel command line: sql in every format, explain, tables, errors; the demo's data and questions."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from engine.cli import main, parser
from engine.render import render_table, write_result
from engine.demo import QUESTIONS, generate_day
from tests.event_data import load_events
from storage.objectstore import ObjectStore


@pytest.fixture(scope="module")
def warehouse_root(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli") / "warehouse")
    load_events(ObjectStore(root), hours=3, partitions=1, rows_per_segment=40)
    return root


def test_sql_pretty_table(warehouse_root, capsys):
    assert main(["--warehouse", warehouse_root, "sql", "SELECT service, count(*) AS n FROM events GROUP BY 1 ORDER BY 1 NULLS LAST"]) == 0
    out = capsys.readouterr().out
    assert "service" in out and "│" in out and "rows" in out


def test_sql_csv(warehouse_root, capsys):
    assert main(["--warehouse", warehouse_root, "sql", "SELECT count(*) AS n FROM events", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == '"n"' and int(lines[1]) > 0


def test_connection_options_also_follow_the_command(warehouse_root, capsys):
    assert main(["sql", "SELECT count(*) AS n FROM events", "--format", "csv", "--warehouse", warehouse_root]) == 0
    assert int(capsys.readouterr().out.strip().splitlines()[1]) > 0
    args = parser().parse_args(["--warehouse", "first", "explain", "SELECT 1", "--ray-address", "auto", "--namespace", "t1"])
    assert (args.warehouse, args.ray_address, args.namespace) == ("first", "auto", "t1")
    args = parser().parse_args(["--warehouse", "first", "tables", "--warehouse", "second"])
    assert args.warehouse == "second"


def test_json_and_parquet_output(tmp_path, capsys):
    import pyarrow as pa

    table = pa.table({"host": ["a", "b"], "n": [1, None]})
    write_result(table, "json", None)
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows == [{"host": "a", "n": 1}, {"host": "b", "n": None}]
    target = tmp_path / "out.parquet"
    write_result(table, "parquet", str(target))
    assert pq.read_table(target).equals(table)


def test_warehouse_from_environment(warehouse_root, capsys, monkeypatch):
    monkeypatch.setenv("PETREL_WAREHOUSE", warehouse_root)
    assert main(["tables"]) == 0
    assert "events" in capsys.readouterr().out


def test_explain(warehouse_root, capsys):
    assert main(["--warehouse", warehouse_root, "explain", "SELECT sum(bytes) FROM events", "--analyze"]) == 0
    out = capsys.readouterr().out
    assert "Distributed plan" in out and "segments_scanned" in out


def test_errors_are_messages_not_tracebacks(warehouse_root, capsys):
    assert main(["--warehouse", warehouse_root, "sql", "SELECT nope FROM events"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: column 'nope' does not exist") and "Traceback" not in err


def test_render_table_limits_rows():
    import pyarrow as pa

    text = render_table(pa.table({"x": list(range(100))}), max_rows=3)
    assert "100 rows (97 not shown)" in text


def test_demo_data_answers_its_questions(ray_session, tmp_path):
    """The demo's generated day, stored as segments, answers every demo question."""
    import engine
    from storage.log import PartitionLog
    from storage.segment import write_segment

    root = str(tmp_path / "warehouse")
    db = engine.connect(root)
    try:
        meta = db.create_table("web_events", time_column="timestamp", partitions=1)
        day = generate_day(20_000)
        log = PartitionLog(db.store, meta.path, 0)
        entries = [write_segment(db.store, meta.path, day.slice(i, 5000), partition=0, time_column="timestamp",
                                 sort_key=meta.full_sort_key) for i in range(0, day.num_rows, 5000)]
        log.commit(log.load(), epoch=None, added=entries)
        for title, query in QUESTIONS:
            assert db.sql(query).num_rows > 0, title
        drill = db.sql(QUESTIONS[3][1])
        assert drill.column("errors").to_pylist()[0] > 0  # the afternoon incident shows up
    finally:
        db.close()
