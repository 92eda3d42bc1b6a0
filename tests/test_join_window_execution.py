"""The join, set-operation, window and shuffle kernels on small Arrow tables (no Ray)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.execution.exchange import bucket_of, partition
from engine.execution.join import join, set_operation
from engine.execution.window import window
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
