"""Batched evaluation and commits: one SQL per shape chunk across slot offsets, broken monitors alone, kills mid-commit."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from collections import defaultdict
from dataclasses import replace

import pytest

from engine.monitors.definition import build_spec
from engine.monitors.evaluate import Evaluator
from engine.monitors.history import read_outbox
from engine.monitors.queries import LocalQueries
from storage.segment import read_segment
from tests.engine.monitors.batch_commit_fixtures import GROUPS, MONITORS, apply_batches, batch_of, batch_specs, open_shard
from tests.engine.monitors.monitor_fixtures import (
    BASE, EVENTS_SCHEMA, assert_same_values, batched_and_alone, minute_of_events,
)

SHAPE = [  # one shape (table, group column, window, delay); two equal values, a WHERE, an alias, another aggregate
    "SELECT svc, avg(latency) AS v FROM batch GROUP BY svc",
    "SELECT svc, avg(latency) AS v FROM batch GROUP BY svc",
    "SELECT svc, avg(latency) AS v FROM batch WHERE status < 500 GROUP BY svc",
    "SELECT svc AS service, avg(latency) AS v FROM batch GROUP BY svc",
    "SELECT svc, max(latency) AS v FROM batch GROUP BY svc",
]


@pytest.fixture(scope="module")
def batch_table(db):
    db.create_table("batch", schema=EVENTS_SCHEMA, partitions=1)
    for minute in range(10):  # one segment per minute
        db.ingest("batch", minute_of_events(BASE + minute * 60, {"payments": (20, minute % 3, 10.0 + minute),
                                                                 "search": (10, 0, 5.0)}))
    return "batch"


def test_a_shape_runs_one_sql_for_every_slot_offset_and_reads_each_segment_once(db, batch_table):
    specs = [db._checked(build_spec(f"shape-{i}", q, window="3m", every="1m", critical=1.0))
             for i, q in enumerate(SHAPE)]
    # one shape: due at the same second of the minute (but for the one naming its group column otherwise)
    assert len({s.offset for s in specs if s.group_columns == ("svc",)}) == 1
    # and at other seconds, as monitors of one shape were before their offsets were aligned
    due = [(spec, BASE + 60 * minute + 7 * i) for minute in range(4, 10) for i, spec in enumerate(specs)]
    got, want, batched, queries = batched_and_alone(db, due)
    assert_same_values(got, want)
    assert list(got[("shape-3", BASE + 240 + 21)]) == ['{"service":"payments"}', '{"service":"search"}']
    assert batched.stats.queries == len({slot for _, slot in due})  # one scan per (shape, slot)
    segments = len(queries.engine.resolve("batch").segments)
    # a whole segment's partial is computed once for every offset, per query: the shared scan, and the rollup
    # the WHERE monitor is evaluated from
    assert 0 < queries.misses <= 2 * segments
    assert queries.hits + queries.block_hits > queries.misses  # cached segment partials, or blocks merged from them


def test_shapes_differing_only_in_window_or_delay_share_their_scans_partials(db, batch_table):
    specs = [db._checked(build_spec(f"span-{i}-{window}-{delay}", q, window=window, every="1m", delay=delay,
                                    critical=1.0))
             for window, queries in (("2m", SHAPE), ("4m", SHAPE[::-1])) for delay in ("0s", "30s")
             for i, q in enumerate(queries)]  # the windows meet the values in different orders
    due = [(spec, BASE + 60 * minute + spec.offset) for minute in range(5, 10) for spec in specs]
    got, want, _, queries = batched_and_alone(db, due)
    assert_same_values(got, want)
    segments = len(queries.engine.resolve("batch").segments)
    # each segment's partial computed once for all four windows, per query (the shared scan, the WHERE's rollup)
    assert 0 < queries.misses <= 2 * segments

def test_window_bounds_are_written_as_the_generated_sql_writes_them():
    from engine.monitors.compile import timestamp_literal, timestamp_text

    for seconds in (0.0, BASE + 0.5, 1_999_999_999.654321, -2_000_000_000.123456):
        assert timestamp_text(seconds) == timestamp_literal(seconds).this.sql()


def test_a_broken_monitor_in_a_shape_fails_alone(db, batch_table):
    good = [db._checked(build_spec(f"fine-{i}", q, window="3m", every="1m", critical=1.0))
            for i, q in enumerate(SHAPE[:3])]
    broken = replace(good[0], name="broken", query="SELECT svc, avg(nope) AS v FROM batch GROUP BY svc")
    queries = LocalQueries(db.store, db.namespace)
    evaluator = Evaluator(queries.sql, run_window=queries.window)
    for minute in (5, 6):
        slot = BASE + 60 * minute + 7
        outcomes = {o.monitor: o for o in evaluator.evaluate([(s, slot) for s in [*good, broken]])}
        assert outcomes["broken"].values is None and "nope" in outcomes["broken"].error
        assert all(outcomes[s.name].error is None and outcomes[s.name].values for s in good)
    # queries that answered, besides the rollup the WHERE monitor is evaluated from at both slots: slot 1, the
    # shared scan failed and its two good monitors ran alone; slot 2, they shared one scan again and only the
    # broken one ran (and failed) alone
    assert (evaluator.stats.queries, evaluator.stats.shared_queries, evaluator.stats.errors) == (2 + 1 + 2, 1 + 2, 2)


def transitions_of(store, meta, log) -> list[dict]:
    rows = []
    for entry in log.state.segments.values():
        rows += read_segment(store, meta.path, entry, columns=["monitor", "group", "seq", "key"]).to_pylist()
    return rows


@pytest.mark.chaos
def test_sigkill_during_batched_commits_applies_each_slot_once_and_loses_no_outbox_entry(tmp_path):
    root = str(tmp_path / "warehouse")
    slots = 12
    context = multiprocessing.get_context("spawn")
    rng = random.Random(3)
    for _ in range(3):  # three processors, each killed at a random point of its batches
        ready = context.Event()
        child = context.Process(target=apply_batches, args=(root, slots, ready))
        child.start()
        assert ready.wait(60)
        child.join(rng.uniform(0.05, 0.6))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join()
    store, meta, log = open_shard(root)
    log.claim()  # the processor that restarts last: the scheduler hands it every slot not yet applied
    specs = batch_specs()
    for slot_index in range(slots):
        log.apply(specs, batch_of(slot_index))
    log.load()
    applied, outbox = [], []
    for version in range(log.state.version + 1):
        record = log.log.record(version)
        applied += (record.get("offsets") or {}).get("_applied") or []
        outbox += read_outbox(log.log, version)
    assert len(applied) == len(set(applied)) == MONITORS * slots  # every slot of every monitor, applied once
    rows = transitions_of(store, meta, log)
    sequences = defaultdict(list)
    for row in rows:
        sequences[(row["monitor"], row["group"])].append(row["seq"])
    assert len(sequences) == MONITORS * len(GROUPS)
    for group, seqs in sequences.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), group  # contiguous, no repeat
    assert sorted(e["key"] for e in outbox) == sorted(r["key"] for r in rows)  # each transition in an outbox once
    assert all(json.loads(e["group"]) and e["sinks"] for e in outbox)


def assert_batched_as_alone(batched: Evaluator, alone: Evaluator, due: list) -> None:
    """``due`` (spec, slot) pairs give the same values batched (cached partials, blocks) as each query alone."""
    got = {(o.monitor, o.slot): o.values for o in batched.evaluate(due)}
    want = {(o.monitor, o.slot): o.values for o in alone.evaluate(due)}
    assert got.keys() == want.keys()
    for key, values in got.items():
        assert {k: pytest.approx(v) for k, v in values.items()} == want[key], key


BLOCKED = [  # one shape over many small segments: sums, a ratio, moments and a sketch, merged through blocks
    "SELECT svc, avg(latency) AS v FROM blocked GROUP BY svc",
    "SELECT svc, count(*) FILTER (WHERE status >= 500) * 100.0 / count(*) AS v FROM blocked GROUP BY svc",
    "SELECT svc, max(latency) AS v FROM blocked WHERE status < 500 GROUP BY svc",
    "SELECT svc, stddev_samp(latency) AS v FROM blocked GROUP BY svc",
    "SELECT svc, approx_quantile(latency, 0.9) AS v FROM blocked GROUP BY svc",
]


def many_small_segments(db, table: str) -> None:
    db.create_table(table, schema=EVENTS_SCHEMA, partitions=1)
    for step in range(40):  # a segment every 20 s for 800 s: blocks of 60 s and 600 s hold 3 and 30 of them
        start = BASE + 20 * step
        db.ingest(table, [{"timestamp": int((start + i * 6 + 0.3) * 1e6), "svc": ("a", "b")[i % 2],
                           "status": 500 if (step + i) % 7 == 0 else 200, "latency": float((step * 7 + i) % 23),
                           "note": "x"} for i in range(3)])


def test_windows_over_many_segments_merge_pre_merged_blocks_to_the_same_values(db):
    many_small_segments(db, "blocked")
    specs = [db._checked(build_spec(f"blocked-{i}-{w}", q, window=w, every="1m", critical=1e9))
             for i, q in enumerate(BLOCKED) for w in ("2m", "11m")]
    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    # at seconds of the minute spread over the specs, and slots a second apart (edge segments read with the one
    # bound they cross)
    due = [(spec, BASE + 60 * minute + 13 * i % 60 + shift) for minute in (11, 12, 13)
           for i, spec in enumerate(specs) for shift in (0, 1, 2)]
    assert_batched_as_alone(batched, alone, due)
    assert queries.block_misses > 0 and queries.block_hits > 0  # blocks were merged, then served again
    interiors = [key for key in queries.partials if key[0] == "interior"]
    assert interiors and all(len(key[1]) > 1 for key in interiors)  # a window's blocks of 10 s and more, merged
    # once the cache has let the segments' partials go, the 10 s blocks across a window's edge give their rows
    # per second, each window taking its slice
    forget_partials(queries)
    assert_batched_as_alone(batched, alone, [(spec, slot + 3) for spec, slot in due])
    assert any(key[0] == "seconds" for key in queries.partials)


def test_a_full_cache_drops_the_partials_of_segments_merged_into_blocks_before_the_blocks(db):
    db.create_table("kept", schema=EVENTS_SCHEMA, partitions=1)

    def segments(first: int, last: int) -> None:  # a segment every 2 s: five in a 10 s block
        for step in range(first, last):
            db.ingest("kept", [{"timestamp": int((BASE + 2 * step + 0.5) * 1e6), "svc": ("a", "b")[step % 2],
                                "status": 200, "latency": float(step % 13), "note": "x"}])

    query = BLOCKED[0].replace("blocked", "kept")
    specs = [db._checked(build_spec(f"kept-{w}", query, window=w, every="1m", critical=1e9)) for w in ("1m", "2m")]
    queries = LocalQueries(db.store, db.namespace)
    evaluator = Evaluator(queries.sql, run_window=queries.window)
    segments(0, 3)
    evaluator.evaluate([(spec, BASE + 10) for spec in specs])
    segments(3, 60)  # two minutes: the look ahead makes each new segment's partial, then merges the blocks sealed
    queries.ahead(time.monotonic() + 600)
    evaluator.evaluate([(spec, BASE + 125) for spec in specs])
    queries.ahead(time.monotonic() + 600)  # which looks at those partials each second, and leaves them first in line
    blocks = [key for key in queries.partials if isinstance(key[0], tuple) and key[0][0] == "block"]
    in_blocks = {segment for key in blocks if key[0][1] == 10 for segment in key[0][3]}
    merged = [key for key in queries.partials if key[0] in in_blocks]  # segments' partials merged into 10 s blocks
    assert len(blocks) >= 8 and len(merged) >= 40
    # the cache is full: as many new partials as there are merged ones push all of those out, and no block
    # (plain LRU dropped the blocks made first, and kept the partials of the segments merged after them)
    queries.cache_entries = len(queries.partials)
    some = queries.partials[blocks[0]]
    for number in range(len(merged)):
        queries._keep((f"new partial {number}", "x"), some)
    assert all(key in queries.partials for key in blocks)
    assert not any(key in queries.partials for key in merged)


def test_windows_holding_a_ten_minute_block_keep_its_minute_blocks_in_the_cache(db):
    """The start of a window holding a ten-minute block moves into it within ten minutes, and then asks for its
    minute blocks: each window keeps them as recently used, so a full cache does not drop them first."""
    many_small_segments(db, "minutes")
    spec = db._checked(build_spec("minutes-13m", BLOCKED[0].replace("blocked", "minutes"), window="13m", every="1m",
                                  critical=1e9))
    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    assert_batched_as_alone(batched, alone, [(spec, BASE + 720)])

    def blocks(level: int) -> list[tuple]:
        return [key for key in queries.partials if isinstance(key[0], tuple) and key[0][:2] == ("block", level)]

    ten = blocks(600)
    minutes = [key for key in blocks(60) if key[0][2] // 10 == ten[0][0][2]]
    assert len(ten) == 1 and len(minutes) == 10
    for number in range(5):  # what other windows made since
        queries._keep((f"other {number}", "x"), queries.partials[ten[0]])
    assert_batched_as_alone(batched, alone, [(spec, BASE + 780)])
    order = list(queries.partials)
    assert min(order.index(key) for key in minutes) > order.index(("other 4", "x"))


def test_monitor_quantiles_come_from_histograms_within_one_percent_of_the_exact_quantile(db):
    """approx_quantile over numbers is a log-bucket histogram in monitors (times keep KLL): batched, alone and
    through pre-merged blocks alike, each within 1% of DuckDB's quantile_disc over the window's rows."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(23)
    db.create_table("spread", schema=EVENTS_SCHEMA, partitions=1)
    batches = []
    for step in range(60):  # a small batch every 15 s, a third of its events late by up to 3 minutes
        rows = int(rng.integers(1, 40))
        late = np.where(rng.random(rows) < 0.3, rng.random(rows) * 180, 0.0)
        batch = pa.table({
            "timestamp": pa.array(((BASE + 15 * step + rng.random(rows) * 15 - late) * 1e6).astype(np.int64)).cast(
                EVENTS_SCHEMA.field("timestamp").type),
            "svc": pa.array(rng.choice(["a", "b", "c"], rows)),
            "status": pa.array(rng.choice([200, 500], rows), pa.int64()),
            "latency": pa.array(rng.lognormal(3.0, 1.5, rows), mask=rng.random(rows) < 0.1),
            "note": pa.array(["x"] * rows),
        }, schema=EVENTS_SCHEMA)
        db.ingest("spread", batch)
        batches.append(batch)
    asked = {f"spread-{i}-{bool(where)}-{w}": (q, where) for i, q in enumerate((0.5, 0.99))
             for where in ("", "status = 500") for w in ("2m", "11m")}
    specs = [db._checked(build_spec(name, f"SELECT svc, approx_quantile(latency, {q}) AS v FROM spread "
                                          f"{'WHERE ' + where if where else ''} GROUP BY svc",
                                    window=name.rsplit("-", 1)[1], every="1m", critical=1e9))
             for name, (q, where) in asked.items()]
    due = [(spec, BASE + 60 * minute + spec.offset) for minute in (12, 14) for spec in specs]
    got, want, _, local = batched_and_alone(db, due)
    assert_same_values(got, want)  # histograms merge exactly: the same answer however the rows were split
    oracle = duckdb.connect()
    oracle.register("spread", pa.concat_tables(batches))
    for spec, slot in due:
        start, end = spec.window_of(slot)
        fraction, where = asked[spec.name]
        exact = dict(oracle.execute(
            f"SELECT svc, quantile_disc(latency, {fraction}) FROM spread WHERE timestamp >= to_timestamp({start}) "
            f"AND timestamp < to_timestamp({end}) {'AND ' + where if where else ''} GROUP BY svc").fetchall())
        values = {json.loads(key)["svc"]: value for key, value in got[(spec.name, slot)].items()}
        assert values.keys() == exact.keys(), spec.name
        for svc, value in values.items():
            assert value == pytest.approx(exact[svc], rel=0.0100001), (spec.name, slot, svc)
    assert local.block_misses > 0  # some windows merged pre-merged blocks of histograms
    plan = local._plan("SELECT svc, approx_quantile(latency, 0.5) AS l, approx_quantile(timestamp, 0.5) AS t, "
                       "approx_quantile(DISTINCT latency, 0.5) AS d FROM spread GROUP BY svc")
    funcs = {(str(node.schema.field(call.arg).type), call.distinct): call.func for node in plan.walk()
             for call in getattr(node, "aggregates", ()) if getattr(node, "mode", None) == "partial"}
    assert funcs == {("double", False): "approx_quantile_dd", ("timestamp[us, tz=UTC]", False): "approx_quantile",
                     ("double", True): "approx_quantile"}
    # filtered quantiles (a shared scan's monitor variants): one value column, a boolean mask per FILTER
    plan = local._plan("SELECT svc, approx_quantile(latency, 0.5) FILTER (WHERE status = 500) AS f, "
                       "approx_quantile(latency, 0.9) FILTER (WHERE status <> 500) AS g FROM spread GROUP BY svc")
    partial = next(node for node in plan.walk() if getattr(node, "mode", None) == "partial")
    assert [(call.func, len(call.by)) for call in partial.aggregates] == [("approx_quantile_dd", 1)] * 2
    assert len({call.arg for call in partial.aggregates}) == 1
    assert all(partial.schema.field(call.by[0]).type == pa.bool_() for call in partial.aggregates)


def test_windows_over_batches_with_late_events_read_cores_and_tails_to_the_same_values(db):
    """Batches with a few events minutes late make wide segments: each is read as its core (its last seconds,
    narrow like a batch on time) and its tail (the late rows), whose sealed blocks are cached per window."""
    import numpy as np

    rng = np.random.default_rng(5)
    db.create_table("tardy", schema=EVENTS_SCHEMA, partitions=1)
    for step in range(60):  # a batch every 15 s for 15 minutes, a tenth of its events up to 5 minutes late
        rows = 40
        late = np.where(rng.random(rows) < 0.1, rng.random(rows) * 300, 0.0)
        db.ingest("tardy", [{"timestamp": int((BASE + 15 * step + rng.random() * 2 - late[i]) * 1e6),
                             "svc": ("a", "b", "c")[i % 3], "status": 500 if (step + i) % 5 == 0 else 200,
                             "latency": float(rng.lognormal(3.0, 1.0)), "note": "x"} for i in range(rows)])
    specs = [db._checked(build_spec(f"tardy-{i}-{w}", q.replace("blocked", "tardy"), window=w, every="1m",
                                    critical=1e9))
             for i, q in enumerate(BLOCKED) for w in ("1m", "4m", "11m")]
    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    due = [(spec, BASE + 60 * minute + 13 * i % 60 + shift) for minute in (12, 14)
           for i, spec in enumerate(specs) for shift in (0, 7)]
    assert_batched_as_alone(batched, alone, due)
    layout = queries._layout(queries.engine.resolve("tardy"))
    assert layout.tail_blocks and layout.span <= 10_000_000  # cores as narrow as the batches, tails apart
    kinds = {key[0] for key in queries.partials}
    assert "tails" in kinds  # sealed tail blocks inside windows were cached
    assert "tail minutes" in kinds  # and the rows of those across an edge in a window's whole minutes
    assert "tail seconds" in kinds  # and those in the minute where a window starts, per second
    # the windows covered tails and aggregated some of their rows (the last minute's, at least), not all
    assert 0 < queries.cache.tails_read < queries.cache.tails_covered < queries.cache.covered
    forget_partials(queries)
    assert_batched_as_alone(batched, alone, [(spec, slot + 3) for spec, slot in due])
    assert "seconds" in {key[0] for key in queries.partials}  # cores at a window's edges: their blocks' rows per second
    db.compact("tardy", progress=False)  # segments replaced under the cached cores, tails and blocks
    assert_batched_as_alone(batched, alone, [(spec, slot + 60) for spec, slot in due if slot >= BASE + 14 * 60])


def test_segments_and_tails_are_decoded_with_the_columns_monitors_read_and_widened_for_a_new_one(db):
    """A wide table's monitors read a few of its columns: its recent segments and late rows are kept decoded with
    those alone. A monitor reading one more column widens them, and its values are as its query alone gives."""
    import numpy as np

    rng = np.random.default_rng(9)
    db.create_table("narrow", schema=EVENTS_SCHEMA, partitions=1)
    for step in range(40):  # a batch every 15 s for 10 minutes, a tenth of its events up to 4 minutes late
        late = np.where(rng.random(30) < 0.1, rng.random(30) * 240, 0.0)
        db.ingest("narrow", [{"timestamp": int((BASE + 15 * step + rng.random() * 2 - late[i]) * 1e6),
                              "svc": ("a", "b")[i % 2], "status": 500 if (step + i) % 4 == 0 else 200,
                              "latency": float(i), "note": ("x", "y")[(step + i) % 2]} for i in range(30)])
    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)

    def specs(name: str, query: str) -> list:
        return [db._checked(build_spec(f"{name}-{w}", query, window=w, every="1m", critical=1e9)) for w in ("1m", "4m")]

    def decoded() -> list[set[str]]:
        return [set(kept[1].column_names) for kept in queries.reader._decoded.values()] + \
            [set(kept[1].column_names) for kept in queries._tails.values()]

    first = specs("latency", "SELECT svc, avg(latency) AS v FROM narrow WHERE status < 500 GROUP BY svc")
    assert_batched_as_alone(batched, alone, [(spec, BASE + 600 + 7 * i) for i, spec in enumerate(first)])
    assert queries._tails and decoded() and all(names == {"timestamp", "svc", "status", "latency"}
                                                for names in decoded())
    wider = specs("notes", "SELECT svc, count(*) FILTER (WHERE note = 'y') AS v FROM narrow GROUP BY svc")
    assert_batched_as_alone(batched, alone, [(spec, BASE + 600 + 7 * i + 1) for i, spec in enumerate(first + wider)])
    assert decoded() and all("note" in names for names in decoded())


def test_work_made_ahead_leaves_the_next_windows_no_new_segment_to_aggregate(db, monkeypatch):
    """In a scheduler's idle time the partials of new segments, the merges of blocks sealed since, and the
    partials by second of the blocks across where the next windows start are made ahead, for the fragments
    windows ran lately: the next slots' windows find them cached, and their values are as the queries alone
    give. Nothing is made once the deadline has passed."""
    import numpy as np

    from engine.monitors import queries as module

    monkeypatch.setattr(module, "AHEAD_EVERY", 0.0)
    rng = np.random.default_rng(4)
    db.create_table("ahead", schema=EVENTS_SCHEMA, partitions=1)

    def minutes(first: int, last: int) -> None:  # a batch every 5 s (across whole minutes), a tenth of its events
        for step in range(first * 12, last * 12):  # up to 3 minutes late
            late = np.where(rng.random(20) < 0.1, rng.random(20) * 180, 0.0)
            db.ingest("ahead", [{"timestamp": int((BASE + 5 * step - 0.5 + rng.random() - late[i]) * 1e6),
                                 "svc": ("a", "b")[i % 2], "status": 500 if (step + i) % 3 == 0 else 200,
                                 "latency": float(i), "note": "x"} for i in range(20)])

    minutes(0, 6)
    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    specs = [db._checked(build_spec(f"ahead-{w}", "SELECT svc, avg(latency) AS v FROM ahead WHERE status < 500 "
                                    "GROUP BY svc", window=w, every="1m", critical=1e9)) for w in ("1m", "3m")]
    assert_batched_as_alone(batched, alone, [(spec, BASE + 360) for spec in specs])
    assert_batched_as_alone(batched, alone, [(spec, BASE + 420) for spec in specs])  # where the next ones start
    minutes(6, 8)
    assert queries.ahead(time.monotonic() - 1) == 0  # no time left: nothing made
    made = queries.ahead(time.monotonic() + 600)
    assert made > 24 and queries.work.counts["ahead: segment"] > 0 and queries.work.counts["ahead: block 60"] > 0
    # the block across the next 1m window's start (that across the next 3m window's, 300 s, the 1m window at
    # 360 s made already)
    assert queries.work.counts["ahead: seconds"] == 1
    misses, by_second = queries.misses, queries.work.counts["seconds"]
    hits, asked = queries.cache.window()
    assert_batched_as_alone(batched, alone, [(spec, BASE + 480) for spec in specs])
    found, looked = queries.cache.window()
    assert found - hits > (looked - asked) / 2  # most of what these windows asked for was cached
    assert queries.misses == misses  # every segment inside the windows had its partial made ahead
    assert queries.work.counts["seconds"] == by_second  # and the blocks across their starts their partials by second
    # a full cache drops first the partials of segments merged into 10 s blocks: the next look ahead does not make
    # them again (they pushed out the blocks windows ask for), and the windows do not need them
    merged = {segment for key in queries.partials if isinstance(key[0], tuple) and key[0][:2] == ("block", 10)
              for segment in key[0][3]}
    with queries._lock:
        for key in [key for key in queries.partials if key[0] in merged]:
            queries.partial_bytes -= queries.partials.pop(key).get_total_buffer_size()
    made_before = queries.work.counts["ahead: segment"]
    queries.ahead(time.monotonic() + 600)
    assert merged and queries.work.counts["ahead: segment"] == made_before
    assert_batched_as_alone(batched, alone, [(spec, BASE + 481) for spec in specs])
    db.drop_table("ahead")
    queries.engine._meta.clear()  # as META_SECONDS later
    assert queries.ahead(time.monotonic() + 600) == 0 and not queries._used  # a table gone is no error: left out


def test_the_blocks_the_next_windows_hold_at_their_starts_are_made_ahead_from_their_rows(db, monkeypatch):
    """A window's start reaches blocks long after they were new, when the cache has let them go (and their segments'
    partials): the look-ahead makes the 10 s and minute blocks the windows of the next minute hold at their starts,
    each 10 s block in one pass over its rows; those windows then make none, and give the values of the queries
    alone."""
    from engine.monitors import queries as module

    monkeypatch.setattr(module, "AHEAD_EVERY", 0.0)
    db.create_table("starts", schema=EVENTS_SCHEMA, partitions=1)
    for step in range(200):  # a segment every 2 s for 400 s: five in a 10 s block
        db.ingest("starts", [{"timestamp": int((BASE + 2 * step + 0.1 * i) * 1e6), "svc": ("a", "b", "c")[i % 3],
                              "status": 500 if (step + i) % 5 == 0 else 200, "latency": float((step + 3 * i) % 17),
                              "note": "x"} for i in range(4)])
    specs = [db._checked(build_spec(f"starts-{i}", q.replace("blocked", "starts"), window="4m", every="1m",
                                    critical=1e9)) for i, q in enumerate(BLOCKED[:3])]
    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    # windows a second apart: starts at 103 s and 104 s, so the next ones at 105 s to 164 s
    assert_batched_as_alone(batched, alone, [(spec, BASE + 343 + shift) for spec in specs for shift in (0, 1)])
    forget_partials(queries)
    made = queries.ahead(time.monotonic() + 600)
    assert made > 0 and queries.work.counts["ahead: block 10 rows"] >= 10  # 105-180 s, in 10 s blocks
    assert queries.work.counts["ahead: block 60"] >= 1  # the minute blocks to the next ten minutes, from them
    # only the newest segments' own partials (the last 120 s), for each fragment
    assert queries.work.counts["ahead: segment"] <= 61 * len(queries._used)
    done, covered, read = queries.work.counts.copy(), queries.cache.covered, queries.cache.read
    for shift in (5, 20, 50):  # windows starting at 108 s, 123 s and 153 s
        assert_batched_as_alone(batched, alone, [(spec, BASE + 343 + shift) for spec in specs])
    for kind in ("block 10 rows", "block 10", "block 60", "segment"):
        assert queries.work.counts[kind] == done[kind], kind  # all made ahead
    # of the 120 segments in each window, only those across its edges had their rows aggregated: the block at its
    # start (its partial by second: five segments), the one at its end
    assert queries.cache.covered - covered >= 3 * 2 * 115
    assert 0 < queries.cache.read - read <= 0.1 * (queries.cache.covered - covered)


def forget_partials(queries: LocalQueries) -> None:
    """Drop every cached partial, as a full cache drops those of segments half an hour old."""
    with queries._lock:
        queries.partials.clear()
        queries.partial_bytes = 0


def test_a_table_without_segments_has_no_tail_blocks_in_any_window():
    from engine.monitors.queries import _Layout

    assert _Layout(()).tail_blocks_overlapping(0, 60_000_000) == []


def test_a_layout_moved_on_to_each_next_snapshot_equals_the_snapshot_laid_out_anew():
    """Snapshots come every half second: each is laid out from the one before (new segments placed, the blocks
    sealed since made), as laying it out anew would, through batches on time, late ones and a gap."""
    import random
    from types import SimpleNamespace

    from engine.monitors.queries import _Layout

    rng = random.Random(11)
    second = 1_000_000
    segments, now = [], 1_000 * second
    cuts = {}

    def cut(segment):  # a wide segment's core: its last 2 s
        return cuts[segment.id]

    def described(layout):
        return ([s.id for s in layout.timed], layout.span, [s.id for s in layout.untimed],
                {key: block.key for key, block in layout.blocks.items()},
                [block.key for block in layout.tail_blocks], layout.tail_ends, [t.id for t in layout.open_tails])

    previous, moved = None, 0
    for step in range(400):
        now += rng.choice((0.5, 0.5, 0.5, 3.0, 20.0)) * second  # mostly half a second, sometimes a gap (within
        # RECENT_SECONDS: older wide segments are not cut when laid out anew, and stay cut when moved on)
        low = now - (rng.random() * 300 * second if rng.random() < 0.3 else 0.4 * second)  # some late events
        segment = SimpleNamespace(id=f"s{step}", min_time=int(low), max_time=int(now))
        cuts[segment.id] = int(now - 2 * second) if now - low > 10 * second else None
        segments.append(segment)
        if step % 37 == 0:
            segments.append(SimpleNamespace(id=f"u{step}", min_time=None, max_time=None))
        anew = _Layout(tuple(segments), None, cut)
        layout = _Layout.after(previous, tuple(segments), None, cut) if previous is not None else None
        if layout is not None:
            moved += 1
            assert described(layout) == described(anew), step
        previous = layout or anew
    assert moved > 300  # almost every snapshot was moved on, not laid out anew
    # a segment landing in a sealed block, or one gone (compaction), makes a layout anew
    old = SimpleNamespace(id="old", min_time=int(now - 100 * second), max_time=int(now - 99 * second))
    cuts["old"] = None
    assert _Layout.after(previous, (*segments, old), None, cut) is None
    assert _Layout.after(previous, tuple(segments[1:]), None, cut) is None


def test_monitors_of_one_shape_commit_their_group_keys_once_and_keys_no_state_names_are_cleared(tmp_path):
    """Group keys are most of a state's bytes and monitors of a shape share them: each list is committed once
    under its digest. States read back (by this log, and by a fresh one from the files) equal those applied, as
    groups come and go; a list no state names any more is cleared."""
    from engine.monitors.definition import MonitorSpec
    from engine.monitors.history import KEYS, ShardLog
    from engine.monitors.state import SlotOutcome

    store, _, log = open_shard(str(tmp_path))
    log.claim()
    base = build_spec("k", "SELECT svc, avg(latency) AS v FROM ev GROUP BY svc", window="1m", every="1m",
                      critical=10.0)
    specs = {f"k{i}": MonitorSpec.from_record({**base.to_record(), "name": f"k{i}", "table": "ev",
                                               "time_column": "timestamp", "group_columns": ["svc"],
                                               "value_column": "v"}) for i in range(50)}
    groups = [["a", "b", "c"]] * 3 + [["a", "b", "c", "d"]] * 2 + [["a"]] * 2  # a group comes, then most go
    for index, names in enumerate(groups):
        slot = 60.0 * (index + 1)
        log.apply(specs, [SlotOutcome(name, slot, {f'{{"svc":"{g}"}}': float(i + n) for n, g in enumerate(names)},
                                      None, slot) for i, name in enumerate(specs)])
        live = [v for k, v in log.state.offsets.items() if k.startswith(KEYS) and v is not None]
        assert live == [list(log.monitor_state("k0").groups)]  # one list for the 50 monitors
        fresh = ShardLog(store, log.meta, 0)
        fresh.load()
        assert fresh.monitor_states() == log.monitor_states() == {n: log.monitor_state(n) for n in specs}
        assert all(set(state.groups) >= {f'{{"svc":"{g}"}}' for g in names}
                   for state in fresh.monitor_states().values())
    cleared = [k for k, v in log.state.offsets.items() if k.startswith(KEYS) and v is None]
    assert len(cleared) == 1  # the list of three groups; that of four is the one still named (groups expire in 24 h)
    # a checkpoint leaves the cleared list out: read back from it, the shard's offsets no longer name it
    log.log.write_checkpoint(log.state)
    fresh = ShardLog(store, log.meta, 0)
    fresh.load()
    assert cleared[0] not in fresh.state.offsets
    assert fresh.monitor_states() == log.monitor_states()
