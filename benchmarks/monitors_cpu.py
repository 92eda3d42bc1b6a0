"""CPU per monitor evaluation, measured in one process on simulated time (no Ray, no feeder, no other load).

The Ray benchmark (:mod:`benchmarks.monitors`) measures what the service
sustains on the machine as it is; on a shared machine its figures move with
the load.  This one measures what an evaluation costs: CPU seconds, which
the load does not change.  It builds the same monitors (the shapes of
:mod:`benchmarks.monitors`) over ``--tables`` tables holding ``--history``
seconds of events in ``--segment-seconds`` segments, then plays one shard's
scheduler and state processor over ``--seconds`` seconds of simulated time:
each second it adds the new segments, evaluates every monitor whose slot
fell in that second (``Evaluator`` over ``LocalQueries``), and commits the
outcomes (``ShardLog.apply``).  The first period (``every``) is a warm-up
(it fills the partial-aggregate caches from the history) and is not counted.

Reported: CPU ms per evaluation, split into evaluation and commit, queries
per evaluation, cache hits, and the evaluations per minute one core would
sustain (60,000 / CPU ms per evaluation), and the ``--slowest`` seconds
whose evaluations took longest, with what their windows' time went to and
the time spent outside them (the evaluator's own).  ``--ahead S`` gives the
scheduler S seconds after each simulated second to make work ahead, as its
idle time does in the service.  With ``--shards N`` it plays the
scheduler of one shard of N (monitors are sharded by name, so every shard
has every shape): N workers sustain N times what one shard's CPU per
evaluation allows.  ``--profile FILE`` writes a
cProfile of the measured part.

    PYTHONPATH=$PWD python -m benchmarks.monitors_cpu --monitors 10000 --every 30 --seconds 30
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.monitors import AGGREGATES, GROUPS, SCHEMA, WINDOWS, events

NAMESPACE = "bench"
_logs: dict[str, Any] = {}  # table -> (its partition log, the state of its last commit): the benchmark is its only writer


def build_tables(store: Any, catalog: Any, tables: list[str], start: float, seconds: float,
                 segment_seconds: float, rows: int) -> dict[str, Any]:
    """Create ``tables`` and fill each with ``seconds`` of events from ``start``; returns their metadata."""
    metas = {t: catalog.create_table(NAMESPACE, t, schema=SCHEMA, partitions=1) for t in tables}
    rng = np.random.default_rng(7)
    t = start
    while t < start + seconds:
        t += segment_seconds
        append(store, metas, rng, t, segment_seconds, rows)
    return metas


def append(store: Any, metas: dict[str, Any], rng: np.random.Generator, end: float, span: float, rows: int) -> None:
    """One segment per table with ``rows`` events in ``[end - span, end)``, committed."""
    from storage.log import PartitionLog
    from storage.segment import write_segment

    for name, meta in metas.items():
        table = events(rows, rng, end)  # its rows fall in the half second before ``end``: spread them over ``span``
        stamps = ((end - rng.random(rows) * span) * 1e6).astype(np.int64)
        table = table.set_column(0, "timestamp", pa.array(stamps).cast(SCHEMA.field("timestamp").type))
        entry = write_segment(store, meta.path, table, partition=0, time_column=meta.time_column)
        log, state = _logs.get(name) or (PartitionLog(store, meta.path, 0), None)
        _logs[name] = (log, log.commit(state or log.load(), epoch=None, added=[entry]))


def build_specs(queries: Any, catalog: Any, tables: list[str], count: int, every: str) -> list[Any]:
    """``count`` checked monitors over the benchmark's shapes (as :func:`benchmarks.monitors.define` makes them)."""
    from engine.monitors.compile import check_query
    from engine.monitors.definition import build_spec

    shapes = [(t, g, a, w) for t in tables for g in GROUPS for a in AGGREGATES for w in WINDOWS]
    checked = []
    for index, (table, groups, aggregate, window) in enumerate(shapes[: min(len(shapes), count)]):
        query = f"SELECT {groups}, {aggregate} AS value FROM {table} GROUP BY {groups}"
        spec = build_spec(f"shape-{index}", query, window=window, every=every, critical=1e12)
        checked.append(check_query(spec, lambda name: catalog.table(NAMESPACE, name), queries.sql))
    specs = list(checked)
    for index in range(len(checked), count):
        base = checked[index % len(checked)]
        query = base.query
        if index % 3 == 0:
            query = query.replace(" GROUP BY", f" WHERE host <> 'host-{index % 100}' GROUP BY")
        specs.append(replace(base, name=f"monitor-{index}", query=query, critical=float(1e12 + index)))
    return specs


def run(args: argparse.Namespace) -> dict[str, Any]:
    import engine.monitors.queries
    from engine.allocator import keep_freed_memory
    from engine.monitors.evaluate import Evaluator
    from engine.monitors.history import ShardLog, ensure_table
    from engine.monitors.service import evaluation_shards
    from engine.monitors.queries import LocalQueries
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore

    keep_freed_memory()  # as a scheduler does
    if args.no_blocks:
        engine.monitors.queries.BLOCK_LEVELS = ()
    with tempfile.TemporaryDirectory(prefix="petrel-monitors-cpu-") as root:
        store = ObjectStore(os.path.join(root, "warehouse"))
        catalog = Catalog(store)
        tables = [f"events{i}" for i in range(args.tables)]
        every = float(args.every)
        start = float(int(time.time()) - args.history - args.seconds - 2 * every)
        built = time.perf_counter()
        metas = build_tables(store, catalog, tables, start, args.history, args.segment_seconds, args.rows)
        build_seconds = time.perf_counter() - built
        queries = LocalQueries(store, NAMESPACE)
        queries.engine.workers = 2  # plan as a scheduler on a 2-CPU cluster does, without asking Ray
        every_spec = build_specs(queries, catalog, tables, args.monitors, f"{int(every)}s")
        owners = evaluation_shards({s.name: s.to_record() for s in every_spec}, args.shards)
        specs = [s for s in every_spec if owners[s.name] == 0]  # the monitors of one scheduler (of --shards)
        evaluator = Evaluator(queries.sql, run_window=queries.window)
        evaluator.register(specs)
        log = ShardLog(store, ensure_table(catalog, NAMESPACE), 0)
        log.claim()
        by_name = {s.name: s for s in specs}
        rng = np.random.default_rng(11)
        now = start + args.history
        totals = {"evaluate": 0.0, "commit": 0.0, "evaluations": 0, "queries": 0, "hits": 0, "misses": 0}
        profile = cProfile.Profile() if args.profile else None
        # (wall seconds evaluating, second, due, seconds outside the queries' windows, the largest work by kind)
        seconds: list[tuple[float, int, int, float, dict[str, float]]] = []
        for second in range(int(every + args.seconds)):
            measured = second >= every
            now += 1.0
            steps = int(round(1.0 / args.segment_seconds)) if args.segment_seconds < 1 else (
                1 if second % int(args.segment_seconds) == 0 else 0)
            for step in range(steps):
                span = min(1.0, args.segment_seconds)
                append(store, metas, rng, now - 1.0 + span * (step + 1), span, args.rows)
            due = [(s, s.slot_at(now)) for s in specs if now - 1.0 < s.slot_at(now) <= now]
            if not due:
                continue
            queries_before, hits, misses = evaluator.stats.queries, queries.hits, queries.misses
            if measured and profile is not None:
                profile.enable()
            cpu, wall, work = time.process_time(), time.perf_counter(), queries.work.seconds.copy()
            outcomes = evaluator.evaluate(due)
            evaluated = time.process_time()
            if measured:
                spent = queries.work.seconds - work
                elapsed = time.perf_counter() - wall
                seconds.append((round(elapsed, 3), second, len(due), round(elapsed - sum(spent.values()), 3),
                                {kind: round(s, 3) for kind, s in spent.most_common(5)}))
            log.apply({name: by_name[name] for name in {o.monitor for o in outcomes}}, outcomes)
            committed = time.process_time()
            if args.ahead:  # the idle time a scheduler has before its next slot: it makes partials ahead
                queries.ahead(time.monotonic() + args.ahead)
            if measured and profile is not None:
                profile.disable()
            if measured:
                totals["evaluate"] += evaluated - cpu
                totals["commit"] += committed - evaluated
                totals["evaluations"] += len(outcomes)
                totals["queries"] += evaluator.stats.queries - queries_before
                totals["hits"] += queries.hits - hits
                totals["misses"] += queries.misses - misses
        if profile is not None:
            profile.dump_stats(args.profile)
        evaluations = max(1, totals["evaluations"])
        cpu_ms = 1000 * (totals["evaluate"] + totals["commit"]) / evaluations
        return {
            "monitors": args.monitors, "shards": args.shards, "monitors_of_shard": len(specs), "every_s": every, "history_s": args.history,
            "segment_seconds": args.segment_seconds, "rows_per_segment": args.rows,
            "segments_per_table": len(queries.engine.resolve(tables[0]).segments),
            "build_s": round(build_seconds, 1), "evaluations": totals["evaluations"],
            "cpu_ms_per_evaluation": round(cpu_ms, 3),
            "evaluate_ms_per_evaluation": round(1000 * totals["evaluate"] / evaluations, 3),
            "commit_ms_per_evaluation": round(1000 * totals["commit"] / evaluations, 3),
            "queries_per_evaluation": round(totals["queries"] / evaluations, 4),
            "cache_hit_rate": round(totals["hits"] / max(1, totals["hits"] + totals["misses"]), 4),
            "window_hit_rate": queries.cache.window_hit_rate(),  # over the warm-up too
            "segment_hit_rate": queries.cache.segment_hit_rate(),
            "blocks_merged": queries.block_misses, "blocks_reused": queries.block_hits,
            "evaluations_per_min_per_core": round(60_000 / cpu_ms) if cpu_ms else None,
            "load_average": [round(x, 1) for x in os.getloadavg()],
            # the seconds whose evaluations took longest (wall): where a slot's lateness comes from
            "slowest_seconds": sorted(seconds, reverse=True)[:args.slowest],
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=10_000)
    parser.add_argument("--tables", type=int, default=3)
    parser.add_argument("--every", type=int, default=30, help="slot period of the monitors, in seconds")
    parser.add_argument("--history", type=float, default=600.0, help="seconds of events stored before the run")
    parser.add_argument("--seconds", type=int, default=30, help="simulated seconds measured after the warm-up")
    parser.add_argument("--segment-seconds", type=float, default=1.0, help="event time each segment spans")
    parser.add_argument("--rows", type=int, default=500, help="events per segment")
    parser.add_argument("--shards", type=int, default=1, help="play the scheduler of shard 0 of this many")
    parser.add_argument("--no-blocks", action="store_true", help="merge every segment's partial, no pre-merged blocks")
    parser.add_argument("--ahead", type=float, default=0.0,
                        help="seconds of work made ahead (LocalQueries.ahead) after each simulated second's slots")
    parser.add_argument("--slowest", type=int, default=10, help="report this many of the slowest seconds")
    parser.add_argument("--profile", default=None, help="write a cProfile of the measured part to this file")
    parser.add_argument("--out", default="benchmarks/results/monitors_cpu.json")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"arguments": vars(args), "result": result}, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
