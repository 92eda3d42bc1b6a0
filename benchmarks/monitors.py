"""Monitor benchmark: many monitors over a few tables while events are being ingested.

Setup: three tables of web events (a dense one, a wide one of 120 columns
sharing the dense rate, and a sparse one of ``--sparse-rate`` events/s), each
holding ``--history-days`` (30) of history backfilled before the run as users
do it (hourly batches in shuffled order, and the dense table's last day once
more as one batch of ``--huge-batch-rows``), ``--monitors`` monitors spread over
about 200 distinct query shapes (table x group columns x aggregate x window;
each monitor has its own threshold and, for a third of them, its own WHERE),
and a feeder ingesting ``--ingest-rate`` events per second stamped 'now', but
for a ``--late-share`` of them (5%) stamped up to ``--late-seconds`` (10
minutes) in the past: late events land in windows already evaluated and in
sealed blocks, as they do for users.
The monitor service (``MonitorService``, ``--shards`` shards: one scheduler,
state processor and notifier actor each) runs for ``--duration`` seconds.
Beside it, on the same cores, a sparse tenant: another namespace with its
own sparse table (the same history and rate), ``--tenant-monitors`` monitors
over it and its own one-shard monitor service, as a small team's would run;
its evaluations and lateness are reported apart (``tenant_*``), since a
small tenant starved by a big one is a failure the totals would hide.

A probe monitor measures the time from ingesting an event that crosses its
threshold to a loopback webhook receiving the ALERT: the probe event is
ingested every few seconds, and the alert clears through no-data in between.

Reported: evaluations per minute (over the whole run, and over its second
half, past the start-up), lateness (evaluation committed minus slot time)
p50/p99 of every slot of the run, and p99 by quarter, queries per
evaluation (shared scans), cache hit
rate (partial aggregates of whole segments reused by sliding windows),
scheduler CPU seconds per evaluation, and threshold-to-webhook p50/p99.
Prints a table and writes JSON.  Not a test: it asserts nothing.  A run
shorter than the longest window (30 minutes) plus the late events' age
measures the first minutes, not the steady state: windows' starts are only
reached later (`evaluations_per_min_by_quarter` shows whether a rate holds).

    PYTHONPATH=$PWD python -m benchmarks.monitors --monitors 1000,10000,100000 --duration 120
    PYTHONPATH=$PWD python -m benchmarks.monitors --reduced        # a quick check that it works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("service", pa.string()),
    ("host", pa.string()),
    ("region", pa.string()),
    ("status", pa.int64()),
    ("latency", pa.float64()),
    ("bytes", pa.int64()),
])
WIDE_EXTRA = 113  # the wide table's columns beyond SCHEMA's 7: 120 in all
WIDE_SCHEMA = pa.schema(list(SCHEMA) + [(f"attr_{i}", pa.float64()) for i in range(80)]
                        + [(f"tag_{i}", pa.string()) for i in range(WIDE_EXTRA - 80)])
GROUPS = ("service", "region", "service, region")
AGGREGATES = (
    "avg(latency)", "max(latency)", "count(*)", "sum(bytes)",
    "count(*) FILTER (WHERE status >= 500) * 100.0 / count(*)", "approx_quantile(latency, 0.99)",
)
WINDOWS = ("1m", "5m", "15m", "30m")


SERVICES = pa.array([f"svc-{i}" for i in range(20)])
HOSTS = pa.array([f"host-{i}" for i in range(100)])
REGIONS = pa.array([f"r{i}" for i in range(4)])


def events(rows: int, rng: np.random.Generator, now: float, late_share: float = 0.0,
           late_seconds: float = 0.0, wide: bool = False, span: float = 0.5) -> pa.Table:
    """``rows`` web events of the last ``span`` seconds, ``late_share`` of them up to ``late_seconds`` old instead
    (strings taken from their few values: the feeder shares the machine with what it measures); ``wide``: with
    the 113 more columns of WIDE_SCHEMA (a few arrays repeated: their values do not matter to the monitors)."""
    ages = rng.random(rows) * span
    late = rng.random(rows) < late_share
    ages[late] = rng.random(int(late.sum())) * late_seconds
    table = _base_events(rows, rng, now, ages)
    if not wide:
        return table
    numbers = [pa.array(rng.random(rows)) for _ in range(4)]
    tags = [HOSTS.take(rng.integers(0, 100, rows)) for _ in range(2)]
    for i in range(80):
        table = table.append_column(f"attr_{i}", numbers[i % 4])
    for i in range(WIDE_EXTRA - 80):
        table = table.append_column(f"tag_{i}", tags[i % 2])
    return table


def _base_events(rows: int, rng: np.random.Generator, now: float, ages: np.ndarray) -> pa.Table:
    return pa.table({
        "timestamp": pa.array(((now - ages) * 1e6).astype(np.int64)).cast(
            pa.timestamp("us", tz="UTC")),
        "service": SERVICES.take(rng.integers(0, 20, rows)),
        "host": HOSTS.take(rng.integers(0, 100, rows)),
        "region": REGIONS.take(rng.integers(0, 4, rows)),
        "status": pa.array(rng.choice([200, 200, 200, 404, 500], rows), pa.int64()),
        "latency": pa.array(rng.lognormal(3.5, 0.7, rows), pa.float64()),
        "bytes": pa.array(rng.integers(100, 10_000, rows), pa.int64()),
    }, schema=SCHEMA)


class Feeder:
    """Ingests ``rates[i]`` events per second into ``tables[i]``: a thread per table, a batch every half second.

    Each ``ingest`` call waits for its commit, so a table's thread sends the
    events of all the time since its last batch: the rate holds while
    commits take longer than half a second, as long as the machine keeps up.
    """

    def __init__(self, db: Any, tables: list[str], rates: list[float], late_share: float = 0.0,
                 late_seconds: float = 0.0) -> None:
        self.db, self.tables, self.rates = db, tables, rates
        self.late = (late_share, late_seconds)
        self.stopped = threading.Event()
        self.counts = [0] * len(tables)
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(len(tables))]
        for thread in self.threads:
            thread.start()

    @property
    def ingested(self) -> int:
        return sum(self.counts)

    def run(self, index: int) -> None:
        rng = np.random.default_rng(index + 1)
        per_second = self.rates[index]
        last = time.time()
        while not self.stopped.is_set():
            started = time.time()
            rows = max(1, int(per_second * min(started - last, 5.0)))
            last = started
            self.db.ingest(self.tables[index], events(rows, rng, started, *self.late, wide=self.tables[index] == WIDE))
            self.counts[index] += rows
            self.stopped.wait(max(0.0, 0.5 - (time.time() - started)))

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)


class Receiver:
    """A loopback webhook that notes when each key arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.arrivals.setdefault(body["key"], time.time())
                receiver.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


DENSE, WIDE, SPARSE = "events0", "wide", "sparse"
TABLES = [DENSE, WIDE, SPARSE]
TENANT = "tenant"  # the sparse tenant's namespace


def backfill(db: Any, args: argparse.Namespace, tables: list[str]) -> float:
    """Store ``--history-days`` of history of ``tables`` before the run, as users backfill: an hourly batch per
    table, the hours in shuffled order (late and out of order), the sparse table with a tenth of the rows, and
    the dense table's last day again as one huge batch.  Returns the seconds it took (not part of the measured
    run)."""
    if not args.history_days:
        return 0.0
    from concurrent.futures import ThreadPoolExecutor

    started = time.time()
    rng = np.random.default_rng(99)
    hours = int(args.history_days * 24)
    now = time.time() - 3600  # the history ends an hour before the run's events start

    def store(hour: int) -> None:
        end, local = now - hour * 3600.0, np.random.default_rng(hour)
        for table in tables:
            rows = args.history_rows // (10 if table == SPARSE else 1)
            db.ingest(table, events(rows, local, end, wide=table == WIDE, span=3600.0))

    with ThreadPoolExecutor(8) as pool:  # backfills run many loaders at once: their calls commit together
        for done, _ in enumerate(pool.map(store, rng.permutation(hours)), 1):
            if done % 100 == 0 or done == hours:
                print(f"history of {', '.join(tables)}: {done}/{hours} hours stored ({time.time() - started:.0f} s)",
                      flush=True)
    if args.huge_batch_rows and DENSE in tables:
        db.ingest(DENSE, events(args.huge_batch_rows, rng, now, span=86_400.0))
        print(f"history: one batch of {args.huge_batch_rows:,} rows over the last day ({time.time() - started:.0f} s)",
              flush=True)
    return time.time() - started


def define(db: Any, tables: list[str], count: int, every: str) -> int:
    """``count`` monitors over the shapes; one create_monitor per shape (checked), the rest in one bulk version."""
    from engine.monitors.definition import MonitorSpec

    shapes = [(t, g, a, w) for t in tables for g in GROUPS for a in AGGREGATES for w in WINDOWS]
    checked: list[MonitorSpec] = []
    for index, (table, groups, aggregate, window) in enumerate(shapes[: min(len(shapes), count)]):
        query = f"SELECT {groups}, {aggregate} AS value FROM {table} GROUP BY {groups}"
        checked.append(db.create_monitor(f"shape-{index}", query, window=window, every=every, critical=1e12))
    records = {}
    for index in range(len(checked), count):
        base = checked[index % len(checked)]
        query = base.query
        if index % 3 == 0:
            query = query.replace(" GROUP BY", f" WHERE host <> 'host-{index % 100}' GROUP BY")
        spec = replace(base, name=f"monitor-{index}", query=query, critical=float(1e12 + index))
        records[spec.name] = spec.to_record()
    if records:
        db.monitor_log.create_many(records)
    return len(shapes)


def sustained(progress: list[tuple[float, int]], duration: float) -> int | None:
    """Evaluations per minute over the second half of the run (past the start-up: reading and parsing the
    definitions, the first slots), from the counts sampled as it went."""
    late = [(t, n) for t, n in progress if t >= duration / 2]
    if len(late) < 2 or late[-1][0] <= late[0][0]:
        return None
    return round((late[-1][1] - late[0][1]) / (late[-1][0] - late[0][0]) * 60)


def quarter_spans(samples: list[tuple], duration: float) -> list[tuple[tuple, tuple] | None]:
    """Per quarter of the run, its first and last samples (``samples`` start with their time), or None if it has
    fewer than two at different times."""
    spans = []
    for quarter in range(4):
        inside = [s for s in samples if duration * quarter / 4 <= s[0] <= duration * (quarter + 1) / 4]
        spans.append((inside[0], inside[-1]) if len(inside) > 1 and inside[-1][0] > inside[0][0] else None)
    return spans


def by_quarter(progress: list[tuple[float, int]], duration: float) -> list[int | None]:
    """Evaluations per minute over each quarter of the run."""
    rates: list[int | None] = []
    for span in quarter_spans(progress, duration):
        (t0, n0), (t1, n1) = span or ((0.0, 0), (0.0, 0))
        rates.append(round((n1 - n0) / (t1 - t0) * 60) if span else None)
    return rates


def by_quarter_counts(late: list[tuple[float, Counter]], duration: float) -> list[Counter]:
    """The lateness counted in each quarter of the run (from the running counts sampled as it went)."""
    quarters = []
    for quarter in range(4):
        inside = [counts for t, counts in late if duration * quarter / 4 <= t <= duration * (quarter + 1) / 4]
        before = [counts for t, counts in late if t < duration * quarter / 4]
        quarters.append(inside[-1] - before[-1] if inside and before else inside[-1] if inside else Counter())
    return quarters


def busy_by_quarter(busy: list[tuple[float, list, list, list]], duration: float) -> list[dict[str, list[float]]]:
    """Per quarter of the run, the share of its time each scheduler evaluated and waited, each processor applied."""
    quarters = []
    for span in quarter_spans(busy, duration):
        if span is None:
            quarters.append({})
            continue
        (t0, *first), (t1, *last) = span
        quarters.append({name: shares(t0, t1, before, after)
                         for name, before, after in zip(("evaluating", "waiting", "applying"), first, last)})
    return quarters


def shares(t0: float, t1: float, before: list[float], after: list[float]) -> list[float]:
    """Each actor's share of [t0, t1) spent busy, from its busy seconds counted at t0 and at t1."""
    return [round((b - a) / max(1e-9, t1 - t0), 2) for a, b in zip(before, after)]


def totals(schedulers: list[dict[str, Any]]) -> tuple[int, Counter]:
    """The evaluations and the lateness counts of a service's schedulers, added up."""
    return sum(s["evaluations"] for s in schedulers), sum((Counter(s["lateness"]) for s in schedulers), Counter())


def work_by_poll(work: list[tuple[float, list[Counter], list[float]]]) -> list[tuple[int, list[dict[str, float]]]]:
    """Per poll, per scheduler: the seconds of its four largest kinds of work since the poll before, and of GC."""
    polls = []
    for (_, before, gc_before), (at, now, gc_now) in zip(work, work[1:]):
        per = []
        for kinds_before, kinds, paused_before, paused in zip(before, now, gc_before, gc_now):
            top = {kind: round(seconds, 2) for kind, seconds in (kinds - kinds_before).most_common(4)}
            per.append({**top, "gc": round(paused - paused_before, 2)})
        polls.append((round(at), per))
    return polls


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.array(values), fraction * 100))


def run_case(root: str, monitors: int, args: argparse.Namespace) -> dict[str, Any]:
    import engine
    from engine.monitors.history import ensure_table
    from engine.monitors.service import MonitorService, lateness_percentile

    load_before = os.getloadavg()
    db = engine.connect(root, maintenance=False)
    tables = TABLES
    for table in tables:
        db.create_table(table, schema=WIDE_SCHEMA if table == WIDE else SCHEMA, partitions=1)
    history_seconds = backfill(db, args, tables)
    tenant = engine.connect(root, namespace=TENANT, maintenance=False)
    tenant.create_table(SPARSE, schema=SCHEMA, partitions=1)
    backfill(tenant, args, [SPARSE])
    receiver = Receiver()
    meta = ensure_table(db.catalog, db.namespace, args.shards)  # before the first monitor, which would make it
    started = time.time()
    shapes = define(db, tables, monitors, args.every)
    db.create_monitor("probe", f"SELECT max(latency) AS v FROM {DENSE} WHERE host = 'probe'", window="2s",
                      every="1s", critical=1e6, no_data={"after": "1s", "action": "ok"},
                      notify=f"webhook:{receiver.url}")
    define_seconds = time.time() - started
    tenant_meta = ensure_table(tenant.catalog, TENANT, 1)
    define(tenant, [SPARSE], args.tenant_monitors, args.every)
    feeder = Feeder(db, tables, [args.ingest_rate / 2, args.ingest_rate / 2, args.sparse_rate],
                    args.late_share, args.late_seconds)
    tenant_feeder = Feeder(tenant, [SPARSE], [args.sparse_rate], args.late_share, args.late_seconds)
    service = MonitorService(db.store, db.namespace, meta, tick=0.2).start()
    tenant_service = MonitorService(tenant.store, TENANT, tenant_meta, tick=0.2).start()
    probes: list[float] = []
    progress: list[tuple[float, int]] = []  # (seconds since the service started, evaluations so far)
    late: list[tuple[float, Counter]] = []  # (seconds since the service started, lateness counted so far)
    busy: list[tuple[float, list, list, list]] = []  # (seconds, per scheduler evaluating / waiting, per processor applying)
    work: list[tuple[float, list[Counter], list[float]]] = []  # (seconds, per scheduler its work by kind and GC pauses)
    caches: list[tuple[int, list[dict]]] = []  # (seconds, per scheduler its partial cache's counts)
    begun = time.time()
    try:
        deadline = begun + args.duration
        while time.time() < deadline:
            db.ingest(DENSE, [{"timestamp": int(time.time() * 1e6), "service": "svc-0", "host": "probe",
                                   "region": "r0", "status": 200, "latency": 2e6, "bytes": 1}])
            probes.append(time.time())
            polled = service.stats()
            schedulers = polled["schedulers"]
            evaluated, lateness = totals(schedulers)
            progress.append((time.time() - begun, evaluated))
            late.append((progress[-1][0], lateness))
            busy.append((progress[-1][0], [s["evaluation_seconds"] for s in schedulers],
                         [s["handoff_wait_seconds"] for s in schedulers], [p["apply_seconds"] for p in polled["processors"]]))
            work.append((progress[-1][0], [Counter(s["work_seconds"]) for s in schedulers],
                         [sum(s["gc"]["seconds"]) for s in schedulers]))
            caches.append((round(progress[-1][0]), [s["cache"] for s in schedulers]))
            time.sleep(min(args.probe_every, max(0.0, deadline - time.time())))
        stats, tenant_stats = service.stats(), tenant_service.stats()
    finally:
        service.stop()
        tenant_service.stop()
        feeder.stop()
        tenant_feeder.stop()
    alerts = sorted(t for k, t in receiver.arrivals.items() if k.startswith("probe/") and
                    any(b["key"] == k and b["to"] == "ALERT" for b in receiver.bodies))
    delays = []
    for sent in probes:  # each ALERT answers the latest probe sent before it
        later = [a for a in alerts if a >= sent]
        if later and all(not (sent < p < later[0]) for p in probes):
            delays.append(later[0] - sent)
    schedulers = stats["schedulers"]
    evaluations, lateness = totals(schedulers)
    late.append((args.duration, lateness))
    result = {
        "monitors": monitors, "shapes": shapes, "shards": args.shards, "every": args.every,
        "duration_s": args.duration, "define_s": round(define_seconds, 1),
        "history_days": args.history_days, "history_s": round(history_seconds, 1),
        "ingested_events": feeder.ingested, "ingest_rate_per_s": round(feeder.ingested / args.duration),
        "evaluations": evaluations, "evaluations_per_min": round(evaluations / args.duration * 60),
        "second_half_evaluations_per_min": sustained(progress, args.duration),
        "evaluations_per_min_by_quarter": by_quarter(progress, args.duration),  # a rate falling is not keeping up
        # the share of each quarter's wall-clock each actor spent: scheduler evaluating, scheduler waiting for its
        # last hand-off to be applied, processor applying (a share near 1 is an actor that cannot keep up)
        "busy_by_quarter": busy_by_quarter(busy, args.duration),
        # the same shares between each poll and the next, beside lateness_p99_s_by_poll: what a spike coincides with
        "busy_by_poll": [(round(at), shares(then, at, before, now), shares(then, at, applied_before, applied))
                         for (then, before, _, applied_before), (at, now, _, applied) in zip(busy, busy[1:])],
        "queries": sum(s["queries"] for s in schedulers),
        "queries_per_evaluation": round(sum(s["queries"] for s in schedulers) / max(1, evaluations), 4),
        "skipped_slots": sum(s["skipped"] for s in schedulers),
        "lateness_p50_s": lateness_percentile(lateness, 0.5), "lateness_p99_s": lateness_percentile(lateness, 0.99),
        "lateness_p99_s_by_quarter": [lateness_percentile(counts, 0.99) for counts in by_quarter_counts(late, args.duration)],
        # between each poll and the next (every --probe-every s): whether the tail is spread or comes in spikes
        "lateness_p99_s_by_poll": [(round(at), lateness_percentile(now - before, 0.99))
                                   for (_, before), (at, now) in zip(late, late[1:]) if now - before],
        # per poll and scheduler: the seconds of its largest kinds of work, and of collector pauses
        "work_by_poll": work_by_poll(work),
        # per poll and scheduler: its partial cache's entries and bytes by kind, what it dropped (and for which
        # limit), and what it made again after dropping it (engine.monitors.queries.CacheCounts)
        "cache_by_poll": caches,
        "slow_windows": [window for s in schedulers for window in s["slow_windows"]],
        # evaluation parts of 1 s or more: (when, seconds, slots, CPU seconds, GC seconds, window seconds, by kind)
        "slow_parts": [part for s in schedulers for part in s["slow_parts"]],
        "gc": {"schedulers": [s["gc"] for s in schedulers], "processors": [p["gc"] for p in stats["processors"]]},
        "cpu_ms_per_evaluation": round(1000 * sum(s["cpu_seconds"] for s in schedulers) / max(1, evaluations), 3),
        "cache_hit_rate": round(sum(s["cache_hits"] for s in schedulers)
                                / max(1, sum(s["cache_hits"] + s["cache_misses"] for s in schedulers)), 4),
        # the share of the partials windows asked for at their slots that were cached, segments read across their
        # edges counted as misses (cache_hit_rate above: every lookup of a segment's partial, ahead or not)
        "window_hit_rate": round(sum(s["cache"]["window"][0] for s in schedulers)
                                 / max(1, sum(s["cache"]["window"][1] for s in schedulers)), 4),
        # the share of the segments windows covered at their slots whose rows they did not aggregate (their
        # partials or blocks cached): what Husky's hit rate counts
        "segment_hit_rate": round(1 - sum(s["cache"]["segments"][1] for s in schedulers)
                                  / max(1, sum(s["cache"]["segments"][0] for s in schedulers)), 4),
        # the same, the tails (late rows) of wide segments left out: those of the last minutes are aggregated again
        # by every window, from rows kept decoded
        "segment_hit_rate_without_tails": round(
            1 - sum(s["cache"]["segments"][1] - s["cache"]["segments"][3] for s in schedulers)
            / max(1, sum(s["cache"]["segments"][0] - s["cache"]["segments"][2] for s in schedulers)), 4),
        "blocks_merged": sum(s["block_misses"] for s in schedulers),
        "blocks_reused": sum(s["block_hits"] for s in schedulers),
        "threshold_to_webhook_p50_s": percentile(delays, 0.5),
        "threshold_to_webhook_p99_s": percentile(delays, 0.99),
        "probe_alerts": len(delays),
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],  # the machine is shared: other work runs too
        "per_scheduler": [{k: round(s[k], 1) if isinstance(s[k], float) else s[k]
                           for k in ("monitors", "evaluations", "queries", "cpu_seconds", "cache_hits", "cache_misses")}
                          for s in schedulers],
        "errors": [e for s in schedulers for e in s["errors"]][:5],
        **tenant_figures(tenant_stats, args),
    }
    tenant.close()
    db.close()
    return result


def tenant_figures(stats: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The sparse tenant's service, from its stats at the end of the run."""
    from engine.monitors.service import lateness_percentile

    schedulers = stats["schedulers"]
    evaluations, lateness = totals(schedulers)
    return {
        "tenant_monitors": args.tenant_monitors,
        "tenant_evaluations_per_min": round(evaluations / args.duration * 60),
        "tenant_skipped_slots": sum(s["skipped"] for s in schedulers),
        "tenant_lateness_p50_s": lateness_percentile(lateness, 0.5),
        "tenant_lateness_p99_s": lateness_percentile(lateness, 0.99),
        "tenant_errors": [e for s in schedulers for e in s["errors"]][:5],
    }


def show(results: list[dict[str, Any]]) -> None:
    columns = ("monitors", "evaluations_per_min", "second_half_evaluations_per_min", "queries_per_evaluation", "skipped_slots", "lateness_p50_s",
               "lateness_p99_s", "cpu_ms_per_evaluation", "cache_hit_rate", "window_hit_rate", "segment_hit_rate", "segment_hit_rate_without_tails", "threshold_to_webhook_p50_s", "threshold_to_webhook_p99_s",
               "ingest_rate_per_s", "load_average_after", "tenant_evaluations_per_min", "tenant_lateness_p99_s")
    print("  ".join(f"{c:>14}" for c in columns))
    for result in results:
        cells = []
        for column in columns:
            value = result[column]
            if isinstance(value, list):
                value = value[0]
            cells.append(f"{value:>14.3f}" if isinstance(value, float) else f"{str(value):>14}")
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", default="1000,10000,100000", help="comma-separated monitor counts")
    parser.add_argument("--history-days", type=float, default=30.0, help="days of history stored before the run")
    parser.add_argument("--history-rows", type=int, default=2_000, help="rows per hourly history batch per table")
    parser.add_argument("--huge-batch-rows", type=int, default=1_000_000, help="rows of the one huge history batch")
    parser.add_argument("--sparse-rate", type=float, default=2.0, help="events per second of the sparse table")
    parser.add_argument("--tenant-monitors", type=int, default=1_000, help="monitors of the sparse tenant")
    parser.add_argument("--every", default="1m", help="slot period of the monitors")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds the service runs per case")
    parser.add_argument("--ingest-rate", type=int, default=50_000, help="events per second ingested meanwhile")
    parser.add_argument("--late-share", type=float, default=0.05, help="share of events ingested late")
    parser.add_argument("--late-seconds", type=float, default=600.0, help="how late, at most")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--probe-every", type=float, default=4.0)
    parser.add_argument("--reduced", action="store_true", help="1,000 monitors every 10 s for 60 s, 2,000 events/s")
    parser.add_argument("--out", default="benchmarks/results/monitors.json")
    args = parser.parse_args(argv)
    if args.reduced:
        args.monitors, args.every, args.duration, args.ingest_rate = "1000", "10s", 60.0, 2000
        args.tenant_monitors = 100
        args.history_days, args.history_rows, args.huge_batch_rows = 2.0, 200, 20_000
    results = []
    for count in [int(c) for c in args.monitors.split(",")]:
        with tempfile.TemporaryDirectory(prefix="petrel-monitors-") as root:
            results.append(run_case(os.path.join(root, "warehouse"), count, args))
        show(results)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                   "arguments": vars(args), "results": results}, handle, indent=2)
    print(f"wrote {args.out}")
    print(f"median of lateness over all cases: {statistics.median([r['lateness_p50_s'] or 0 for r in results]):.3f} s")
    return results


if __name__ == "__main__":
    main()
