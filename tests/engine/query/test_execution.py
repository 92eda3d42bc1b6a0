"""Fragment execution on Arrow, without Ray: scans, two-phase aggregation, sorting, whole plans."""

from __future__ import annotations

import datetime as dt
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine.query.execution import aggregate
from engine.query.executor import run_locally
from engine.query.execution.operators import sort
from engine.query.execution.scan import ScanStats, SegmentReader
from tests.event_data import duckdb_over, load_events
from planner.aggregates import result_type
from planner.logical import AggCall, SortKey, TableSource
from planner.planning import plan_query
from tests.result_compare import assert_same
from storage.errors import QueryFailed
from storage.objectstore import ObjectStore
from storage.segment import write_segment
from storage.snapshot import load_snapshot


def _random_table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    keys = rng.choice(np.array(["a", "b", "c", None], dtype=object), rows)
    values = rng.normal(1e6, 3.0, rows)  # a large mean and a small spread: the merge must not cancel
    values[rng.random(rows) < 0.1] = np.nan
    return pa.table({
        "k": pa.array(keys.tolist(), pa.string()),
        "k2": pa.array(rng.integers(0, 3, rows)),
        "v": pa.array(values, from_pandas=True),
        "u": pa.array(rng.integers(0, 50, rows)),
    })


CALLS = (
    AggCall("n", "count_star"), AggCall("c", "count", "v"), AggCall("s", "sum", "u"), AggCall("a", "avg", "v"),
    AggCall("lo", "min", "v"), AggCall("hi", "max", "v"), AggCall("sd", "stddev_samp", "v"),
    AggCall("vp", "var_pop", "v"), AggCall("d", "count_distinct", "u"), AggCall("q", "quantile_cont", "v", (0.9,)),
    AggCall("qd", "quantile_disc", "u", (0.5,)),
)
ORACLE = """SELECT k, k2, count(*), count(v), sum(u), avg(v), min(v), max(v), stddev_samp(v), var_pop(v),
                   count(DISTINCT u), quantile_cont(v, 0.9), quantile_disc(u, 0.5) FROM t GROUP BY k, k2"""


@pytest.mark.parametrize("fragments", [1, 3, 7])
def test_partial_then_final_matches_duckdb(fragments):
    data = _random_table(5000, seed=fragments)
    bounds = [i * len(data) // fragments for i in range(fragments + 1)]
    parts = [data.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]
    states = pa.concat_tables([aggregate.partial(p, ("k", "k2"), CALLS) for p in parts])
    merged = aggregate.final(states, ("k", "k2"), CALLS)
    expected = duckdb.sql(ORACLE.replace("FROM t", "FROM data")).to_arrow_table()
    assert_same(merged, expected, ordered=False)


def test_one_partial_finished_whole_matches_duckdb():
    """One fragment's states, one row per group, finish without a merge (quantiles straight from the lists)."""
    data = _random_table(5000, seed=11)
    states = aggregate.partial(data, ("k", "k2"), CALLS)
    merged = aggregate.final(states, ("k", "k2"), CALLS, data.schema, whole=True)
    expected = duckdb.sql(ORACLE.replace("FROM t", "FROM data")).to_arrow_table()
    assert_same(merged, expected, ordered=False)


def test_global_aggregate_over_nothing_has_one_row():
    empty = _random_table(10, seed=1).slice(0, 0)
    states = aggregate.partial(empty, (), CALLS)
    merged = aggregate.final(states, (), CALLS)
    assert merged.num_rows == 1
    assert merged.column("n").to_pylist() == [0] and merged.column("s").to_pylist() == [None]


def test_final_merge_treats_null_keys_as_a_group():
    table = pa.table({"a": ["x", None, "x", None], "b": [1, 1, 1, 2], "v": [1.0, 2.0, 3.0, 4.0]})
    calls = (AggCall("n", "count_star"), AggCall("sd", "stddev_pop", "v"))
    states = pa.concat_tables([aggregate.partial(table.slice(0, 2), ("a", "b"), calls),
                               aggregate.partial(table.slice(2), ("a", "b"), calls)])
    merged = aggregate.final(states, ("a", "b"), calls).sort_by([("b", "ascending"), ("a", "ascending")])
    assert merged.to_pydict() == {"a": ["x", None, None], "b": [1, 1, 2], "n": [2, 1, 1], "sd": [1.0, 0.0, 0.0]}


def test_sort_with_per_key_null_placement_and_topk():
    table = pa.table({"a": [3, None, 1, 2, None], "b": ["x", "y", "z", "w", "v"]})
    keys = (SortKey("a", descending=True, nulls_first=True), SortKey("b"))
    assert sort(table, keys).column("b").to_pylist() == ["v", "y", "x", "w", "z"]
    assert sort(table, keys, limit=3).column("b").to_pylist() == ["v", "y", "x"]
    assert sort(table, (SortKey("a"),), limit=2).column("a").to_pylist() == [1, 2]


def test_reader_reads_old_segments_under_the_new_schema_and_caches_footers():
    store = ObjectStore("memory://exec-reader")
    old = pa.table({"timestamp": pa.array([1, 2], pa.timestamp("us", tz="UTC")), "x": pa.array([1, 2], pa.int32())})
    new = pa.table({"timestamp": pa.array([3], pa.timestamp("us", tz="UTC")), "x": [2.5], "extra": ["e"]})
    segments = [write_segment(store, "ns/t", t, partition=0, time_column="timestamp") for t in (old, new)]
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("x", pa.float64()), ("extra", pa.string())])
    reader = SegmentReader(store)
    stats = ScanStats()
    first = reader.read("ns/t", schema, segments, ["x", "extra"], stats=stats)
    assert sorted(first.column("x").to_pylist()) == [1.0, 2.0, 2.5]
    assert first.column("extra").null_count == 2
    again = ScanStats()
    reader.read("ns/t", schema, segments, ["x"], stats=again)
    assert stats.footer_hits == 0 and again.footer_hits == 2


def test_whole_plans_run_locally_with_several_fragments(tmp_path):
    store = ObjectStore(str(tmp_path / "wh"))
    meta, rows = load_events(store, hours=4, partitions=2, rows_per_segment=60)
    snapshot = load_snapshot(store, meta)
    source = TableSource(meta, snapshot.schema, snapshot.segments)
    reader = SegmentReader(store)
    oracle = duckdb_over(events=rows)
    for query, ordered in [
        ("SELECT service, count(*), avg(latency_ms), median(latency_ms) FROM events GROUP BY service", False),
        ("SELECT host, latency_ms FROM events ORDER BY latency_ms DESC NULLS LAST, host, timestamp LIMIT 4", True),
        ("SELECT count(DISTINCT user_id), stddev(bytes) FROM events WHERE ok", False),
        ("SELECT DISTINCT \"http.method\" FROM events", False),
    ]:
        planned = plan_query(query, lambda name: source)
        for fragments in (1, 3):
            got = run_locally(planned.optimized, reader, fragments=fragments)
            assert_same(got, oracle.sql(query).to_arrow_table(), ordered=ordered, query=query)


def test_quantiles_of_dates_are_timestamps_between_the_days_like_duckdb():
    days = pa.array([dt.date(2026, 11, 1) + dt.timedelta(days=int(d)) for d in np.random.default_rng(5).integers(0, 90, 301)])
    data = pa.table({"k": pa.array(["a", "b", "c"] * 100 + [None]), "d": days})
    calls = (AggCall("m", "quantile_cont", "d", (0.5,)), AggCall("q", "quantile_cont", "d", (0.37,)),
             AggCall("qd", "quantile_disc", "d", (0.37,)))
    parts = [data.slice(0, 120), data.slice(120)]
    merged = aggregate.final(pa.concat_tables([aggregate.partial(p, ("k",), calls) for p in parts]), ("k",), calls)
    expected = duckdb.sql("SELECT k, median(d), quantile_cont(d, 0.37), quantile_disc(d, 0.37) FROM data GROUP BY k").to_arrow_table()
    assert_same(merged, expected, ordered=False)
    assert merged.schema.field("m").type == pa.timestamp("us") and merged.schema.field("qd").type == pa.date32()
    assert result_type("quantile_cont", pa.date32()) == merged.schema.field("m").type


def test_scan_stats_count_the_row_groups_and_columns_actually_read():
    store = ObjectStore("memory://exec-read-stats")
    rows = 4000
    table = pa.table({
        "timestamp": pa.array(np.arange(rows) * 1_000_000, pa.timestamp("us", tz="UTC")),
        "n": pa.array(np.arange(rows)),
        "wide": pa.array([f"payload-{i:06d}-" * 8 for i in range(rows)]),
        "attrs": pa.array([{"k": str(i % 7), "v": i} for i in range(rows)]),
    })
    segments = [write_segment(store, "ns/t", table.slice(i * 2000, 2000), partition=0, time_column="timestamp",
                              row_group_size=500) for i in range(2)]
    reader = SegmentReader(store)
    files = [pq.ParquetFile(pa.BufferReader(store.get(f"ns/t/{s.path}"))).metadata for s in segments]

    def stored(meta, groups, leaves):
        return sum(meta.row_group(g).column(c).total_compressed_size for g in groups for c in leaves)

    leaf = {files[0].schema.column(c).path: c for c in range(files[0].num_columns)}
    whole = ScanStats()
    reader.read("ns/t", table.schema, segments, ["n", "attrs"], stats=whole)
    assert whole.rows_read == rows and whole.bytes_read == sum(
        stored(m, range(4), [leaf["n"], leaf["attrs.k"], leaf["attrs.v"]]) for m in files)
    assert whole.bytes_read < sum(s.bytes for s in segments) / 2  # the wide column is never read

    filtered = ScanStats()
    got = reader.read("ns/t", table.schema, segments, ["n"], pc.field("n") >= 3600, stats=filtered)
    assert got.num_rows == 400 and filtered.rows_read == 500  # the last row group only
    assert filtered.bytes_read == stored(files[1], [3], [leaf["n"]])

    limited = ScanStats()
    got = reader.read("ns/t", table.schema, segments, ["n", "wide"], limit=10, stats=limited)
    assert got.num_rows == 10 and limited.rows_read == 500  # the first row group of the first segment
    assert limited.bytes_read == stored(files[0], [0], [leaf["n"], leaf["wide"]])
    limited = ScanStats()
    got = reader.read("ns/t", table.schema, segments, ["n"], pc.field("n") >= 1900, limit=150, stats=limited)
    assert got.column("n").to_pylist() == list(range(1900, 2050)) and limited.rows_read == 1000


def test_integer_sums_never_wrap_silently():
    big = 2**62
    data = pa.table({"k": ["a", "a", "a", "b", "b"], "v": pa.array([big, big, -big, big, big], pa.int64())})
    calls = (AggCall("s", "sum", "v"), AggCall("a", "avg", "v"))
    # a partial sum wraps, the group's total fits: the result is exact
    parts = [aggregate.partial(data.slice(i, 1), ("k",), calls) for i in range(3)]
    merged = aggregate.final(pa.concat_tables(parts), ("k",), calls)
    assert merged.column("s").to_pylist() == [big] and merged.column("a").to_pylist() == [big / 3]
    # group b's total does not fit: SUM says so, AVG is still right
    states = pa.concat_tables([aggregate.partial(data.slice(0, 3), ("k",), calls),
                               aggregate.partial(data.slice(3), ("k",), calls)])
    averages = aggregate.final(states, ("k",), calls[1:])
    assert averages.column("a").to_pylist() == [big / 3, float(big)]
    with pytest.raises(QueryFailed, match="exceeds the BIGINT range"):
        aggregate.final(states, ("k",), calls[:1])


@pytest.mark.parametrize("keys", [(), ("k",)])
def test_sums_of_fragments_too_small_to_overflow_alone_are_still_checked(keys):
    """A fragment whose values cannot overflow sends no double sum; the merge still sees the total leave int64."""
    value = 6 * 10**18
    data = pa.table({"k": ["a", "a"], "v": pa.array([value, value], pa.int64())})
    calls = (AggCall("s", "sum", "v"), AggCall("a", "avg", "v"))
    parts = [aggregate.partial(data.slice(i, 1), keys, calls) for i in range(2)]
    assert all("s__f" not in part.column_names for part in parts)  # one value each: their sums fit
    states = pa.concat_tables(parts)
    assert aggregate.final(states, keys, calls[1:]).column("a").to_pylist() == [float(value)]
    with pytest.raises(QueryFailed, match="exceeds the BIGINT range"):
        aggregate.final(states, keys, calls[:1])
    whole = aggregate.final(aggregate.partial(data.slice(0, 1), keys, calls), keys, calls)
    assert whole.column("s").to_pylist() == [value] and whole.column("a").to_pylist() == [float(value)]


def test_bytes_read_counts_the_columns_a_filter_tests(tmp_path):
    """A filtered count outputs no column but reads the filtered one: its bytes count (they read 0 before)."""
    from engine.query.executor import run_fragment
    from planner.fragments import Fragment, stage_plan, stage_scan
    from planner.logical import Gather

    store = ObjectStore(str(tmp_path / "warehouse"))
    meta, _ = load_events(store, hours=2, partitions=1, rows_per_segment=100)
    snapshot = load_snapshot(store, meta)
    source = TableSource(meta, snapshot.schema, snapshot.segments, dict(snapshot.versions))
    planned = plan_query("SELECT count(*) FROM events WHERE latency_ms > 100", lambda name: source)
    gather = next(n for n in planned.optimized.walk() if isinstance(n, Gather))
    scan = stage_scan(gather.input)
    _, stats = run_fragment(Fragment("q", 1, 0, stage_plan(gather), tuple(scan.segments)), SegmentReader(store))
    assert stats["segments"] == len(scan.segments) and stats["rows_read"] == sum(s.rows for s in scan.segments)
    assert 0 < stats["bytes_read"] < sum(s.bytes for s in scan.segments)
