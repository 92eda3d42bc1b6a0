"""Division per SQL dialect, comparisons of NULL literals, repeated group keys and FETCH FIRST, against DuckDB.

Each dialect's division is compared with the DuckDB query that has the
same documented meaning: postgres, sqlite and tsql divide integers as
integers (DuckDB's ``//``), mysql and sqlite give NULL for a division by
zero (DuckDB's ``NULLIF(divisor, 0)``).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from storage.errors import PetrelError, SqlError
from tests.result_compare import assert_same

NUMBERS = pa.table({
    "a": pa.array([7, -7, 0, None, 5, 9, -9, 1], pa.int64()),
    "b": pa.array([2, 2, 3, 4, None, -4, -2, 1], pa.int64()),
    "z": pa.array([0, 2, 0, 1, 0, None, 3, 0], pa.int64()),
    "f": pa.array([7.5, -7.5, 0.0, None, 1.25, 9.0, -2.5, 3.0], pa.float64()),
})


@pytest.fixture(scope="module")
def dbs(ray_session, tmp_path_factory):
    import engine

    db = engine.connect(str(tmp_path_factory.mktemp("dialects") / "warehouse"))
    db.register("numbers", NUMBERS)
    oracle = duckdb.connect()
    oracle.register("numbers", NUMBERS)
    yield db, oracle
    db.close()


def _check(dbs, query: str, dialect: str, oracle_query: str) -> None:
    db, oracle = dbs
    got = db.sql(query, dialect=dialect)
    expected = oracle.sql(oracle_query).to_arrow_table()
    assert_same(got.rename_columns(expected.column_names), expected, ordered=False, query=f"[{dialect}] {query}")


@pytest.mark.parametrize("dialect", ["postgres", "sqlite", "tsql"])
def test_integer_division_truncates_where_the_dialect_says_so(dbs, dialect):
    _check(dbs, "SELECT a / b AS q, 7 / 2 AS c, -7 / 2 AS d, f / b AS r FROM numbers",
           dialect, "SELECT a // b AS q, 7 // 2 AS c, -7 // 2 AS d, f / b AS r FROM numbers")


@pytest.mark.parametrize("dialect", ["duckdb", "mysql"])
def test_division_is_float_where_the_dialect_says_so(dbs, dialect):
    _check(dbs, "SELECT a / b AS q, 7 / 2 AS c FROM numbers",
           dialect, "SELECT a / b AS q, 7 / 2 AS c FROM numbers")


def test_duckdb_integer_division_and_remainder(dbs):
    query = "SELECT a // b AS q, a % b AS m, f % b AS fm, a / z AS inf FROM numbers"
    _check(dbs, query, "duckdb", query)


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_division_by_zero_is_null_where_the_dialect_says_so(dbs, dialect):
    integer = "a DIV z" if dialect == "mysql" else "a / z"
    divide = "/" if dialect == "mysql" else "//"  # sqlite divides integers as integers
    _check(dbs, f"SELECT a / z AS q, {integer} AS i, a % z AS m, 7 / 0 AS c FROM numbers", dialect,
           f"SELECT a {divide} NULLIF(z, 0) AS q, a // NULLIF(z, 0) AS i, a % NULLIF(z, 0) AS m, "
           f"CAST(NULL AS {'DOUBLE' if dialect == 'mysql' else 'BIGINT'}) AS c FROM numbers")


@pytest.mark.parametrize("dialect, query", [
    ("postgres", "SELECT 7 / 0"), ("tsql", "SELECT 1 / 0"), ("duckdb", "SELECT 7 // 0"), ("duckdb", "SELECT 7 % 0"),
])
def test_division_of_a_constant_by_zero_is_an_error_with_its_position(dbs, dialect, query):
    db, _ = dbs
    with pytest.raises(SqlError, match="division by zero") as raised:
        db.sql(query, dialect=dialect)
    assert raised.value.line == 1 and raised.value.column == 8


@pytest.mark.parametrize("dialect, query", [
    ("postgres", "SELECT a / z FROM numbers"), ("duckdb", "SELECT a // z FROM numbers"), ("duckdb", "SELECT a % z FROM numbers"),
])
def test_division_of_a_column_by_zero_is_a_petrel_error(dbs, dialect, query):
    db, oracle = dbs
    if dialect == "duckdb":
        with pytest.raises(duckdb.Error, match="Division by zero"):
            oracle.sql(query).fetchall()
    with pytest.raises(PetrelError, match="divide by zero|division by zero"):
        db.sql(query, dialect=dialect)


def test_comparisons_of_null_literals_are_null(dbs):
    query = ("SELECT NULL >= NULL AS ge, NULL <> NULL AS ne, NULL = NULL AS eq, NULL < NULL AND TRUE AS lt, "
             "NULL = NULL OR TRUE AS o, NULL IS DISTINCT FROM NULL AS d, NULL IS NOT DISTINCT FROM NULL AS nd, "
             "NULL BETWEEN NULL AND NULL AS bt, NOT (NULL = NULL) AS n, "
             "CASE WHEN NULL = NULL THEN 1 ELSE 2 END AS c, NULL IN (NULL) AS i")
    _check(dbs, query, "duckdb", query)


def test_null_literal_comparisons_filter_no_rows(dbs):
    query = "SELECT a FROM numbers WHERE NULL >= NULL OR a > 5 ORDER BY a"
    _check(dbs, query, "duckdb", query)


@pytest.mark.parametrize("query", [
    "SELECT a, b, count(*) AS n FROM numbers GROUP BY a, a, b",
    "SELECT b, sum(a) AS s FROM numbers GROUP BY b, 1",
    "SELECT a FROM numbers ORDER BY a NULLS LAST FETCH FIRST 3 ROWS ONLY",
])
def test_repeated_group_keys_and_fetch_first(dbs, query):
    _check(dbs, query, "duckdb", query)
