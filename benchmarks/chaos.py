"""Chaos at scale: nothing acknowledged lost or doubled while processes die and S3 and the disk fail.

    python -m benchmarks.chaos --seconds 1800 --kills 1000      # the documented long run
    python -m benchmarks.chaos --seconds 120 --kills 60         # a medium run

Starts a loopback S3 (moto's threaded server) and a local Ray, runs
:func:`benchmarks.chaos_run.run_chaos` (see there for what runs and what is
injected), prints progress while it runs, then a table, and writes
``benchmarks/results/chaos.json``.  The exit status is 1 if anything
acknowledged was lost or doubled, a query saw an inconsistent snapshot, or
an orphan survived the last vacuum.  Run as root for the tmpfs full disk
(else the full disk is emulated in the store).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "chaos.json")


def _s3_server() -> tuple[object, str]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="petrel-chaos")
    return server, endpoint


def table(result: dict) -> str:
    """The run as a two-column table."""
    recovery = ", ".join(f"{k} {v['median_s']:.1f}s (max {v['max_s']:.1f}s, n={v['n']})"
                         for k, v in sorted(result["recovery"].items()))
    rows = [
        ("time", f"{result['seconds']:.0f} s"),
        ("SIGKILLs", f"{sum(result['kills'].values())}  " + ", ".join(f"{k} {v}" for k, v in
                                                                      sorted(result["kills"].items()))),
        ("victims not up (skipped)", f"{sum(result.get('kill_skips', {}).values())}"),
        ("S3 faults injected", f"{sum(result['faults'].values())}  " + ", ".join(
            f"{k} {v}" for k, v in sorted(result["faults"].items()))),
        ("disk full periods", f"{result['disk_full_periods']} ({result['disk']})"),
        ("acked batches", f"{result['acked_batches']:,} ({result['acked_rows']:,} rows)"),
        ("stored rows / distinct / SQL count / SQL distinct",
         f"{result['stored_rows']:,} / {result['distinct_rows']:,} / {result['sql_count']:,} / "
         f"{result['sql_distinct']:,}"),
        ("lost", str(result["lost"])),
        ("doubled", str(result["doubled"])),
        ("batches stored in part", str(result["partial_batches"])),
        ("unacked batches stored (once)", str(result["unacked_stored"])),
        ("queries answered / failed", f"{result['queries'].get('answered', 0)} / {result['queries'].get('failed', 0)}"),
        ("query time, median (max)", "{median_s:.1f} s ({max_s:.1f} s)".format(**result["query_seconds"])
                                     if result.get("query_seconds") else "-"),
        ("failed queries by cause", "; ".join(f"{n} {cause}" for cause, n in
                                              list(result.get("query_errors", {}).items())[:4]) or "-"),
        ("maintenance", ", ".join(f"{k} {v}" for k, v in sorted(result["maintenance"].items()))),
        ("orphans after vacuum", str(result["orphans_after_vacuum"])),
        ("recovery (median)", recovery or "-"),
        ("violations", str(len(result["violations"]))),
        ("verdict", "OK" if result["ok"] else "FAILED"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to run (default 120)")
    parser.add_argument("--kills", type=int, default=60, help="SIGKILLs to deliver over the run (default 60)")
    parser.add_argument("--writers", type=int, default=3, help="writer processes; the last writes to the disk")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20, help="rows per batch")
    parser.add_argument("--s3-fault-rate", type=float, default=0.03, help="fraction of S3 calls that fail")
    parser.add_argument("--disk-full-every", type=float, default=30.0)
    parser.add_argument("--disk-full-for", type=float, default=5.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from benchmarks.chaos_run import ChaosConfig, run_chaos
    from engine.runtime import ensure_ray

    server, endpoint = _s3_server()
    ensure_ray(num_cpus=args.cpus)
    workdir = tempfile.mkdtemp(prefix="petrel-chaos-")
    config = ChaosConfig(workdir=workdir, endpoint=endpoint, bucket="petrel-chaos", seconds=args.seconds,
                         kills=args.kills, writers=args.writers, partitions=args.partitions, rows=args.rows,
                         s3_fault_rate=args.s3_fault_rate, disk_full_every=args.disk_full_every,
                         disk_full_for=args.disk_full_for)
    started = time.time()
    try:
        result = run_chaos(config, progress=lambda line: print(line, file=sys.stderr, flush=True)).to_json()
    finally:
        server.stop()
    result["config"] = {k: v for k, v in vars(config).items() if k not in ("workdir", "endpoint")}
    result["started"] = started
    print(table(result))
    for cause, n in list(result["query_errors"].items())[:15]:
        print(f"failed query x{n}: {cause}")
    for cause, n in list(result["maintenance_errors"].items())[:10]:
        print(f"failed maintenance x{n}: {cause}")
    for violation in result["violations"][:20]:
        print("violation:", violation)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    print(f"wrote {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
