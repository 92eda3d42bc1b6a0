"""Shared data and helpers for the monitor tests: a small event table with known values."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa

EVENTS_SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("svc", pa.string()),
    ("status", pa.int64()),
    ("latency", pa.float64()),
    ("note", pa.string()),
])
BASE = 1_800_000_000.0  # a whole minute: slots of monitors named below fall on known seconds


def minute_of_events(start: float, per_service: dict[str, tuple[int, int, float]]) -> list[dict[str, Any]]:
    """Events in ``[start, start + 60)``: per service (requests, errors, latency)."""
    rows = []
    for svc, (requests, errors, latency) in per_service.items():
        for i in range(requests):
            rows.append({"timestamp": int((start + i * 60.0 / requests) * 1e6), "svc": svc,
                         "status": 500 if i < errors else 200, "latency": latency, "note": "x"})
    return rows


class Receiver:
    """A loopback webhook receiver that fails (HTTP 503) or stalls on a share of requests."""

    def __init__(self, fail_every: int = 0, stall_every: int = 0, stall_seconds: float = 0.0) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.acknowledged: list[str] = []
        self.fail_every, self.stall_every, self.stall_seconds = fail_every, stall_every, stall_seconds
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key")
                with receiver.lock:
                    receiver.count += 1
                    count = receiver.count
                    receiver.received.append((key, body))
                if receiver.stall_every and count % receiver.stall_every == 0:
                    threading.Event().wait(receiver.stall_seconds)
                if receiver.fail_every and count % receiver.fail_every == 0:
                    self.send_response(503)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.acknowledged.append(key)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def applied_slots(store: Any, meta: Any) -> list[str]:
    """Every (monitor@slot) idempotency key the state processors committed, in commit order, over all shards."""
    from storage.log import PartitionLog

    keys = []
    for shard in range(meta.partitions):
        log = PartitionLog(store, meta.path, shard)
        commits, _ = log.versions()
        for version in commits:
            record = log.record(version)
            if record.get("kind") == "monitor":
                keys += (record.get("offsets") or {}).get("_applied") or []
    return keys


class LiveFeed:
    """Ingests events stamped 'now' into ``table`` every ``period`` seconds; the value flips every ``flip`` seconds."""

    def __init__(self, session: Any, table: str, period: float = 0.3, flip: float = 3.0) -> None:
        import time as _time

        self.session, self.table, self.period, self.flip = session, table, period, flip
        self.stopped = threading.Event()
        self.started = _time.time()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time as _time

        while not self.stopped.is_set():
            now = _time.time()
            value = 10.0 if int((now - self.started) / self.flip) % 2 else 1.0
            rows = [{"timestamp": int(now * 1e6), "svc": svc, "status": 200, "latency": value, "note": "live"}
                    for svc in ("a", "b")]
            try:
                self.session.ingest(self.table, rows)
            except Exception:  # noqa: BLE001 - a feed hiccup only thins the data
                pass
            self.stopped.wait(self.period)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


def batched_and_alone(db: Any, due: list) -> tuple[dict, dict, Any, Any]:
    """``due`` (spec, slot) pairs evaluated batched (shared scans, rollups, cached partials) and each query
    alone: (batched values, alone values, the batched evaluator, its LocalQueries), values by (monitor, slot)."""
    from engine.monitors.evaluate import Evaluator
    from engine.monitors.queries import LocalQueries

    queries = LocalQueries(db.store, db.namespace)
    batched = Evaluator(queries.sql, run_window=queries.window)
    batched.register([spec for spec, _ in due])
    alone = Evaluator(LocalQueries(db.store, db.namespace).sql, share=False)
    got = {(o.monitor, o.slot): o.values for o in batched.evaluate(due)}
    want = {(o.monitor, o.slot): o.values for o in alone.evaluate(due)}
    return got, want, batched, queries


def assert_same_values(got: dict, want: dict) -> None:
    """Equal outcomes, a group with no value counting as a group not found (as the state machine takes them:
    a query without GROUP BY over no rows gives one row of NULL, a shared scan or rollup no row)."""
    import pytest

    assert got.keys() == want.keys()
    for key, found in got.items():
        assert found is not None and want[key] is not None, key
        values = {group: value for group, value in found.items() if value is not None}
        expected = {group: value for group, value in want[key].items() if value is not None}
        assert values.keys() == expected.keys(), key  # keys name the group columns as each monitor does
        for group, value in values.items():
            assert value == pytest.approx(expected[group], rel=1e-9, abs=1e-9, nan_ok=True), (key, group)
