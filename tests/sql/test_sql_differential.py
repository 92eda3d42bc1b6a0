"""Petrel against DuckDB on the same events: every query of differential_queries.

The table is written as segments over two partitions and a day of hourly
buckets, with an evolving schema; DuckDB reads the same rows from Arrow.
"""

from __future__ import annotations

import pytest

from tests.sql.differential_queries import QUERIES
from tests.event_data import duckdb_over, load_events
from tests.result_compare import assert_same


def _split(entry):
    return entry if isinstance(entry, tuple) else (entry, entry)


@pytest.fixture(scope="module")
def events_db(ray_session, tmp_path_factory):
    import engine
    from storage.objectstore import ObjectStore

    root = str(tmp_path_factory.mktemp("differential") / "warehouse")
    _, rows = load_events(ObjectStore(root))
    db = engine.connect(root)
    oracle = duckdb_over(events=rows)
    yield db, oracle
    db.close()
    oracle.close()


@pytest.mark.parametrize("entry", QUERIES, ids=[f"q{i:03d}" for i in range(len(QUERIES))])
def test_same_result_as_duckdb(events_db, entry):
    db, oracle = events_db
    ours, theirs = _split(entry)
    got = db.sql(ours)
    expected = oracle.sql(theirs).to_arrow_table()
    assert_same(got, expected, ordered=" ORDER BY " in ours.upper() and "WITHIN GROUP" not in ours.upper(), query=ours)


def test_comparison_checks_plain_names_and_type_families():
    import pyarrow as pa

    from tests.result_compare import assert_same_columns

    ours = pa.table({"n": pa.array([1], pa.int64()), "SERVICE": ["a"], "count(*)": [1]})
    assert_same_columns(ours, pa.table({"n": pa.array([1], pa.decimal128(38, 0)), "service": ["a"], "count_star()": [1]}))
    with pytest.raises(AssertionError, match="column names"):
        assert_same_columns(ours, pa.table({"m": [1], "service": ["a"], "count_star()": [1]}))
    with pytest.raises(AssertionError, match="petrel int64 vs duckdb string"):
        assert_same_columns(ours, pa.table({"n": ["1"], "service": ["a"], "count_star()": [1]}))
    with pytest.raises(AssertionError, match="petrel int64 vs duckdb double"):
        assert_same_columns(ours, pa.table({"n": [1.0], "service": ["a"], "count_star()": [1]}))
