"""The join, set-operation, window and shuffle kernels on small Arrow tables, and SQL over them
planned and run in this process against DuckDB (no Ray)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.query.execution.exchange import bucket_of, partition
from engine.query.execution.join import join, set_operation
from engine.query.execution.window import window
from planner.logical import Join, SortKey, Values, WindowCall

LEFT = pa.table({"k": pa.array([1, 2, 2, None, 5], pa.int32()), "tags": pa.array([["a"], [], ["b", "c"], None, ["d"]])})
RIGHT = pa.table({"j": pa.array([2, 2, 3, None], pa.int64()), "v": ["x", "y", "z", "n"]})


def _join(kind: str, left=LEFT, right=RIGHT, keys=True) -> pa.Table:
    node = Join(Values((), ()), Values((), ()), kind, ("k",) if keys else (), ("j",) if keys else ())
    return join(left, right, node)


@pytest.mark.parametrize("kind, rows", [("inner", 4), ("left", 7), ("full", 9), ("semi", 2), ("anti", 3), ("cross", 20)])
def test_join_kinds_count_rows_with_null_keys_never_matching(kind, rows):
    assert _join(kind, keys=kind != "cross").num_rows == rows


def test_list_payloads_are_taken_by_row_number():
    got = _join("inner")
    assert sorted(map(tuple, got.column("tags").to_pylist())) == [(), (), ("b", "c"), ("b", "c")]


def test_not_in_follows_null_rules():
    assert _join("anti_in").num_rows == 0  # the subquery has a NULL: nothing is NOT IN it
    no_null = RIGHT.filter(pc.is_valid(RIGHT.column("j")))
    assert _join("anti_in", right=no_null).column("k").to_pylist() == [1, 5]  # a NULL probe is not kept
    assert _join("anti_in", right=RIGHT.slice(0, 0)).num_rows == LEFT.num_rows


def test_set_operations_keep_or_drop_duplicates():
    a = pa.table({"x": [1, 1, 2, None]})
    b = pa.table({"x": [1, None, 3]})
    assert sorted(set_operation([a, b], "union", True).column("x").to_pylist(), key=str) == [1, 2, 3, None]
    assert sorted(set_operation([a, b], "intersect", True).column("x").to_pylist(), key=str) == [1, None]
    assert set_operation([a, b], "except", False).column("x").to_pylist() == [1, 2]


def test_window_functions_over_ties_and_nulls():
    table = pa.table({"g": ["a", "a", "a", "b", "b"], "v": pa.array([3, 1, 3, None, 2])})
    order = (SortKey("v"),)
    calls = (
        WindowCall("rn", "row_number", (), (), ("g",), (SortKey("v"), SortKey("g")), ("rows", None, 0)),
        WindowCall("rk", "rank", (), (), ("g",), order, ("range", None, 0)),
        WindowCall("dr", "dense_rank", (), (), ("g",), order, ("range", None, 0)),
        WindowCall("s", "sum", ("v",), (), ("g",), order, ("range", None, 0)),
        WindowCall("mx", "max", ("v",), (), ("g",), order, ("rows", -1, 0)),
        WindowCall("lg", "lag", ("v",), (1,), ("g",), order, ("rows", None, None)),
    )
    got = window(table, calls).sort_by([("g", "ascending"), ("v", "ascending")]).to_pydict()
    assert got["rk"] == [1, 2, 2, 1, 2]
    assert got["dr"] == [1, 2, 2, 1, 2]
    assert got["s"] == [1, 7, 7, 2, 2]
    assert got["mx"][:1] == [1] and got["lg"][0] is None and got["lg"][3] is None


def test_shuffle_buckets_agree_across_key_types():
    ints = pa.table({"k": pa.array([1, 7, 42, None], pa.int32())})
    floats = pa.table({"k": pa.array([1.0, 7.0, 42.0, None])})
    assert list(bucket_of(ints, ("k",), 4)) == list(bucket_of(floats, ("k",), 4))
    parts = partition(pa.table({"k": list(range(100))}), ("k",), 3)
    assert sum(p.num_rows for p in parts) == 100 and all(p.num_rows for p in parts)


# -- the planner and the in-process executor against DuckDB, no Ray

OUTER = pa.table({"id": pa.array([1, 2, 3, None, 5, 6], pa.int64()), "g": pa.array([1, 1, 2, 2, None, 4], pa.int64()),
                  "v": pa.array([10, 20, 30, 40, 50, 60], pa.int64())})
INNER = pa.table({"g": pa.array([1, 1, 2, None, 3, 4], pa.int64()), "x": pa.array([1, None, 3, 4, 5, 7], pa.int64())})
TABLES = {"o": OUTER, "i": INNER, "e": INNER.slice(0, 0)}

SUBQUERIES = [
    # NOT IN per correlation group: empty group, a NULL in the group, a NULL probe, a NULL correlation key
    "SELECT * FROM o WHERE o.id NOT IN (SELECT i.x FROM i WHERE i.g = o.g)",
    "SELECT * FROM o WHERE o.g NOT IN (SELECT i.g FROM i WHERE i.x = o.id)",
    "SELECT * FROM o WHERE o.id NOT IN (SELECT i.x FROM i WHERE i.g = o.g AND i.x IS NOT NULL)",
    "SELECT * FROM o WHERE o.id NOT IN (SELECT i.x FROM i WHERE i.g = o.g AND i.x < o.v)",
    "SELECT * FROM o WHERE o.id NOT IN (SELECT i.x FROM i WHERE i.x < o.v / 10)",
    "SELECT * FROM o WHERE o.id NOT IN (SELECT e.x FROM e WHERE e.g = o.g)",
    "SELECT * FROM o WHERE o.id NOT IN (SELECT i.x FROM i)",
    "SELECT * FROM o WHERE o.id NOT IN (SELECT i.x FROM i WHERE i.x IS NOT NULL)",
    # a correlated scalar subquery over an empty group is its expression over an empty set
    "SELECT * FROM o WHERE o.v > (SELECT count(*) + 9 FROM i WHERE i.g = o.g)",
    "SELECT * FROM o WHERE 25 > (SELECT count(*) * 10 + count(DISTINCT i.x) FROM i WHERE i.g = o.g)",
    "SELECT * FROM o WHERE o.v > (SELECT coalesce(sum(i.x), 0) * 10 + count(i.x) FROM i WHERE i.g = o.g)",
    "SELECT * FROM o WHERE o.v < (SELECT max(i.x) * 10 FROM i WHERE i.g = o.g)",
    "SELECT * FROM o WHERE o.v > (SELECT count(*) + o.id FROM i WHERE i.g = o.g)",
    # uncorrelated EXISTS
    "SELECT * FROM o WHERE EXISTS (SELECT 1 FROM i WHERE i.x > 4)",
    "SELECT * FROM o WHERE NOT EXISTS (SELECT 1 FROM i WHERE i.x > 4)",
    "SELECT * FROM o WHERE EXISTS (SELECT 1 FROM e)",
    "SELECT * FROM o WHERE NOT EXISTS (SELECT 1 FROM e)",
]


def _run_local(query: str, tables: dict[str, pa.Table]) -> pa.Table:
    from engine.query.execution.operators import Execution, execute
    from planner.context import PlanContext
    from planner.logical import Memory
    from planner.planning import plan_query

    planned = plan_query(query, lambda name: Memory(name, tables[name]), context=PlanContext(distributed=False))
    return execute(planned.optimized, Execution())


def _oracle(query: str, tables: dict[str, pa.Table]) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return con.sql(query).to_arrow_table()


@pytest.mark.parametrize("query", SUBQUERIES)
def test_subqueries_match_duckdb(query):
    from tests.result_compare import assert_same

    assert_same(_run_local(query, TABLES), _oracle(query, TABLES), ordered=False, query=query)


def test_uncorrelated_exists_never_pairs_the_rows():
    big = pa.table({"k": pa.array(range(20_000), pa.int64())})  # 20,000 x 20,000 pairs would be refused
    assert _join("semi", big, big, keys=False).num_rows == 20_000
    assert _join("anti", big, big, keys=False).num_rows == 0
    assert _join("anti", big, big.slice(0, 0), keys=False).num_rows == 20_000


def _window_table(rows: int, groups: int) -> pa.Table:
    import numpy as np

    rng = np.random.default_rng(7)
    maybe = lambda values, every: pa.array([None if i % every == 0 else v for i, v in enumerate(values.tolist())])
    return pa.table({"id": np.arange(rows), "g": rng.integers(0, groups, rows), "v": maybe(rng.integers(0, 40, rows), 11),
                     "s": maybe(rng.integers(0, 30, rows).astype(str), 7)})


FRAMES = [
    "ORDER BY v, id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING",
    "ORDER BY v, id ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING",
    "ORDER BY v, id ROWS BETWEEN 1 FOLLOWING AND 5 FOLLOWING",
    "ORDER BY v, id ROWS BETWEEN 1 PRECEDING AND UNBOUNDED FOLLOWING",
    "ORDER BY v, id ROWS BETWEEN 2 FOLLOWING AND UNBOUNDED FOLLOWING",
    "ORDER BY v, id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING",
    "ORDER BY v, id ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING",
    "ORDER BY v RANGE BETWEEN CURRENT ROW AND CURRENT ROW",
    "ORDER BY v DESC NULLS FIRST RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING",
    "ORDER BY v",
]


@pytest.mark.parametrize("frame", FRAMES)
def test_sliding_min_max_match_duckdb(frame):
    from tests.result_compare import assert_same

    tables = {"t": _window_table(300, 4)}
    query = (f"SELECT id, min(v) OVER (PARTITION BY g {frame}) AS lo, max(v) OVER (PARTITION BY g {frame}) AS hi, "
             f"min(s) OVER (PARTITION BY g {frame}) AS slo, max(s) OVER ({frame}) AS shi FROM t")
    assert_same(_run_local(query, tables), _oracle(query, tables), ordered=False, query=query)


def test_min_max_to_the_partition_end_over_a_long_partition():
    from tests.result_compare import assert_same

    tables = {"t": _window_table(50_000, 1)}
    query = ("SELECT id, min(v) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND UNBOUNDED FOLLOWING) AS lo, "
             "max(s) OVER (ORDER BY id ROWS BETWEEN 1000 PRECEDING AND 2000 FOLLOWING) AS hi FROM t")
    assert_same(_run_local(query, tables), _oracle(query, tables), ordered=False, query=query)
