"""Constructs users write (FILTER, QUALIFY, ROLLUP/CUBE/GROUPING SETS, named windows, LIKE escapes, VALUES,
ORDER BY ALL, time functions, frames) equal DuckDB, and the ones Petrel does not run are refused with UnsupportedSql at their line and column."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pytest

from benchmarks.fuzzing.differential import Differential
from storage.errors import UnsupportedSql

TIMES = pa.table({
    "ts": pa.array([dt.datetime(2024, 1, 31, 10, 20, 30), dt.datetime(2024, 3, 15, 23, 59, 59, 500000), None,
                    dt.datetime(2023, 12, 31, 0, 0), dt.datetime(2024, 2, 29, 12, 0)], pa.timestamp("us")),
    "d": pa.array([dt.date(2024, 1, 31), dt.date(2024, 3, 15), dt.date(2024, 2, 29), None, dt.date(2023, 1, 1)],
                  pa.date32()),
    "n": pa.array([1, 2, None, -4, 5], pa.int64()),
    "s": pa.array(["Hello", "wOrld", None, "", "a_b%c"], pa.string()),
})

SAME_ANSWER = [
    # FILTER (WHERE ...) on any aggregate, grouped or not, in HAVING, windows and subqueries
    "SELECT a, count(*) FILTER (WHERE b > 1) AS n FROM ta GROUP BY a",
    "SELECT sum(b) FILTER (WHERE a > 0) AS n, count(*) AS m FROM ta",
    "SELECT max(a) FILTER (WHERE b IS NULL) AS m, avg(c) FILTER (WHERE s = 'x') AS v, "
    "count(DISTINCT b) FILTER (WHERE a > 0) AS d FROM ta",
    "SELECT s, sum(DISTINCT b) FILTER (WHERE c > 0) AS v, count_if(a > 0) FILTER (WHERE b > 1) AS w FROM ta GROUP BY s",
    "SELECT a, count(*) FILTER (WHERE b > 1) AS n FROM ta GROUP BY a HAVING count(*) FILTER (WHERE b > 1) > 0",
    "SELECT a, sum(b) FILTER (WHERE c > 0) OVER (PARTITION BY a) AS w FROM ta",
    "SELECT a, (SELECT count(*) FILTER (WHERE tb.b > 1) FROM tb WHERE tb.a = ta.a) AS n FROM ta",
    # COUNT_IF sums truths: NULL over no rows
    "SELECT count_if(a > 0) AS n FROM te",
    "SELECT s, count_if(a > 0) AS n FROM ta GROUP BY s",
    # named windows
    "SELECT a, b, min(b) OVER w AS m FROM ta WINDOW w AS (PARTITION BY a)",
    "SELECT a, b, sum(b) OVER (w ORDER BY b ROWS UNBOUNDED PRECEDING) AS m, count(*) OVER w AS n "
    "FROM ta WINDOW w AS (PARTITION BY a)",
    # LIKE: a backslash is an ordinary character; ESCAPE makes the next character literal
    r"SELECT 'a\b' LIKE 'a\b' AS a, 'ab' LIKE 'a\b' AS b, 'a\b' ILIKE 'A\B' AS c",
    "SELECT 'axb' LIKE 'a!xb' ESCAPE '!' AS a, 'a!b' LIKE 'a!!b' ESCAPE '!' AS b, 'a%' LIKE 'a!%' ESCAPE '!' AS c, "
    "'ab' LIKE 'a!%' ESCAPE '!' AS d",
    "SELECT 'a_b' NOT LIKE 'a!_b' ESCAPE '!' AS a, 'axb' NOT LIKE 'a!_b' ESCAPE '!' AS b, "
    "'A_B' ILIKE 'a#_b' ESCAPE '#' AS c",
    # concat_ws skips NULLs; a row of NULLs gives '' (Arrow's own skip dropped such rows from the column)
    "SELECT concat(c, '!') AS v, concat_ws(',', a, c) AS w, concat_ws('--', s, NULL, s) AS x FROM ta",
    # VALUES as a query, ORDER BY ALL
    "VALUES (1, 'a'), (2, 'b')",
    "VALUES (1.5), (2)",
    "SELECT a, b FROM ta ORDER BY ALL",
    "SELECT a, s FROM ta ORDER BY ALL DESC",
    # QUALIFY filters after the windows, before DISTINCT, ORDER BY and LIMIT
    "SELECT a, b FROM ta QUALIFY row_number() OVER (PARTITION BY a ORDER BY b) = 1",
    "SELECT a, b, row_number() OVER (PARTITION BY a ORDER BY b, c) AS r FROM ta QUALIFY r = 1 ORDER BY a NULLS FIRST",
    "SELECT a, b FROM ta QUALIFY count(*) OVER (PARTITION BY a) > 1 ORDER BY 1, 2 LIMIT 3",
    "SELECT DISTINCT a FROM ta QUALIFY sum(b) OVER (PARTITION BY a) > 2",
    "SELECT a, count(*) AS n FROM ta GROUP BY a QUALIFY rank() OVER (ORDER BY count(*) DESC) <= 2",
    "SELECT x.a FROM (SELECT a, b FROM ta QUALIFY max(b) OVER (PARTITION BY a) = b) x",
    # ROLLUP, CUBE, GROUPING SETS and GROUPING()
    "SELECT a, sum(b) AS s FROM ta GROUP BY GROUPING SETS ((a), ())",
    "SELECT a, s, grouping(a) AS g, grouping(a, s) AS h, count(*) AS n FROM ta GROUP BY ROLLUP (a, s)",
    "SELECT a, s, count(*) AS n FROM ta GROUP BY CUBE (a, s)",
    "SELECT a, s, count(*) AS n FROM ta GROUP BY ROLLUP (a, s) ORDER BY n DESC, a NULLS FIRST, s NULLS FIRST LIMIT 3",
    "SELECT s, a, sum(c) AS t FROM ta GROUP BY s, ROLLUP (a)",
    "SELECT a, sum(b) AS t FROM ta GROUP BY ROLLUP (a) HAVING sum(b) > 2",
    "SELECT a + 1 AS k, count(*) AS n FROM ta GROUP BY ROLLUP (a + 1)",
    "SELECT a, b, count(*) AS n FROM ta GROUP BY GROUPING SETS ((a, b), (a), (b), ())",
    "SELECT count(*) AS n FROM te GROUP BY ROLLUP (a)",
    # IS [NOT] DISTINCT FROM, NULLS FIRST / LAST, ordinals and aliases
    "SELECT a, b, a IS DISTINCT FROM b AS d, a IS NOT DISTINCT FROM b AS n, a IS NOT DISTINCT FROM NULL AS z FROM ta",
    "SELECT a, b FROM ta ORDER BY 2 DESC NULLS LAST, 1 NULLS FIRST",
    "SELECT a AS k, b FROM ta ORDER BY k DESC NULLS FIRST, b NULLS LAST",
    "SELECT a, count(*) AS n FROM ta GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST",
    "SELECT a AS k, b FROM ta ORDER BY k + 0 NULLS FIRST, b NULLS FIRST",
    "SELECT a AS k, b FROM ta ORDER BY -k DESC NULLS LAST, b NULLS LAST",
    "SELECT a, sum(b) AS t FROM ta GROUP BY a ORDER BY t * -1 NULLS FIRST, a NULLS FIRST",
]

TIME_AND_TEXT = [
    "SELECT date_trunc('month', ts) AS m, date_trunc('week', ts) AS w, date_trunc('day', d) AS dd, "
    "date_trunc('quarter', d) AS q FROM tt",
    "SELECT extract(year FROM ts) AS y, extract(month FROM d) AS m, extract(dow FROM ts) AS w, "
    "extract(epoch FROM ts) AS e, extract(doy FROM d) AS doy FROM tt",
    "SELECT ts + INTERVAL 1 DAY AS a, ts - INTERVAL '90 minutes' AS b, d + INTERVAL 2 HOUR AS c, d - 3 AS e FROM tt",
    "SELECT DATE '2024-01-31' + INTERVAL 1 MONTH AS a, DATE '2024-01-31' - INTERVAL 1 YEAR AS b",
    "SELECT date_diff('day', d, DATE '2024-06-01') AS a, date_diff('month', d, DATE '2024-06-01') AS b FROM tt",
    "SELECT CAST(ts AS VARCHAR) AS a, CAST(TIMESTAMP '2024-03-15 10:20:30' AS VARCHAR) AS b, "
    "CAST(TIMESTAMP '2024-03-15 10:20:30.5' AS VARCHAR) AS c FROM tt",
    "SELECT substr(s, 2, 2) AS a, left(s, 2) AS l, right(s, 2) AS r, replace(s, 'l', 'L') AS p, lpad(s, 7, '*') AS q "
    "FROM tt",
    r"SELECT s LIKE 'a\_b%' AS a, s LIKE 'a!_b!%c' ESCAPE '!' AS b, s ILIKE 'h%' AS c FROM tt",
    "SELECT n, sum(n) OVER (ORDER BY ts ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS w, "
    "sum(n) OVER (ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS r FROM tt",
    "SELECT n, lag(n, 1, -1) OVER (ORDER BY d) AS l, lead(s) OVER (ORDER BY d) AS r, "
    "count(s) OVER (ORDER BY n ROWS 2 PRECEDING) AS c FROM tt",
]


def _ordered(query: str) -> bool:
    return bool(re.search(r"ORDER BY [^)]*$", query))


@pytest.mark.parametrize("query", SAME_ANSWER)
def test_same_answer_as_duckdb(differential, query):
    why = differential.difference(query, _ordered(query))
    assert not why, why


@pytest.fixture(scope="module")
def times():
    pair = Differential({"tt": TIMES})
    yield pair
    pair.close()


@pytest.mark.parametrize("query", TIME_AND_TEXT)
def test_time_and_text_functions_answer_as_duckdb(times, query):
    why = times.difference(query, _ordered(query))
    assert not why, why


@pytest.mark.parametrize("query, where", [
    ("SELECT a FROM ta\n  ASOF JOIN tb USING (a)", (2, 13)),
    ("SELECT a FROM ta LIMIT 50 PERCENT", (1, 24)),
    ("SELECT a, b FROM ta UNION ALL BY NAME\nSELECT b, a FROM tb", (2, 8)),
    ("SELECT a, sum(b) OVER (ORDER BY a ROWS 1 PRECEDING EXCLUDE CURRENT ROW) AS w FROM ta", (1, 11)),
    ("SELECT a, median(b) OVER (ORDER BY a) AS w FROM ta", (1, 11)),
    ("SELECT a,\n sum(DISTINCT b) OVER (PARTITION BY s) AS v FROM ta", (2, 2)),
    ("SELECT string_agg(s, s) AS v FROM ta", (1, 19)),
    ("SELECT a FROM ta LIMIT 2 + 1", (1, 24)),
    ("SELECT a FROM ta FETCH FIRST 2 ROWS WITH TIES", (1, 30)),
    ("SELECT * FROM ta ORDER BY ALL", (1, 15)),  # ALL keeps no position: the nearest name
    ("SELECT DISTINCT a FROM ta GROUP BY GROUPING SETS ((a), ())", (1, 52)),
    ("SELECT a, b FROM ta QUALIFY row_number() OVER (ORDER BY a) = 1 ORDER BY c", (1, 73)),
    ("SELECT a FROM ta, LATERAL (SELECT tb.b, row_number() OVER () AS r FROM tb WHERE tb.a = ta.a) x", (1, 94)),
    ("SELECT [1, 2, 3] AS v", (1, 9)),
])
def test_refused_constructs_say_where(differential, query, where):
    with pytest.raises(UnsupportedSql) as raised:
        differential.petrel(query)
    assert (raised.value.line, raised.value.column) == where, str(raised.value)


def test_doubles_print_as_duckdb_prints_them():
    """CAST(double AS VARCHAR) and || write a double as DuckDB does: 2.0, 1e-05, 12500000000.5, 1e+16."""
    values = [0.0, -0.0, 1.0, -2.0, 1.5, 0.1, 1e15, 1e16, 123456789.0, 1e20, 1e-5, -2.25e-6, 1e-4, 1.25e-7,
              float("inf"), 3.0e10, 5e-324, None, -1.5e15, -6165117920094.01, 31102237419.97029, 2.5e-3]
    pair = Differential({"tf": pa.table({"i": pa.array(range(len(values))), "x": pa.array(values, pa.float64())})})
    try:
        for query in ("SELECT i, CAST(x AS VARCHAR) AS v FROM tf", "SELECT i, x || '' AS v FROM tf"):
            got = dict(zip(*pair.petrel(query).to_pydict().values()))
            assert got == dict(pair.oracle.sql(query).fetchall()), query
        constants = "SELECT CAST(0.0e0 AS VARCHAR) AS a, CAST(-2e0 AS VARCHAR) AS b, CAST(1e15 AS VARCHAR) AS c, " \
                    "CAST(1e-5 AS VARCHAR) AS d, 1.5e0 || 'x' AS e"
        assert list(pair.petrel(constants).to_pylist()[0].values()) == list(pair.oracle.sql(constants).fetchall()[0])
    finally:
        pair.close()
