"""The rules that replaced the builder's inline work: predicate pushdown, join ordering, column pruning, merged renames."""

from __future__ import annotations

from typing import Callable

import pyarrow as pa
import pytest

from planner.logical import Filter, Join, Plan, Project, Scan, TableSource
from storage.catalog import TableMeta
from storage.segment import SegmentEntry

SCHEMAS = {
    "facts": pa.schema([("ts", pa.timestamp("us")), ("k", pa.int64()), ("v", pa.float64()), ("note", pa.string())]),
    "dims": pa.schema([("ts", pa.timestamp("us")), ("k", pa.int64()), ("name", pa.string()), ("extra", pa.string())]),
    "tiny": pa.schema([("ts", pa.timestamp("us")), ("flag", pa.bool_())]),
}
BYTES = {"facts": 10_000_000, "dims": 50_000, "tiny": 1_000}


def _source(name: str) -> TableSource:
    schema = SCHEMAS[name]
    segment = SegmentEntry(id=f"{name}-0", path=f"data/{name}.parquet", partition=0, rows=100, bytes=BYTES[name],
                           min_time=0, max_time=1, columns={}, schema=schema)
    return TableSource(TableMeta("default", name, time_column="ts"), schema, (segment,))


@pytest.fixture
def optimize(planner_over) -> Callable[[str], Plan]:
    plan = planner_over({name: _source(name) for name in SCHEMAS})
    return lambda sql: plan(sql).optimized


def _scans(plan: Plan) -> dict[str, Scan]:
    return {n.source.name: n for n in plan.walk() if isinstance(n, Scan)}


def _joins(plan: Plan) -> list[Join]:
    return [n for n in plan.walk() if isinstance(n, Join)]


def test_where_conditions_reach_the_scan_of_each_side_and_equalities_become_keys(optimize):
    plan = optimize("SELECT d.name, count(*) FROM dims d JOIN facts f ON f.k = d.k "
                      "WHERE f.v > 3 AND d.name = 'x' GROUP BY d.name")
    scans = _scans(plan)
    assert "v" in scans["facts"].filter.sql() and "name" in scans["dims"].filter.sql()
    assert not any(isinstance(n, Filter) for n in plan.walk())
    (join,) = _joins(plan)
    assert (join.left_keys, join.right_keys, join.condition) == (("f.k",), ("d.k",), None)


def test_the_largest_input_drives_and_linked_inputs_join_before_unlinked_ones(optimize):
    plan = optimize("SELECT count(*) FROM tiny t, dims d, facts f WHERE f.k = d.k")
    outer, inner = _joins(plan)
    assert outer.kind == "cross" and _scans(outer.right).keys() == {"tiny"}
    assert inner.kind == "inner" and _scans(inner.left).keys() == {"facts"} and _scans(inner.right).keys() == {"dims"}


def test_scans_read_only_the_columns_the_query_uses(optimize):
    scans = _scans(optimize("SELECT d.name, sum(f.v) FROM facts f JOIN dims d ON f.k = d.k GROUP BY d.name"))
    assert scans["facts"].columns == ("k", "v") and scans["dims"].columns == ("k", "name")


def test_a_condition_on_the_null_extended_side_of_a_left_join_stays_above_it(optimize):
    plan = optimize("SELECT f.k FROM facts f LEFT JOIN dims d ON f.k = d.k WHERE d.name IS NULL AND f.v > 1")
    scans = _scans(plan)
    assert scans["dims"].filter is None and "v" in scans["facts"].filter.sql()
    (join,) = _joins(plan)
    filters = [n for n in plan.walk() if isinstance(n, Filter)]
    assert len(filters) == 1 and join in list(filters[0].walk()) and "name" in filters[0].condition.sql()


def test_a_single_table_query_keeps_one_projection_over_its_scan(optimize):
    plan = optimize("SELECT k, v * 2 AS w FROM facts WHERE v > 1")
    projections = [n for n in plan.walk() if isinstance(n, Project)]
    assert len(projections) == 1 and isinstance(projections[0].input, Scan)
    assert projections[0].input.columns == ("k", "v")
