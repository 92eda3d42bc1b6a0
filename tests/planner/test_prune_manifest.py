"""Statistics pruning over a snapshot's arrays decides exactly as the per-segment test does."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pytest

from planner.predicates import Bound
from planner.rules.prune_segments import _Manifest, may_match
from storage.segment import ColumnStats, SegmentEntry

SCHEMA = pa.schema([("t", pa.timestamp("us", tz="UTC")), ("n", pa.int64()), ("s", pa.string())])


def _segments(seed: int) -> tuple[SegmentEntry, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(300):
        rows = int(rng.integers(0, 5))
        columns = {}
        if rng.random() < 0.9:
            lo = int(rng.integers(-50, 50))
            nulls = int(rng.integers(0, rows + 1)) if rows else 0
            bounds = (None, None) if rng.random() < 0.1 else (lo, lo + int(rng.integers(0, 30)))
            columns["n"] = ColumnStats(*bounds, nulls)
            columns["s"] = ColumnStats(f"k{lo + 50:03d}", f"k{lo + 80:03d}", 0)
        schema = SCHEMA if rng.random() < 0.85 else pa.schema([("t", SCHEMA.field("t").type)])
        out.append(SegmentEntry(id=f"s{i}", path=f"s{i}", partition=0, rows=rows, bytes=1, min_time=i, max_time=i,
                                columns=columns, schema=schema))
    return tuple(out)


TESTS = [Bound("n", op, (v,)) for op in ("eq", "gt", "gte", "lt", "lte") for v in (-60, -3, 0, 17, 90)] + [
    Bound("n", "between", (5, 9)), Bound("n", "in", (None, -40, 70)), Bound("n", "in", (None,)),
    Bound("n", "null"), Bound("n", "not_null"), Bound("n", "eq", (None,)), Bound("s", "eq", ("k060",)),
    Bound("s", "gt", ("k120",)), Bound("n", "eq", ("text",)),  # not comparable: decided segment by segment
    Bound("missing", "null"), Bound("missing", "eq", (1,)),
]


@pytest.mark.parametrize("seed", [1, 2])
def test_arrays_decide_like_the_per_segment_test(seed):
    segments = _segments(seed)
    manifest = _Manifest(segments)
    everything = np.arange(len(segments))
    for test in TESTS:
        expected = [may_match(test, s) for s in segments]
        assert manifest.may_match(test, everything).tolist() == expected, test
    either = ("or", [Bound("n", "lt", (-40,)), Bound("n", "gt", (70,))])
    expected = [may_match(either[1][0], s) or may_match(either[1][1], s) for s in segments]
    assert manifest.may_match(either, everything).tolist() == expected
    assert manifest.in_time_range(10, 20).tolist() == list(range(10, 21))
