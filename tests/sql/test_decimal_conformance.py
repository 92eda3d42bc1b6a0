"""DECIMAL literals, casts and arithmetic give DuckDB's values and DuckDB's result types."""

from __future__ import annotations

import pyarrow as pa
import pytest

from benchmarks.fuzzing.differential import compare
from storage.errors import SqlError

# Each gives the same rows as DuckDB, in columns of exactly DuckDB's types.
SAME_TYPES = [
    # literals: a number with a point is DECIMAL(digits, decimals); an exponent makes a DOUBLE
    "SELECT 1.10 AS v, 1.5 AS w, 0.1 AS x, -1.5 AS y, 1e3 AS z",
    "SELECT 123456789012345678901234567890.5 AS v, 12345678901234567890123456789012345678.5 AS w",
    # + - widen by a digit, * adds precisions and scales, % keeps the common type
    "SELECT 0.1 + 0.2 AS v, 0.1 + 0.2 = 0.3 AS exact, 1.5 - 2.25 AS w, 1.5 * 2.25 AS x, 1.5 % 0.4 AS y",
    "SELECT 1.5 * 2 AS v, 2 * 1.5 AS w, 1 + 0.5 AS x, 10 - 0.25 AS y, -7.5 % 2 AS z, 1.5 * -2 AS n",
    "SELECT 1.5 * 1.5 * 1.5 * 1.5 AS v, 0.1 * 3 = 0.3 AS w",
    "SELECT a * 1.5 AS v, a + 0.25 AS w, b - 1.5 AS x, a % 1.5 AS y FROM ta",
    "SELECT CAST(b AS DECIMAL(38,10)) * CAST(a AS DECIMAL(38,10)) AS v, CAST(b AS DECIMAL(38,2)) + 1 AS w FROM ta",
    # with a DOUBLE, or divided: DOUBLE
    "SELECT 1.5 * 2.0e0 AS v, 1.5 / 2 AS w, 3.0 / 1.5 AS x, 1.5 + 1.5e0 AS y, c * 1.5 AS z, a / 1.5 AS q FROM ta",
    "SELECT 7.0e0 // 2 AS v, 1.5 // 1 AS w, b * 1.5 / NULLIF(a, 0) AS x FROM ta",
    # casts round half away from zero
    "SELECT CAST(1.456 AS DECIMAL(5,2)) AS v, CAST(1.455 AS DECIMAL(5,2)) AS w, CAST(-1.455 AS DECIMAL(5,2)) AS x",
    "SELECT CAST(2.5e0 AS DECIMAL(5,0)) AS v, CAST(2.675e0 AS DECIMAL(5,2)) AS w, CAST(-0.5 AS DECIMAL(3,0)) AS x",
    "SELECT CAST(7 AS DECIMAL) AS v, CAST(1 AS DECIMAL(10)) AS w, CAST('1.235' AS DECIMAL(4,2)) AS x",
    "SELECT CAST(2.5 AS INTEGER) AS v, CAST(-2.5 AS BIGINT) AS w, CAST(1.10 AS VARCHAR) AS x",
    "SELECT CAST(a AS DECIMAL(10,2)) AS v, CAST(c AS DECIMAL(4,1)) AS w, CAST(a * 1.5 AS BIGINT) AS x FROM ta",
    "SELECT CAST(a * 1.5 AS VARCHAR) AS v, CAST(a * 1.5 AS DOUBLE) AS w, TRY_CAST(s AS DECIMAL(4,1)) AS x FROM ta",
    "SELECT TRY_CAST('1.235' AS DECIMAL(4,2)) AS v, TRY_CAST('abc' AS DECIMAL(4,2)) AS w",
    "SELECT TRY_CAST(s AS DECIMAL(5,2)) AS v FROM (SELECT '1.234' AS s UNION ALL SELECT 'abc' UNION ALL SELECT NULL "
    "UNION ALL SELECT ' -9.995 ') t",
    "SELECT CAST('3.14159' AS DECIMAL(10,3)) AS v, CAST('  -2.5 ' AS DECIMAL(4,1)) AS w",
    # a DOUBLE constant rounds to an integer as a column does: ties to even
    "SELECT 1.5e0::INTEGER AS a, 2.5e0::BIGINT AS b, (-2.5e0)::INTEGER AS c, 0.5e0::INTEGER AS d",
    # ROUND, FLOOR, CEIL, TRUNC keep the precision and set the scale
    "SELECT round(1.25, 1) AS v, round(2.345, 2) AS w, round(-2.5) AS x, round(9.95, 1) AS y, round(123.4, -1) AS z",
    "SELECT floor(1.5) AS v, ceil(-1.5) AS w, trunc(1.7) AS x, abs(-1.5) AS y, floor(-9.5) AS z, sign(-1.5) AS s",
    "SELECT round(b * 1.25) AS v, floor(b * 1.25) AS f, ceil(b * 1.25) AS c, round(b * 1.25, -1) AS r FROM ta",
    # comparisons, CASE and friends meet in the common DECIMAL
    "SELECT CASE WHEN a > 1 THEN 1.5 ELSE a END AS v, COALESCE(a * 0.5, 2.25) AS w, nullif(a * 1.5, 3) AS x FROM ta",
    "SELECT greatest(1.5, 2) AS v, COALESCE(1.5, 2.25) AS w, COALESCE(1.5, 2e0) AS x, 1.5 IN (1.50, 2) AS y",
    "SELECT a FROM ta WHERE a * 1.5 > 2",
    "SELECT b FROM ta WHERE b * 0.5 IN (1.0, 1.5) OR b * 0.5 BETWEEN -0.5 AND 0.25",
    "SELECT a FROM ta WHERE a IN (1.0, 2.5)",
    # aggregates: SUM is DECIMAL(38, s), AVG and the moments DOUBLE, MIN and MAX keep the type
    "SELECT sum(a * 1.5) AS s, avg(a * 1.5) AS m, min(a * 1.5) AS lo, max(b + 0.5) AS hi FROM ta",
    "SELECT a, sum(x) AS s, avg(x) AS m, min(x) AS lo, max(x) AS hi, count(DISTINCT x) AS n "
    "FROM (SELECT a, b * 1.5 AS x FROM ta) q GROUP BY a",
    "SELECT sum(x) AS s, avg(x) AS m, stddev(x) AS d, var_pop(x) AS v, min(x) AS lo FROM (SELECT b * 0.25 AS x FROM ta) q",
    "SELECT avg(DISTINCT x) AS m, sum(DISTINCT x) AS s FROM (SELECT b * 0.25 AS x FROM ta) q",
    "SELECT x, count(*) AS n FROM (SELECT b * 0.5 AS x FROM ta) q GROUP BY x",
    "SELECT sum(x) AS s, min(x) AS lo FROM (SELECT b * 0.5 AS x FROM te) q",
    # joins on decimal keys, set operations, VALUES, ORDER BY
    "SELECT ta.a, tb.b FROM ta JOIN tb ON ta.a * 1.5 = tb.b * 1.5",
    "SELECT ta.a, tb.b FROM ta JOIN tb ON ta.a * 1.5 = tb.c",
    "SELECT b * 0.5 AS v FROM ta INTERSECT SELECT b * 0.5 FROM tb",
    "SELECT b * 0.5 AS v FROM ta EXCEPT SELECT b * 0.5 FROM tb",
    "SELECT a * 1.5 AS v FROM ta UNION SELECT b * 0.5 FROM tb",
    "SELECT * FROM (VALUES (1.5, 'a'), (2.25, 'b')) t(x, y)",
    "SELECT b * 1.5 AS x FROM ta ORDER BY x DESC NULLS LAST, 1",
    "SELECT a, (SELECT sum(tb.b * 0.5) FROM tb WHERE tb.a = ta.a) AS v FROM ta",
]


@pytest.mark.parametrize("query", SAME_TYPES)
def test_same_values_and_types_as_duckdb(differential, query):
    expected = differential.oracle.sql(query).to_arrow_table()
    got = differential.petrel(query)
    assert not compare(got, expected, "ORDER BY" in query), compare(got, expected, "ORDER BY" in query)
    assert [str(f.type) for f in got.schema] == [str(f.type) for f in expected.schema]


def test_decimal_values_are_exact(differential):
    got = differential.petrel("SELECT 0.1 + 0.2 AS v, sum(b * 0.1) AS s FROM ta")
    assert got.column("v").type == pa.decimal128(3, 1)
    assert str(got.column("v")[0]) == "0.3" and str(got.column("s")[0]) == "1.3"


@pytest.mark.parametrize("query", [
    "SELECT CAST(12345.678 AS DECIMAL(6,2)) AS v",
    "SELECT CAST(1.5 AS DECIMAL(1,1)) AS v",
    "SELECT CAST(b * 1000 AS DECIMAL(3,1)) AS v FROM ta",
])
def test_a_value_that_does_not_fit_its_decimal_is_an_error_as_in_duckdb(differential, query):
    """A constant is refused when planned; a column's value when it is computed (the session reports that
    Arrow error as QueryFailed)."""
    with pytest.raises(Exception):
        differential.oracle.sql(query).fetchall()
    with pytest.raises((SqlError, pa.ArrowInvalid), match="does not fit|precision"):
        differential.petrel(query)
