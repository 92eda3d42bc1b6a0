"""Where a one-segment query's time goes in the service: token, snapshot refresh, planning, the run on Ray, rendering.

Runs the service core in this process over a fresh warehouse with the
probe table of ``benchmarks/serve.py`` (20,000 events, one segment), and
times each step of ``POST /v1/sql`` on its own, many times, optionally
while other threads ingest into another table through the same service
(``--ingest-threads``), as the HTTP server does under load:

- ``token``: resolving the bearer token (cached for two seconds);
- ``snapshot``: refreshing the table's snapshot (one probe per partition);
- ``plan (cold)``: parsing, qualifying and optimizing, with no kept plan;
- ``plan (kept)``: the same with the plan kept from the last time;
- ``run (worker)``: the stage on a query worker through Ray, and the merge here;
- ``run (here)``: the same stage read in this process, as the service runs a
  stage over a few small segments;
- ``render``: the result as the JSON reply;
- ``query``: the whole ``Service.query`` as the HTTP handler calls it.

    python benchmarks/serve_breakdown.py [--repeat 200] [--ingest-threads 0] [--out ...]

Prints p50/p99 per step and writes JSON.  Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.serve import PROBE, arrow_batch  # noqa: E402
from engine.query.scheduler import run_plan  # noqa: E402
from engine.service.core import LOCAL_STAGE_BYTES, Service, ServiceConfig  # noqa: E402
from engine.service.http import render_result  # noqa: E402


def _timed(step, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _summary(name: str, times: list[float]) -> dict:
    ordered = sorted(times)
    return {"step": name, "n": len(ordered), "p50_ms": ordered[len(ordered) // 2],
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], "mean_ms": sum(ordered) / len(ordered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--ingest-threads", type=int, default=0, help="threads ingesting 50k-event batches meanwhile")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "serve_breakdown.json"))
    args = parser.parse_args()

    warehouse = os.path.join(tempfile.mkdtemp(prefix="petrel-breakdown-"), "warehouse")
    service = Service(ServiceConfig(warehouse=warehouse, maintenance=False))
    token, _ = service.tokens.create("bench")
    tenant = service.authenticate(token)
    session = service.session(tenant)
    session.create_table("probe", exist_ok=True)
    session.ingest("probe", arrow_batch(0, 20_000, np.random.default_rng(0)), batch_id="probe")
    session.create_table("events", partitions=2, exist_ok=True)
    for _ in range(3):
        service.query(tenant, PROBE)
    engine = session.queries

    stop = threading.Event()

    def ingest(client: int) -> None:
        rng, batch = np.random.default_rng(client), 0
        while not stop.is_set():
            rows = arrow_batch(10**12 * (client + 1) + batch * 50_000, 50_000, rng)
            service.ingest(tenant, "events", rows, f"breakdown-{client}-{batch}", "arrow", rows.nbytes)
            batch += 1

    loaders = [threading.Thread(target=ingest, args=(i,), daemon=True) for i in range(args.ingest_threads)]
    for thread in loaders:
        thread.start()
    planned = engine.plan(PROBE)
    table = service.query(tenant, PROBE)
    limit = tenant.limits.max_query_memory

    def cold_plan() -> None:
        engine.plans.clear()
        engine.plan(PROBE)

    steps = [
        ("token", lambda: service.authenticate(token)),
        ("snapshot", lambda: engine.resolve("probe")),
        ("plan (cold)", cold_plan),
        ("plan (kept)", lambda: engine.plan(PROBE)),
        ("run (worker)", lambda: run_plan(planned.optimized, lambda: engine.pool, 30.0, None, 0.0,
                                          engine.fragment_bytes, engine.reader, 0, limit)),
        ("run (here)", lambda: run_plan(planned.optimized, lambda: engine.pool, 30.0, None, 0.0,
                                        engine.fragment_bytes, engine.reader, LOCAL_STAGE_BYTES, limit)),
        ("render", lambda: render_result(table, "application/json")),
        ("query", lambda: service.query(tenant, PROBE)),
    ]
    try:
        results = [_summary(name, _timed(step, args.repeat)) for name, step in steps]
    finally:
        stop.set()
        for thread in loaders:
            thread.join()
        service.close()
    print(f"{'step':<16}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}   ({args.repeat} each, "
          f"{args.ingest_threads} ingest threads, load average {os.getloadavg()[0]:.1f})")
    for r in results:
        print(f"{r['step']:<16}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['mean_ms']:>10.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"repeat": args.repeat, "ingest_threads": args.ingest_threads, "cores": os.cpu_count(),
                   "load_average": round(os.getloadavg()[0], 2), "steps": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
