"""Constructs Petrel does not run yet are refused with UnsupportedSql at their line and column, never a crash."""

from __future__ import annotations

import pyarrow as pa
import pytest

from planner.logical import Memory
from storage.errors import SqlError, UnsupportedSql

EVENTS = pa.table({
    "a": pa.array([1, 2], pa.int64()),
    "s": pa.array(["x", "y"]),
    "ts": pa.array([0, 1], pa.timestamp("us")),
})


@pytest.fixture
def plan(planner_over):
    return planner_over({name: Memory(name, EVENTS) for name in ("t", "u")})


@pytest.mark.parametrize("query, where, fragment", [
    ("SELECT a FROM t\nQUALIFY row_number() OVER (ORDER BY a) = 1\nORDER BY s", (3, 10), "QUALIFY"),
    ("WITH RECURSIVE r AS (SELECT 1 AS x) SELECT x FROM r", (1, 16), "RECURSIVE"),
    ("SELECT DISTINCT ON (a) a FROM t", (1, 21), "DISTINCT ON"),
    ("SELECT a FROM t LIMIT a", (1, 23), "LIMIT"),
    ("SELECT ts + INTERVAL 1 MONTH FROM t", (1, 8), "month"),
    ("SELECT a FROM t SEMI JOIN u ON t.a = u.a", (1, 27), "SEMI"),
    ("SELECT CAST(a AS JSON) FROM t", (1, 13), "JSON"),
    ("SELECT a FROM t\nWHERE s SIMILAR TO 'x'", (2, 7), "SIMILAR"),
    ("SELECT a FROM t WHERE foo(s) > 1", (1, 23), "foo()"),
    ("SELECT a FROM t TABLESAMPLE 10%", (1, 15), "TABLESAMPLE"),
    ("SELECT a FROM t PIVOT (sum(a) FOR s IN ('x'))", (1, 28), "PIVOT"),
    ("SELECT x FROM t, unnest([1, 2]) AS x", (1, 36), "UNNEST"),
    ("SELECT DISTINCT a FROM t GROUP BY ROLLUP (a)", (1, 43), "ROLLUP"),
    ("SELECT date_trunc('fortnight', ts) FROM t", (1, 8), "fortnight"),
])
def test_unsupported_constructs_say_where(query, where, fragment, plan):
    """``where`` is the first name inside the construct (the parser keeps positions of names)."""
    with pytest.raises(UnsupportedSql) as raised:
        plan(query)
    assert fragment.lower() in str(raised.value).lower()
    assert (raised.value.line, raised.value.column) == where, str(raised.value)


@pytest.mark.parametrize("query", [
    "SELECT a FROM t WHERE a = ?", "SELECT [1, 2]", "SELECT {'k': 1}",
    "SELECT t.a FROM t, LATERAL (SELECT u.a FROM u WHERE u.a = t.a UNION SELECT 1) x",
    "SELECT a, (SELECT count(*) FROM u x WHERE x.a < t.a) FROM t",
])
def test_other_refusals_are_sql_errors(query, plan):
    with pytest.raises(SqlError):
        plan(query)


def test_fetch_first_is_a_limit_and_repeated_group_keys_group_once(plan):
    assert plan("SELECT a FROM t FETCH FIRST 1 ROWS ONLY").optimized is not None
    assert plan("SELECT a, count(*) FROM t GROUP BY a, a").optimized.columns == ("a", "count(*)")
    assert plan("SELECT s, a, count(*) FROM t GROUP BY a, a, s").optimized.columns == ("s", "a", "count(*)")
