"""`petrel serve` as a user runs it: its own process, HTTP and Flight SQL on loopback, tokens from `petrel tokens`."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_petrel_serve_answers_over_http_and_flight(tmp_path):
    import adbc_driver_flightsql.dbapi as flight_sql

    root = str(tmp_path / "wh")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    petrel = [sys.executable, "-m", "engine.cli", "--warehouse", root]
    token = subprocess.run(petrel + ["tokens", "create", "--namespace", "acme"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    port, flight_port = _free_port(), _free_port()
    server = subprocess.Popen(petrel + ["serve", "--port", str(port), "--flight-port", str(flight_port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "petrel serve did not answer within 120 s"
            time.sleep(0.5)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            assert client.post("/v1/tables", json={"name": "events"}).status_code == 201
            lines = b'{"timestamp": "2026-03-01T00:00:00Z", "service": "api"}\n' * 3
            assert client.post("/v1/tables/events/events", content=lines).json()["accepted"] == 3
        with flight_sql.connect(f"grpc://127.0.0.1:{flight_port}", autocommit=True,
                                db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"}) as conn:
            with conn.cursor() as cursor:
                cursor.execute("SELECT count(*) AS n FROM events")
                assert cursor.fetch_arrow_table().column("n").to_pylist() == [3]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:  # the server and the local Ray it started share its process group
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
