"""Monitors differing in their WHERE, evaluated from rollups: the same values as each query run on its own."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.monitors import rollup
from engine.monitors.compile import shape_of
from engine.monitors.definition import build_spec
from engine.monitors.evaluate import Evaluator
from engine.monitors.queries import LocalQueries
from engine.monitors.rollup import series_of
from tests.engine.monitors.monitor_fixtures import BASE, assert_same_values, batched_and_alone

SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("svc", pa.string()),
    ("host", pa.string()),
    ("region", pa.string()),
    ("status", pa.int64()),
    ("latency", pa.float64()),
    ("bytes", pa.int64()),
])
VALUES = [
    "count(*)", "count(latency)", "sum(bytes)", "sum(latency)", "avg(latency)", "min(latency)", "max(bytes)",
    "count(*) FILTER (WHERE status >= 500) * 100.0 / count(*)", "coalesce(max(latency), -1) - min(latency)",
    "sum(bytes) FILTER (WHERE region = 'r1') / 1000", "approx_quantile(latency, 0.99)",
    "approx_quantile(latency, 0.5) FILTER (WHERE status >= 500)", "approx_quantile(bytes, 0.1) * 2 - count(*)",
]
WHERES = [
    "host = 'h3'", "host <> 'h3'", "host IN ('h1', 'h2')", "host LIKE 'h1%'", "host IS NULL", "NOT host = 'h0'",
    "host <> 'h2' AND region = 'r0'", "region = 'r1' OR host = 'h4'", "status = 500", "svc = 'pay'",
    "host = 'nowhere'", "rolled.host <> 'h1' AND Region = 'r2'",  # qualified, and a name as the table does not
]
GROUPS = ["", "svc", "svc, region", "upper(region) AS area"]


def events(minute: int, rng: np.random.Generator, rows: int) -> pa.Table:
    """A minute of events, a tenth of them up to two minutes late; NULLs in every column but the time."""
    late = rng.random(rows) < 0.1
    seconds = BASE + minute * 60 + rng.random(rows) * 60 - np.where(late, rng.random(rows) * 120, 0)

    def strings(prefix: str, count: int) -> pa.Array:
        picked = rng.integers(0, count + 1, rows)  # ``count`` is NULL
        return pa.array([None if p == count else f"{prefix}{p}" for p in picked], pa.string())

    return pa.table({
        "timestamp": pa.array((seconds * 1e6).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
        "svc": pa.array(rng.choice(["pay", "search", "auth"], rows), pa.string()),
        "host": strings("h", 12),
        "region": strings("r", 3),
        "status": pa.array(rng.choice([200, 404, 500], rows), pa.int64(), mask=rng.random(rows) < 0.05),
        "latency": pa.array(rng.lognormal(3, 1, rows), pa.float64(), mask=rng.random(rows) < 0.05),
        "bytes": pa.array(rng.integers(-50, 5_000, rows), pa.int64(), mask=rng.random(rows) < 0.05),
    }, schema=SCHEMA)


@pytest.fixture(scope="module")
def rolled_table(db):
    db.create_table("rolled", schema=SCHEMA, partitions=1)
    rng = np.random.default_rng(5)
    for minute in range(12):  # small batches, a few a minute, late events among them
        for _ in range(3):
            db.ingest("rolled", events(minute, rng, 200))
    return "rolled"


def monitors(db, table: str, windows=("2m", "5m")) -> list:
    specs = []
    for g, groups in enumerate(GROUPS):
        for v, value in enumerate(VALUES):
            for w in range(g + v, g + v + 4):  # every WHERE meets several values and groupings
                where = WHERES[w % len(WHERES)]
                select = f"{groups}, {value} AS v" if groups else f"{value} AS v"
                keys = groups.replace(" AS area", "") if groups else ""
                query = f"SELECT {select} FROM {table} WHERE {where}" + (f" GROUP BY {keys}" if keys else "")
                window = windows[(g + v + w) % len(windows)]
                specs.append(db._checked(build_spec(f"m-{g}-{v}-{w}", query, window=window, every="1m",
                                                    critical=1.0)))
    return specs


def evaluate_both(db, specs: list, minutes=(7, 10, 11)) -> tuple[dict, dict, Evaluator]:
    due = [(spec, BASE + 60 * minute + 7) for minute in minutes for spec in specs]  # one slot a minute for all
    got, want, evaluator, _ = batched_and_alone(db, due)
    assert_same_values(got, want)
    return got, want, evaluator


def test_every_where_and_value_from_rollups_equals_the_query_run_alone(db, rolled_table):
    specs = monitors(db, rolled_table)
    assert all(series_of(s, shape_of(s).groups) is not None for s in specs)
    got, want, evaluator = evaluate_both(db, specs)
    keys = set(evaluator._rollups)
    assert {k.dimensions for k in keys} == {("host",), ("host", "region"), ("Region", "host"), ("status",), ("svc",)}
    assert not evaluator._too_fine and not evaluator._columns  # every monitor came from a rollup
    # one query a minute for each window of each rollup answers all its monitors
    windows_of_rollups = {(shape_of(s), series_of(s, shape_of(s).groups)[0]) for s in specs}
    assert evaluator.stats.shared_queries == 3 * len(windows_of_rollups) < len(got) / 3


def test_a_where_over_a_column_of_many_values_goes_back_to_shared_scans(db, rolled_table, monkeypatch):
    monkeypatch.setattr(rollup, "MAX_DIMENSION_VALUES", 20)
    specs = [db._checked(build_spec(f"fine-{i}", f"SELECT svc, avg(latency) AS v FROM rolled WHERE {where} GROUP BY svc",
                                    window="3m", every="1m", critical=1.0))
             for i, where in enumerate(["bytes > 100", "bytes > 2000", "host = 'h1'"])]
    got, want, evaluator = evaluate_both(db, specs, minutes=range(8, 11))
    assert [k.dimensions for k in evaluator._too_fine] == [("bytes",)]  # thousands of values of bytes in a window
    assert [k.dimensions for k in evaluator._rollups] == [("host",)]


def test_monitors_differing_only_in_thresholds_are_computed_once_and_share_their_values(db, rolled_table):
    base = [("approx_quantile(latency, 0.99)", "host <> 'h3'"), ("count(*)", "host <> 'h3'"),
            ("approx_quantile(latency, 0.99)", "host <> 'h4'")]
    specs = [db._checked(build_spec(f"copy-{i}-{copy}", f"SELECT svc, {value} AS v FROM rolled WHERE {where} GROUP BY svc",
                                    window="5m", every="1m", critical=1.0 + copy))
             for i, (value, where) in enumerate(base) for copy in range(3)]
    aggregated = []
    original = rollup._Cells.aggregate
    def counted(cells, kind, primitives, mask):
        aggregated.append(kind)
        return original(cells, kind, primitives, mask)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rollup._Cells, "aggregate", counted)
        got, _, _ = evaluate_both(db, specs, minutes=(9,))
    assert len(aggregated) == len(base)  # one aggregate per distinct series, not per monitor
    slot = BASE + 9 * 60 + 7
    for i in range(len(base)):
        values = [got[(f"copy-{i}-{copy}", slot)] for copy in range(3)]
        assert values[0] and all(v is values[0] for v in values)  # one dict: the hand-off pickles it once
    assert got[("copy-0-0", slot)] != got[("copy-2-0", slot)]


def test_histograms_with_buckets_far_apart_are_counted_over_the_buckets_used(db, rolled_table, monkeypatch):
    # latencies of errors a billion times larger: two clusters of buckets ~1,000 apart; the histograms over the
    # codes' whole span (3 services x 13 hosts x span) are past the cells allowed, over the buckets used are not
    monkeypatch.setattr(rollup, "MAX_HISTOGRAM_CELLS", 3 * 13 * 1_000)
    spans = []
    original = rollup._dense
    monkeypatch.setattr(rollup, "_dense", lambda code, bound: spans.append(bound) or original(code, bound))
    value = "approx_quantile(CASE WHEN status = 500 THEN latency * 1e9 ELSE latency END, 0.5)"
    specs = [db._checked(build_spec(f"far-{i}", f"SELECT svc, {value} AS v FROM rolled WHERE {where} GROUP BY svc",
                                    window="5m", every="1m", critical=1.0))
             for i, where in enumerate(["host <> 'h1'", "host = 'h2'"])]
    _, _, evaluator = evaluate_both(db, specs, minutes=(9, 10))
    assert not evaluator._too_fine and len(evaluator._rollups) == 1
    assert max(spans) > 1_000  # the buckets were numbered: the codes' span did not fit


def test_values_a_rollup_cannot_merge_use_shared_scans(db, rolled_table):
    queries = {
        "SELECT svc, quantile_cont(latency, 0.9) AS v FROM rolled WHERE host = 'h1' GROUP BY svc": None,
        "SELECT svc, count(DISTINCT host) AS v FROM rolled WHERE region = 'r1' GROUP BY svc": None,
        "SELECT svc, stddev(latency) AS v FROM rolled WHERE host <> 'h1' GROUP BY svc": None,
        "SELECT svc, avg(latency) AS v FROM rolled GROUP BY svc": None,  # no WHERE: nothing to roll up
        "SELECT svc, avg(latency) AS v FROM rolled WHERE 1 = 1 GROUP BY svc": None,  # a WHERE of no column
    }
    specs = [db._checked(build_spec(f"plain-{i}", q, window="3m", every="1m", critical=1.0))
             for i, q in enumerate(queries)]
    assert [series_of(s, shape_of(s).groups) for s in specs] == list(queries.values())
    got, want, evaluator = evaluate_both(db, specs, minutes=range(8, 10))
    assert not evaluator._rollups


def test_a_broken_monitor_in_a_rollup_fails_alone_and_the_rollup_goes_on(db, rolled_table):
    good = [db._checked(build_spec(f"ok-{i}", f"SELECT svc, {value} AS v FROM rolled WHERE host <> 'h{i}' GROUP BY svc",
                                   window="3m", every="1m", critical=1.0))
            for i, value in enumerate(["avg(latency)", "max(bytes)"])]
    broken = good[0].__class__(**{**good[0].__dict__, "name": "broken",
                                  "query": "SELECT svc, sum(nope) AS v FROM rolled WHERE host = 'h5' GROUP BY svc"})
    queries = LocalQueries(db.store, db.namespace)
    evaluator = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    for minute in (8, 9):
        due = [(s, BASE + 60 * minute + 7) for s in [*good, broken]]
        outcomes = {o.monitor: o for o in evaluator.evaluate(due)}
        assert outcomes["broken"].values is None and "nope" in outcomes["broken"].error
        assert_same_values({s.name: outcomes[s.name].values for s in good},
                           {o.monitor: o.values for o in alone.evaluate(due[:2])})
    assert [k.dimensions for k in evaluator._rollups] == [("host",)]  # made again without the broken monitor


def test_a_quantile_of_times_is_no_histogram_and_only_its_monitors_go_back_to_shared_scans(db, rolled_table):
    specs = [db._checked(build_spec(f"times-{i}", f"SELECT svc, {value} AS v FROM rolled WHERE host <> 'h{i}' "
                                    "GROUP BY svc", window="3m", every="1m", critical=1.0))
             for i, value in enumerate(["approx_quantile(latency, 0.9)", "epoch(approx_quantile(timestamp, 0.5))",
                                        "count(*)"])]
    assert all(series_of(s, shape_of(s).groups) is not None for s in specs)
    got, want, evaluator = evaluate_both(db, specs, minutes=range(8, 10))
    assert not evaluator._too_fine and [k.dimensions for k in evaluator._rollups] == [("host",)]
    assert evaluator._unrolled == {evaluator._shape(specs[1]).pair}  # the others still come from the rollup
    assert len(evaluator._columns[shape_of(specs[1]).scan]) == 1


def test_integer_sums_and_extremes_from_rollups_are_exact_past_two_to_the_53(db):
    """Integers near 2^54 are 4 apart as doubles, and their sums 256: a rollup adding them up as doubles was off
    by hundreds, where the query run alone, in integers, is exact."""
    base = 1 << 54
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("svc", pa.string()), ("host", pa.string()),
                        ("big", pa.int64())])
    db.create_table("bigints", schema=schema, partitions=1)
    rng = np.random.default_rng(8)
    for minute in range(6):
        rows = 60  # at most a few hundred a window: their sums stay below 2^63
        seconds = BASE + minute * 60 + rng.random(rows) * 60
        db.ingest("bigints", pa.table({
            "timestamp": pa.array((seconds * 1e6).astype(np.int64)).cast(pa.timestamp("us", tz="UTC")),
            "svc": pa.array(rng.choice(["pay", "auth"], rows)),
            "host": pa.array(rng.choice([f"h{i}" for i in range(5)], rows)),
            "big": pa.array(base + rng.integers(1, 999, rows), pa.int64()),
        }, schema=schema))
    values = [f"sum(big) - count(*) * {base}", f"max(big) - {base}", f"min(big) - {base}"]
    specs = [db._checked(build_spec(f"big-{v}-{h}", f"SELECT svc, {value} AS v FROM bigints WHERE host <> 'h{h}' "
                                    "GROUP BY svc", window="3m", every="1m", critical=1.0))
             for v, value in enumerate(values) for h in range(3)]
    got, want, evaluator = evaluate_both(db, specs, minutes=(4, 5))
    assert evaluator._rollups and not evaluator._columns  # from a rollup, and equal to the exact answers
    assert all(value == int(value) and 0 < value < 10**6 for found in got.values() for value in found.values())
