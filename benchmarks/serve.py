"""Load test of ``petrel serve``: ingest and queries over HTTP and Flight SQL at once, then an exactly-once check.

The server runs as its own process (``petrel serve`` on loopback, HTTP and
Flight SQL, a fresh warehouse); this process runs the clients, each in its
own thread with its own connection:

- ``jsonl``: ingest batches of JSON lines over HTTP;
- ``arrow``: ingest Arrow IPC streams over HTTP;
- ``http-query`` and ``flight-query``: a one-segment query (a small table of
  one segment, filtered and aggregated) over HTTP and over Flight SQL (ADBC).

Every ingest request carries an ``Idempotency-Key``; a request that fails is
retried with the same key.  Every event has a unique id, so afterwards
``count(*)`` must equal the events acknowledged and ``count(DISTINCT id)``
must equal ``count(*)``.  Prints requests/s, events/s and p50/p99 latency per
kind and writes JSON.  Targets on 2 cores: 100,000 events/s as JSON lines,
500,000 as Arrow IPC, one-segment queries under 100 ms p99 during that ingest.

    python benchmarks/serve.py [--seconds 60] [--jsonl-clients 4] [--arrow-clients 2] [--batch 50000]
                               [--arrow-batch 100000] [--out benchmarks/results/serve.json]

Measured on the loaded 2-core development machine (load average about 25),
10-second runs: Arrow IPC, 2 clients of 100k-event requests: 612,000
events/s (p50 155 ms); JSON lines, 3 clients of 50k-line requests: 194,000
events/s (p50 363 ms); one-segment queries meanwhile p50 55-86 ms, p99
220-340 ms over HTTP and Flight SQL; every acknowledged event stored once.
With plans kept for repeated queries and small stages read in the server
(2026-12-06, load average 59-73, 2 JSON-lines and 1 Arrow client, 20 s,
interleaved with the code before): one-segment query p50 17-29 ms over HTTP
and 27-42 ms over Flight SQL (before: 91-110 and 136-161), p99 175-251 and
217-282 ms (before: 559-1,015 and 586-635); see docs/benchmarks.md, and
``benchmarks/serve_breakdown.py`` for the time of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np
import pyarrow as pa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.service.tenants import Limits, TokenStore  # noqa: E402
from storage.objectstore import ObjectStore  # noqa: E402

BASE_MICROS = 1_793_491_200_000_000  # 2026-11-01T00:00Z
SERVICES = np.array(["api", "auth", "billing", "search", "web", "worker"])
PROBE = "SELECT service, count(*) AS n, avg(ms) AS avg_ms FROM probe WHERE ms > 10 GROUP BY service"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arrow_batch(first_id: int, rows: int, rng: np.random.Generator) -> pa.Table:
    ids = np.arange(first_id, first_id + rows, dtype=np.int64)
    return pa.table({
        "timestamp": pa.array(BASE_MICROS + ids % (3 * 3600 * 1_000_000), pa.timestamp("us", "UTC")),
        "service": pa.array(SERVICES[ids % len(SERVICES)]),
        "id": ids,
        "ms": rng.gamma(2.0, 20.0, rows).round(2),
    })


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def json_lines(table: pa.Table) -> bytes:
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    times = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").tolist()
    services, ids, ms = table.column("service").to_pylist(), table.column("id").to_numpy(), table.column("ms").to_numpy()
    return "".join(f'{{"timestamp":"{t}Z","service":"{s}","id":{i},"ms":{m}}}\n'
                   for t, s, i, m in zip(times, services, ids.tolist(), ms.tolist())).encode()


class Kind:
    """Latencies and counts of one kind of request."""

    def __init__(self, name: str) -> None:
        self.name, self.latencies, self.events, self.errors, self.retries = name, [], 0, 0, 0
        self.lock = threading.Lock()

    def record(self, seconds: float, events: int = 0) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.events += events

    def summary(self, elapsed: float) -> dict:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([float("nan")])
        return {"kind": self.name, "requests": len(self.latencies), "requests_per_s": len(self.latencies) / elapsed,
                "events_per_s": self.events / elapsed, "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "errors": self.errors, "retries": self.retries}


def ingest_client(url: str, token: str, kind: Kind, arrow: bool, client_id: int, batch: int, stop: threading.Event,
                  acked: list[int]) -> None:
    rng = np.random.default_rng(client_id)
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/vnd.apache.arrow.stream" if arrow else "application/x-ndjson"}
    sequence = 0
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        while not stop.is_set():
            first = (client_id * 1_000_000 + sequence) * batch
            table = arrow_batch(first, batch, rng)
            body = ipc(table) if arrow else json_lines(table)
            key = f"{kind.name}-{client_id}-{sequence}"
            for attempt in range(20):
                started = time.perf_counter()
                try:
                    reply = client.post("/v1/tables/events/events", content=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    reply = None
                if reply is not None and reply.status_code == 200:
                    kind.record(time.perf_counter() - started, reply.json()["accepted"])
                    acked.append(reply.json()["accepted"])
                    break
                kind.errors += 1
                kind.retries += 1
                time.sleep(0.2 * (attempt + 1))
            sequence += 1


def http_query_client(url: str, token: str, kind: Kind, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            reply = client.post("/v1/sql", content=PROBE)
            if reply.status_code == 200:
                kind.record(time.perf_counter() - started)
            else:
                kind.errors += 1
                time.sleep(0.1)


def flight_query_client(flight_url: str, token: str, kind: Kind, stop: threading.Event) -> None:
    import adbc_driver_flightsql.dbapi as flight_sql

    with flight_sql.connect(flight_url, autocommit=True,
                            db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"}) as conn:
        with conn.cursor() as cursor:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    cursor.execute(PROBE)
                    cursor.fetch_arrow_table()
                    kind.record(time.perf_counter() - started)
                except Exception:
                    kind.errors += 1
                    time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jsonl-clients", type=int, default=4)
    parser.add_argument("--arrow-clients", type=int, default=2)
    parser.add_argument("--http-query-clients", type=int, default=1)
    parser.add_argument("--flight-query-clients", type=int, default=1)
    parser.add_argument("--batch", type=int, default=50_000, help="events per JSON-lines request")
    parser.add_argument("--arrow-batch", type=int, default=100_000, help="events per Arrow IPC request")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "serve.json"))
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="petrel-serve-bench-")
    warehouse = os.path.join(workdir, "warehouse")
    tokens = TokenStore(ObjectStore(warehouse))
    token, _ = tokens.create("bench")
    # The exactly-once check counts distinct ids of every event sent (tens of millions in a 60 s run),
    # more than a tenant's default memory bound and timeout allow: it runs under a token with larger ones.
    checker, _ = tokens.create("bench", Limits(max_query_memory=16 << 30, query_timeout=600.0))
    port, flight_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    server = subprocess.Popen([sys.executable, "-m", "engine.cli", "--warehouse", warehouse, "serve", "--port",
                               str(port), "--flight-port", str(flight_port)], env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.5)
        auth = {"Authorization": f"Bearer {token}"}
        httpx.post(f"{url}/v1/tables", headers=auth, json={"name": "events", "partitions": args.partitions,
                                                           "routing_key": "service"}, timeout=60).raise_for_status()
        httpx.post(f"{url}/v1/tables", headers=auth, json={"name": "probe"}, timeout=60).raise_for_status()
        probe = ipc(arrow_batch(0, 20_000, np.random.default_rng(0)))
        httpx.post(f"{url}/v1/tables/probe/events", headers={**auth, "Content-Type": "application/vnd.apache.arrow.stream",
                                                             "Idempotency-Key": "probe"},
                   content=probe, timeout=120).raise_for_status()
        for _ in range(3):  # warm: owners started, worker pool started, caches filled
            httpx.post(f"{url}/v1/sql", headers=auth, content=PROBE, timeout=120).raise_for_status()
        warm = arrow_batch(10**15, 100, np.random.default_rng(1))
        httpx.post(f"{url}/v1/tables/events/events", headers={**auth, "Content-Type": "application/vnd.apache.arrow.stream",
                                                              "Idempotency-Key": "warm"},
                   content=ipc(warm), timeout=120).raise_for_status()

        kinds = {name: Kind(name) for name in ("jsonl", "arrow", "http-query", "flight-query")}
        stop, acked, threads = threading.Event(), [100], []
        for i in range(args.jsonl_clients):
            threads.append(threading.Thread(target=ingest_client, args=(url, token, kinds["jsonl"], False, i + 1,
                                                                         args.batch, stop, acked)))
        for i in range(args.arrow_clients):
            threads.append(threading.Thread(target=ingest_client, args=(url, token, kinds["arrow"], True, 1000 + i,
                                                                         args.arrow_batch, stop, acked)))
        for _ in range(args.http_query_clients):
            threads.append(threading.Thread(target=http_query_client, args=(url, token, kinds["http-query"], stop)))
        for _ in range(args.flight_query_clients):
            threads.append(threading.Thread(target=flight_query_client,
                                            args=(f"grpc://127.0.0.1:{flight_port}", token, kinds["flight-query"], stop)))
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started

        answer = httpx.post(f"{url}/v1/sql", headers={"Authorization": f"Bearer {checker}"}, timeout=300,
                            content="SELECT count(*) AS n, count(DISTINCT id) AS d FROM events")
        if answer.status_code != 200:
            print(f"the exactly-once check failed: {answer.status_code} {answer.text}", file=sys.stderr)
            return 1
        check = answer.json()["rows"][0]
        stored, distinct = check
        expected = sum(acked)
        results = [kinds[name].summary(elapsed) for name in kinds]
        print(f"{'kind':<14}{'requests':>10}{'req/s':>10}{'events/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for r in results:
            print(f"{r['kind']:<14}{r['requests']:>10}{r['requests_per_s']:>10.1f}{r['events_per_s']:>12,.0f}"
                  f"{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['errors']:>8}")
        exactly_once = stored == expected == distinct
        print(f"acknowledged {expected:,} events; stored {stored:,}, distinct ids {distinct:,}: "
              f"{'exactly once' if exactly_once else 'MISMATCH'}")
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump({"seconds": elapsed, "cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
                       "batch": args.batch, "arrow_batch": args.arrow_batch, "clients": {k: v for k, v in vars(args).items() if k.endswith("clients")},
                       "kinds": results, "acknowledged": expected, "stored": stored, "distinct": distinct,
                       "exactly_once": exactly_once}, handle, indent=2)
        return 0 if exactly_once else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        try:  # the server's own local Ray, started in its process group
            os.killpg(server.pid, 9)
        except ProcessLookupError:
            pass
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
