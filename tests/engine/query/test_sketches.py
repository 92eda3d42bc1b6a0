"""approx_count_distinct and approx_quantile: small mergeable sketch states, answers within their error bounds."""

from __future__ import annotations

import datasketches
import duckdb
import numpy as np
import pyarrow as pa
import pytest

import engine
from engine.query.execution import aggregate
from engine.query.execution.sketches import DD_ACCURACY, HLL_LG_K, KLL_K, kll_quantiles, kll_states, kll_unions
from tests.event_data import load_events
from planner.logical import AggCall
from storage.objectstore import ObjectStore

HLL_BOUND = 3 * 1.04 / np.sqrt(2**HLL_LG_K)  # three standard errors
KLL_RANK_BOUND = 0.0165  # normalized rank error of k=200 at 99% confidence


def _fragments(table: pa.Table, parts: int) -> list[pa.Table]:
    bounds = [i * table.num_rows // parts for i in range(parts + 1)]
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]


def _merged(table: pa.Table, keys: tuple[str, ...], calls: tuple[AggCall, ...], parts: int = 4):
    states = pa.concat_tables([aggregate.partial(p, keys, calls) for p in _fragments(table, parts)])
    return states, aggregate.final(states, keys, calls, table.schema)


def test_distinct_counts_merge_across_fragments_within_the_hll_bound():
    rng = np.random.default_rng(7)
    values = rng.integers(0, 60_000, 200_000)
    table = pa.table({"g": values % 3, "v": values, "s": pa.array(values.astype(str)).cast(pa.string())})
    calls = (AggCall("n", "approx_count_distinct", "v"), AggCall("t", "approx_count_distinct", "s"))
    states, merged = _merged(table, ("g",), calls)
    exact = {g: len(set(values[values % 3 == g])) for g in range(3)}
    for row in merged.to_pylist():
        for name in ("n", "t"):
            assert abs(row[name] - exact[row["g"]]) <= HLL_BOUND * exact[row["g"]], (row, exact)
    # one sketch (a byte per register) per fragment and group, not the values
    assert states.column("n__h").nbytes <= states.num_rows * (2**HLL_LG_K + 128) < values.nbytes / 20


def test_small_distinct_counts_are_exact_and_nulls_do_not_count():
    table = pa.table({"v": pa.array([1, 2, None, 2, 3, None, 1], pa.int64()),
                      "t": pa.array(["a", None, "b", "a", "c", "c", None])})
    calls = (AggCall("n", "approx_count_distinct", "v"), AggCall("m", "approx_count_distinct", "t"))
    _, merged = _merged(table, (), calls, parts=3)
    assert merged.to_pylist() == [{"n": 3, "m": 3}]
    _, empty = _merged(table.slice(0, 0), (), calls, parts=1)
    assert empty.to_pylist() == [{"n": 0, "m": 0}]


def test_quantiles_merge_across_fragments_within_the_kll_rank_bound():
    rng = np.random.default_rng(11)
    values = rng.lognormal(3.0, 1.0, 100_000)
    table = pa.table({"v": values})
    fractions = (0.01, 0.5, 0.9, 0.99)
    calls = tuple(AggCall(f"q{i}", "approx_quantile", "v", (f,)) for i, f in enumerate(fractions))
    states, merged = _merged(table, (), calls, parts=5)
    ordered = np.sort(values)
    for index, fraction in enumerate(fractions):
        got = merged.column(f"q{index}")[0].as_py()
        rank = np.searchsorted(ordered, got, side="right") / len(ordered)
        assert abs(rank - fraction) <= KLL_RANK_BOUND, (fraction, got, rank)
    assert states.column("q0__k").nbytes < 64 * 1024  # vs 800 KB of values


def test_quantiles_of_timestamps_and_empty_groups():
    times = pa.array(np.arange(1000, dtype=np.int64) * 1_000_000).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table({"g": pa.array([0] * 1000), "t": times, "v": pa.array([None] * 1000, pa.float64())})
    calls = (AggCall("m", "approx_quantile", "t", (0.5,)), AggCall("e", "approx_quantile", "v", (0.5,)))
    _, merged = _merged(table, ("g",), calls)
    middle = merged.column("m")[0].as_py()
    assert merged.column("m").type == pa.timestamp("us", tz="UTC")
    assert abs(middle.timestamp() - 500) <= 1000 * KLL_RANK_BOUND
    assert merged.column("e").to_pylist() == [None]


def test_small_quantile_states_keep_their_values_and_answer_as_a_sketch_of_them_would():
    rng = np.random.default_rng(3)
    sizes = [0, 1, 7, KLL_K, KLL_K + 1, 3 * KLL_K]  # raw states up to KLL_K values, sketches past it
    values = [rng.lognormal(3.0, 1.0, n) for n in sizes]
    groups = np.repeat(np.arange(len(sizes)), sizes)
    flat = np.concatenate(values)
    table = pa.table({"g": groups, "v": pa.array(flat, mask=rng.random(len(flat)) < 0.1)})  # NULLs do not count
    calls = (AggCall("q", "approx_quantile", "v", (0.7,)),)
    states, merged = _merged(table, ("g",), calls, parts=3)
    kinds = {}
    for g, state in zip(states.column("g").to_pylist(), states.column("q__k").to_pylist()):
        kinds.setdefault(g, set()).add(state[:1] == b"\xff")
    assert all(kinds[g] == {True} for g in (1, 2, 3))  # at most KLL_K values per fragment: kept as they are
    assert kinds[5] == {False}  # more than KLL_K values in each fragment it spans: sketches
    expected = {}
    for g, group_values in enumerate(values):
        valid = table.filter(pa.compute.equal(table.column("g"), g)).column("v").drop_null().to_numpy()
        if len(valid):
            sketch = datasketches.kll_doubles_sketch(KLL_K)
            sketch.update(np.array(valid, dtype=np.float64))
            expected[g] = sketch.get_quantile(0.7)
    got = dict(zip(merged.column("g").to_pylist(), merged.column("q").to_pylist()))
    for g in (1, 2, 3):  # exact values: the same answer as one sketch of them
        assert got[g] == expected[g], g
    assert got.get(0) is None
    for g in (4, 5):  # merged from raw parts and sketches alike, within the bound
        ordered = np.sort(table.filter(pa.compute.equal(table.column("g"), g)).column("v").drop_null().to_numpy())
        rank = np.searchsorted(ordered, got[g], side="right") / len(ordered)
        assert abs(rank - 0.7) <= KLL_RANK_BOUND, g


def test_merged_quantile_states_stay_raw_while_they_hold_at_most_kll_k_values():
    parts = [np.arange(i * 10, i * 10 + 10, dtype=np.float64) for i in range(30)]
    states = [kll_states(pa.array([part], pa.list_(pa.float64())))[0].as_py() for part in parts]
    lists = pa.array([states[:20], states[20:], states[:25]], pa.list_(pa.binary()))
    unions = kll_unions(lists).to_pylist()
    assert [u[:1] == b"\xff" for u in unions] == [True, True, False]  # 200 and 100 values raw; 250 a sketch
    assert np.frombuffer(unions[1][1:], "<f8").tolist() == np.concatenate(parts[20:]).tolist()
    medians = kll_quantiles(pa.array([[u] for u in unions], pa.list_(pa.binary())), 0.5, pa.float64()).to_pylist()
    assert medians[:2] == [100.0, 250.0]


def test_histogram_quantiles_are_within_one_percent_of_quantile_disc_and_merge_exactly():
    rng = np.random.default_rng(17)
    values = np.concatenate([rng.lognormal(3.0, 2.0, 30_000), -rng.lognormal(0.0, 1.0, 3_000), np.zeros(500),
                             [np.inf, -np.inf, 5e-324, 1.7e308], rng.integers(1, 9, 2_000).astype(np.float64)])
    rng.shuffle(values)
    groups = rng.integers(0, 5, len(values))
    groups[:7] = 5  # a group of seven values (and a sixth group)
    nulls = rng.random(len(values)) < 0.05
    table = pa.table({"g": groups, "v": pa.array(values, mask=nulls)})
    fractions = (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0)
    calls = tuple(AggCall(f"q{i}", "approx_quantile_dd", "v", (f,)) for i, f in enumerate(fractions))
    _, merged = _merged(table, ("g",), calls, parts=7)
    oracle = duckdb.connect()
    oracle.register("t", table)
    selected = ", ".join(f"quantile_disc(v, {f})" for f in fractions)
    exact = {row[0]: row[1:] for row in oracle.execute(f"SELECT g, {selected} FROM t GROUP BY g").fetchall()}
    got = {row["g"]: row for row in merged.to_pylist()}
    assert got.keys() == exact.keys()
    for g, want in exact.items():
        for index, value in enumerate(want):  # the bucket of the value quantile_disc picks
            assert got[g][f"q{index}"] == pytest.approx(value, rel=DD_ACCURACY * 1.0001, abs=0), (g, fractions[index])
    # merging is exact: one partial over all rows, or fragments combined in any grouping, give the same answers
    one = aggregate.partial(table, ("g",), calls)
    whole = aggregate.final(one, ("g",), calls, table.schema)
    assert whole.sort_by("g").equals(merged.sort_by("g"))
    assert one.column("q0__dd").nbytes < values.nbytes / 5  # an entry per bucket, not per value
    nothing = table.filter(pa.compute.is_null(table.column("v")))  # NULL (and NaN) are no values
    _, empty = _merged(nothing, (), calls[:1], parts=2)
    assert empty.to_pylist() == [{"q0": None}]
    # a histogram counting the rows a boolean column marks (NULL: not) is the histogram of those rows alone
    marks = rng.random(len(values)) < 0.4
    masked = table.append_column("m", pa.array(marks, mask=rng.random(len(values)) < 0.1))
    counted = (AggCall("a", "approx_quantile_dd", "v", (0.9,), by=("m",)),
               AggCall("b", "approx_quantile_dd", "v", (0.9,)))
    states = aggregate.partial(masked, ("g",), counted)
    alone = aggregate.partial(masked.filter(pa.compute.fill_null(masked.column("m"), False)), ("g",), calls[:1])
    by_group = dict(zip(states.column("g").to_pylist(), states.column("a__dd").to_pylist()))
    assert dict(zip(alone.column("g").to_pylist(), alone.column("q0__dd").to_pylist())) == \
        {g: entries for g, entries in by_group.items() if entries}
    assert states.column("b__dd").equals(aggregate.partial(masked, ("g",), calls[:1]).column("q0__dd"))


def test_a_histogram_finished_as_itself_lists_each_groups_entries_which_add_up_to_one_partials():
    """``dd_histogram`` (what monitor rollups ask for): each group's entries from every fragment, not added up;
    adding them gives the histogram one partial over all the rows has, and its states are approx_quantile_dd's."""
    rng = np.random.default_rng(11)
    values = rng.lognormal(2, 1, 30_000) * rng.choice([-1, 1], 30_000)
    table = pa.table({"g": rng.integers(0, 5, 30_000), "v": pa.array(values, mask=rng.random(30_000) < 0.05)})
    listed = (AggCall("h", "dd_histogram", "v", (0.5,)),)
    states, merged = _merged(table, ("g",), listed, parts=6)
    whole = aggregate.partial(table, ("g",), (AggCall("h", "approx_quantile_dd", "v", (0.5,)),))
    assert states.column("h__dd").equals(pa.concat_tables(
        [aggregate.partial(p, ("g",), listed) for p in _fragments(table, 6)]).column("h__dd"))

    def added(entries: list[int]) -> dict[int, int]:
        counts: dict[int, int] = {}
        for entry in entries:
            counts[entry >> 44] = counts.get(entry >> 44, 0) + (entry & ((1 << 44) - 1))
        return counts

    got = {g: added(entries) for g, entries in zip(merged.column("g").to_pylist(), merged.column("h").to_pylist())}
    assert got == {g: added(entries) for g, entries in zip(whole.column("g").to_pylist(),
                                                             whole.column("h__dd").to_pylist())}
    assert sum(len(e) for e in merged.column("h").to_pylist()) > sum(len(e) for e in whole.column("h__dd").to_pylist())
    one = aggregate.final(whole, ("g",), listed, table.schema, whole=True)  # one partial: its lists as they are
    assert one.column("h").equals(whole.column("h__dd"))


@pytest.fixture(scope="module")
def events(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sketches") / "warehouse")
    _, rows = load_events(ObjectStore(root), hours=24, partitions=2, rows_per_segment=200)
    oracle = duckdb.connect()
    oracle.register("events", rows)
    db = engine.connect(root)
    yield db, oracle
    db.close()


def test_sql_approximate_aggregates_against_exact_answers(events):
    db, oracle = events
    got = db.sql("SELECT service, approx_count_distinct(user_id) AS users, approx_quantile(latency_ms, 0.9) AS p90 "
                 "FROM events GROUP BY service").to_pylist()
    exact = {r[0]: r[1:] for r in oracle.execute("SELECT service, count(DISTINCT user_id), "
                                             "list_sort(list(latency_ms)) FROM events GROUP BY service").fetchall()}
    assert len(got) == len(exact)
    for row in got:
        users, latencies = exact[row["service"]]
        assert abs(row["users"] - users) <= max(1, HLL_BOUND * users)
        latencies = np.array([v for v in latencies if v is not None], dtype=np.float64)
        rank = np.searchsorted(latencies, row["p90"], side="right") / len(latencies)
        assert abs(rank - 0.9) <= KLL_RANK_BOUND
    plan = db.explain("SELECT approx_count_distinct(user_id) FROM events")
    assert "approx_count_distinct(user_id" in plan
    assert db.sql("SELECT count(DISTINCT user_id) AS n FROM events").column("n")[0].as_py() == \
        oracle.execute("SELECT count(DISTINCT user_id) FROM events").fetchone()[0]
