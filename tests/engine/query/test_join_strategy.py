"""Join strategies and shuffles: what EXPLAIN says, and that shuffled plans still give DuckDB's rows (no Ray).

Strategy tests plan over table sources whose manifest claims sizes (no
data is read).  The execution tests store small tables as segments in
``memory://`` and run the distributed plan stage by stage in this
process: every Shuffle's input runs per fragment and is hash-partitioned,
every bucket is joined on its own, as the workers would.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.query.execution.exchange import partition
from engine.query.execution.operators import Execution, concat, execute
from engine.query.execution.scan import SegmentReader
from planner.context import PlanContext
from planner.explain import explain
from planner.fragments import stage_plan, stage_scan
from planner.logical import Broadcast, Gather, Join, Shuffle, TableSource, Window
from planner.planning import plan_query
from tests.result_compare import assert_same
from storage.catalog import Catalog, TableMeta
from storage.objectstore import ObjectStore
from storage.segment import SegmentEntry
from storage.snapshot import load_snapshot
from tests.tpch_tables import load_tables

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("timestamp", pa.timestamp("us"))])


def _sized(name: str, nbytes: int) -> TableSource:
    segments = tuple(SegmentEntry(f"{name}{i}", f"data/{name}{i}.parquet", i % 2, 1000, nbytes // 4, None, None, {}, SCHEMA)
                     for i in range(4))
    return TableSource(TableMeta("default", name, partitions=2, schema=SCHEMA), SCHEMA, segments, {0: 1, 1: 1})


SIZED = {"big": _sized("big", 1_000_000_000), "big2": _sized("big2", 900_000_000), "small": _sized("small", 10_000)}


def _joins(query: str) -> list[Join]:
    planned = plan_query(query, SIZED.__getitem__, context=PlanContext(broadcast_bytes=1_000_000, buckets=2))
    return [node for node in planned.optimized.walk() if isinstance(node, Join)]


def _explain(query: str) -> str:
    planned = plan_query(query, SIZED.__getitem__, context=PlanContext(broadcast_bytes=1_000_000, buckets=2))
    return explain(planned.logical, planned.optimized)


@pytest.mark.parametrize("query", [
    "SELECT count(*) FROM small s LEFT JOIN big b ON s.k = b.k",
    "SELECT count(*) FROM small s WHERE s.k IN (SELECT k FROM big)",
    "SELECT count(*) FROM small s WHERE NOT EXISTS (SELECT 1 FROM big b WHERE b.k = s.k)",
    "SELECT count(*) FROM small s WHERE s.k NOT IN (SELECT b.k FROM big b WHERE b.v = s.v)",
])
def test_a_huge_inner_side_of_a_preserving_join_is_shuffled_not_broadcast(query):
    (join,) = _joins(query)
    assert join.strategy == "shuffle"
    assert "the right side exceeds the broadcast limit and the left side is the preserved side" in join.reason
    text = _explain(query)
    assert "[shuffle: the right side exceeds the broadcast limit" in text and "hash shuffle" in text
    assert "small enough" not in text


def test_a_correlated_not_in_shuffles_on_its_correlation_keys():
    (join,) = _joins("SELECT count(*) FROM small s WHERE s.k NOT IN (SELECT b.k FROM big b WHERE b.v = s.v)")
    assert [n.keys for n in (join.left, join.right)] == [("s.v",), join.right_keys[:1]]


def test_an_uncorrelated_not_in_is_broadcast_and_says_why():
    (join,) = _joins("SELECT count(*) FROM small s WHERE s.k NOT IN (SELECT k FROM big)")
    assert join.strategy == "broadcast" and "uncorrelated NOT IN must see the whole subquery" in join.reason
    assert "[broadcast: an uncorrelated NOT IN" in _explain("SELECT count(*) FROM small s WHERE s.k NOT IN (SELECT k FROM big)")


def test_small_inner_sides_are_broadcast_and_large_pairs_shuffled():
    (small,) = _joins("SELECT count(*) FROM big b WHERE NOT EXISTS (SELECT 1 FROM small s WHERE s.v = b.v)")
    assert small.strategy == "broadcast" and small.reason.startswith("the right side is small enough")
    (large,) = _joins("SELECT count(*) FROM big a JOIN big2 b ON a.k = b.k")
    assert large.strategy == "shuffle" and large.reason.startswith("both sides exceed the broadcast limit")


def test_window_functions_run_after_a_shuffle_on_their_partition_keys():
    planned = plan_query("SELECT k, v, row_number() OVER (PARTITION BY v ORDER BY k) AS r FROM big", SIZED.__getitem__,
                         context=PlanContext(broadcast_bytes=1_000_000, buckets=2))
    (window,) = [n for n in planned.optimized.walk() if isinstance(n, Window)]
    assert isinstance(window.input, Shuffle) and window.input.keys == ("big.v",)
    text = explain(planned.logical, planned.optimized)
    assert "hash shuffle" in text and "on big.v into 2 buckets" in text


# -- shuffled plans executed in this process

def _exchanges(plan):
    if isinstance(plan, (Gather, Broadcast, Shuffle)):
        return [plan]
    return [found for child in plan.inputs for found in _exchanges(child)]


def _stage(plan, reader, shuffle: Shuffle | None, fragments: int = 3) -> list:
    """Run the stage below an exchange: one table per fragment (or, for a shuffle, its buckets per fragment)."""
    inputs, shuffled = {}, {}
    for node in _exchanges(plan):
        if isinstance(node, Broadcast):
            inputs[node.key] = _complete(node.input, reader)
        elif isinstance(node, Shuffle):
            shuffled[node.key] = _stage(node.input, reader, node)
        else:
            raise AssertionError("a gather inside a fragment stage")
    body, scan = stage_plan(Gather(plan)), stage_scan(plan)
    outputs = []
    if shuffled:
        buckets = len(next(iter(shuffled.values()))[0])
        for bucket in range(buckets):
            parts = dict(inputs)
            for key, per_fragment in shuffled.items():
                parts[key] = concat([p[bucket] for p in per_fragment])
            outputs.append(execute(body, Execution(reader=reader, segments=(), inputs=parts)))
    else:
        segments = tuple(scan.segments or ()) if scan is not None else ()
        groups = [segments[i::fragments] for i in range(min(fragments, len(segments)))] or [()]
        outputs = [execute(body, Execution(reader=reader, segments=g, inputs=dict(inputs))) for g in groups]
    if shuffle is not None:
        return [partition(t, shuffle.keys, shuffle.buckets) for t in outputs]
    return outputs


def _complete(plan, reader) -> pa.Table:
    run = Execution(reader=reader)
    for node in _exchanges(plan):
        run.gathered[id(node)] = concat(_stage(node.input, reader, None))
    return execute(plan, run)


@pytest.fixture(scope="module")
def stored():
    ids = pa.array(range(400), pa.int64())
    tables = {
        "facts": pa.table({"k": ids, "g": pc.cast(pc.divide(ids, 7), pa.int64()),
                           "x": pa.array([None if i % 13 == 0 else i % 50 for i in range(400)], pa.int64()),
                           "code": pa.array([str(i % 60) for i in range(400)])}),
        "dims": pa.table({"k": pa.array(range(0, 400, 3), pa.int64()), "g": pa.array([i % 9 for i in range(0, 400, 3)], pa.int64()),
                          "num": pa.array([i % 70 for i in range(0, 400, 3)], pa.int64())}),
    }
    store = ObjectStore("memory://join-strategy")
    load_tables(store, tables, rows_per_segment=40)
    catalog = Catalog(store)

    def resolve(name):
        meta = catalog.table("default", name)
        snapshot = load_snapshot(store, meta)
        return TableSource(meta, snapshot.schema, snapshot.segments, dict(snapshot.versions))

    oracle = duckdb.connect()
    for name, table in tables.items():
        oracle.register(name, table)
    return resolve, SegmentReader(store), oracle


SHUFFLED = [
    "SELECT d.k, f.k AS fk FROM dims d LEFT JOIN facts f ON d.k = f.k AND f.x > 10",
    "SELECT count(*) FROM dims d WHERE d.k IN (SELECT f.k FROM facts f WHERE f.x > 20)",
    "SELECT d.k FROM dims d WHERE d.num NOT IN (SELECT f.x FROM facts f WHERE f.g = d.g)",
    "SELECT d.k FROM dims d WHERE d.num NOT IN (SELECT f.x FROM facts f WHERE f.g = d.g AND f.x IS NOT NULL)",
    "SELECT f.k, d.k AS dk FROM facts f JOIN dims d ON f.code = d.num",
    "SELECT count(*) FROM dims d WHERE EXISTS (SELECT 1 FROM facts f WHERE f.code = d.num)",
    "SELECT k, g, x, row_number() OVER (PARTITION BY g ORDER BY k) AS r, min(x) OVER (PARTITION BY g ORDER BY k "
    "ROWS BETWEEN 1 PRECEDING AND UNBOUNDED FOLLOWING) AS m FROM facts",
]


@pytest.mark.parametrize("query", SHUFFLED)
def test_shuffled_plans_match_duckdb(stored, query):
    resolve, reader, oracle = stored
    planned = plan_query(query, resolve, context=PlanContext(broadcast_bytes=100, buckets=3))
    assert any(isinstance(n, Shuffle) for n in planned.optimized.walk()), "the plan was meant to shuffle"
    assert_same(_complete(planned.optimized, reader), oracle.sql(query.replace("f.code = d.num", "f.code = CAST(d.num AS VARCHAR)")).to_arrow_table(),
                ordered=False, query=query)
