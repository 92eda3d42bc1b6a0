"""Partial states merged into partial states give the results of merging them all at once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.query.execution.aggregate import final, partial
from engine.query.execution.combine import combine
from engine.query.execution.operators import concat
from planner.logical import AggCall

CALLS = (
    AggCall("c", "count_star"), AggCall("k", "count", "x"), AggCall("s", "sum", "i"), AggCall("a", "avg", "x"),
    AggCall("lo", "min", "x"), AggCall("hi", "max", "i"), AggCall("sd", "stddev_samp", "x"),
    AggCall("vp", "var_pop", "x"), AggCall("q", "approx_quantile", "x", (0.9,)),
    AggCall("qd", "approx_quantile_dd", "x", (0.9,)), AggCall("qi", "approx_quantile_dd", "i", (0.5,)),
    AggCall("h", "approx_count_distinct", "i"), AggCall("b", "bool_or", "f"),
)


def fragments(count: int) -> list[pa.Table]:
    rng = np.random.default_rng(5)
    out = []
    for index in range(count):
        rows = int(rng.integers(0, 40))
        ints = rng.integers(-5, 50, rows)
        if index == 3 and rows:
            ints[0] = 4 * 10**18  # a fragment whose sums carry a double beside them, the others none
        out.append(pa.table({
            "g": pa.array(rng.choice(["a", "b", None], rows), pa.string()),
            "x": pa.array(np.where(rng.random(rows) < 0.2, np.nan, rng.normal(10, 3, rows)),
                          pa.float64()).fill_null(None) if rows else pa.array([], pa.float64()),
            "i": pa.array(ints, pa.int64()),
            "f": pa.array(rng.random(rows) < 0.1, pa.bool_()),
        }))
    return out


@pytest.mark.parametrize("keys", [("g",), ()])
def test_combined_blocks_merge_to_the_same_results_as_every_partial(keys):
    schema = fragments(1)[0].schema
    parts = [partial(t, keys, CALLS) for t in fragments(12)]
    direct = final(concat(parts), keys, CALLS, schema)
    blocks = [combine(concat(parts[i:i + 4]), keys, CALLS) for i in range(0, 12, 4)]
    twice = [combine(concat(blocks[:2]), keys, CALLS), blocks[2]]
    for merged in (final(concat(blocks), keys, CALLS, schema), final(concat(twice), keys, CALLS, schema)):
        assert merged.column_names == direct.column_names
        order = [(k, "ascending") for k in keys]
        want, got = (t.sort_by(order).to_pylist() if keys else t.to_pylist() for t in (direct, merged))
        for row_want, row_got in zip(want, got, strict=True):
            assert row_got.keys() == row_want.keys()
            for name, value in row_want.items():
                if name == "q":  # past KLL_K values a sketch merged in another order is another approximation
                    assert row_got[name] == pytest.approx(value, rel=0.05), name
                elif isinstance(value, float):
                    assert row_got[name] == pytest.approx(value, rel=1e-9, abs=1e-9, nan_ok=True), name
                else:
                    assert row_got[name] == value, name


def test_exact_value_lists_are_not_combined():
    part = partial(fragments(1)[0], ("g",), (AggCall("m", "quantile_cont", "x", (0.5,)),))
    assert combine(part, ("g",), (AggCall("m", "quantile_cont", "x", (0.5,)),)) is None
