"""A query's memory budget: bounded reads give the same rows as unbounded ones, and stop at the limit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.query.execution.memory import STREAM_ROWS, MemoryBudget
from engine.query.execution.scan import SegmentReader
from storage.errors import QueryTooLarge
from storage.objectstore import ObjectStore
from storage.segment import write_segment

ROWS = STREAM_ROWS * 2 + 17  # one row group of more rows than a bounded read decodes at once


def _segments(store: ObjectStore) -> tuple[list, pa.Schema]:
    rng = np.random.default_rng(3)
    old = pa.table({"timestamp": pa.array(np.arange(ROWS), pa.timestamp("us", tz="UTC")),
                    "x": pa.array(rng.integers(0, 100, ROWS), pa.int32()),
                    "s": pa.array(np.array(["a", "b", "c"])[rng.integers(0, 3, ROWS)])})
    new = pa.table({"timestamp": pa.array(np.arange(ROWS, ROWS + 500), pa.timestamp("us", tz="UTC")),
                    "x": rng.random(500) * 100, "s": ["b"] * 500, "extra": ["e"] * 500})
    segments = [write_segment(store, "ns/t", t, partition=0, time_column="timestamp", row_group_size=t.num_rows)
                for t in (old, new)]
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("x", pa.float64()), ("s", pa.string()),
                        ("extra", pa.string())])
    return segments, schema


@pytest.mark.parametrize("columns, filter, stored", [
    (["x", "extra"], None, ["x", "extra"]),
    ({}, pc.field("s") == "b", ["s"]),  # COUNT(*) WHERE s = 'b': no column out, rows still counted
    ({"y": pc.field("x") * 2, "s": pc.field("s")}, pc.field("x") < 10, ["x", "s"]),
    (["s"], pc.field("extra") == "e", ["s", "extra"]),
])
def test_a_bounded_read_returns_the_rows_an_unbounded_one_does(columns, filter, stored):
    store = ObjectStore("memory://memory-budget-same")
    segments, schema = _segments(store)
    reader = SegmentReader(store)
    expected = reader.read("ns/t", schema, segments, columns, filter, stored=stored)
    budget = MemoryBudget(1 << 30)
    got = reader.read("ns/t", schema, segments, columns, filter, stored=stored,
                      charge=lambda n: budget.charge(n, "a scan"))
    assert got.num_rows == expected.num_rows and got.schema == expected.schema
    assert got.sort_by([(n, "ascending") for n in got.column_names]).equals(
        expected.sort_by([(n, "ascending") for n in expected.column_names])) if got.num_columns else True
    assert 0 < budget.peak < expected.nbytes + (8 << 20)


def test_a_bounded_read_stops_at_the_limit_and_says_by_how_much():
    store = ObjectStore("memory://memory-budget-stop")
    segments, schema = _segments(store)
    budget = MemoryBudget(1 << 20, "worker w")
    with pytest.raises(QueryTooLarge) as raised:
        SegmentReader(store).read("ns/t", schema, segments, ["timestamp", "x", "s"],
                                  charge=lambda n: budget.charge(n, "a scan of t"))
    error = raised.value
    assert error.limit == 1 << 20 and 1 << 20 < error.needed < 4 << 20  # stopped within a batch of the limit
    assert "1.0 MiB on worker w" in str(error) and "a scan of t" in str(error) and "LIMIT" in str(error)
    budget.release(budget.held)
    assert budget.held == 0
