"""Ray jobs against a real Ray head on loopback (ray start --head with its job server)."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pyarrow as pa
import pytest

import engine

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
EVENTS = pa.table({
    "timestamp": pa.array([1_772_323_200_000_000 + i * 1_000 for i in range(60)], pa.timestamp("us", "UTC")),
    "service": ["api"] * 30 + ["search"] * 20 + ["auth"] * 10,
})


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of its own (temp dir, ports), stopped by killing exactly the process group it started."""
    temp = tempfile.mkdtemp(prefix="rjob")  # short: Ray socket paths have a length limit
    gcs, dashboard, node, objects, client, agent, agent_grpc, runtime_env, metrics = _free_ports(9)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
               f"--node-manager-port={node}", f"--object-manager-port={objects}",
               f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
               f"--metrics-export-port={metrics}", "--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats"]
    head = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{address}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start (exit {head.poll()}); see {temp}")
            time.sleep(1)
        yield {**env, "RAY_ADDRESS": address}
    finally:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # a head of its own: no need to wait long
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # whatever the head left in its group
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def job_warehouse(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("jobs") / "warehouse")
    with engine.connect(root, maintenance=False) as db:
        db.create_table("requests")
        db.ingest("requests", EVENTS, batch_id="job-events")
    return root


def _submit(env: dict, *entrypoint: str, runtime_env: str | None = None) -> subprocess.CompletedProcess:
    command = [str(BIN / "ray"), "job", "submit", "--working-dir", str(ROOT)]
    if runtime_env:
        command += ["--runtime-env-json", runtime_env]
    return subprocess.run(command + ["--", *entrypoint], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@pytest.mark.slow
def test_petrel_sql_runs_as_a_ray_job(ray_head, job_warehouse):
    done = _submit(ray_head, "petrel", "--warehouse", job_warehouse, "sql",
                   "SELECT service, count(*) AS n FROM requests GROUP BY service ORDER BY n DESC", "--format", "csv")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"service","n"\n"api",30\n"search",20\n"auth",10' in done.stdout.replace("\r", "")


@pytest.mark.slow
def test_the_example_job_script_reports_on_the_cluster(ray_head, job_warehouse):
    done = _submit(ray_head, "python", "examples/ray_job_report.py", "requests",
                   runtime_env='{"env_vars": {"PETREL_WAREHOUSE": "%s"}}' % job_warehouse)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "report of requests: 60 events" in done.stdout
    assert "api\t30" in done.stdout and "auth\t10" in done.stdout


@pytest.mark.slow
def test_submit_query_script_ships_the_project(ray_head, job_warehouse):
    env = {**ray_head, "PETREL_WAREHOUSE": job_warehouse, "PETREL_JOB_PIP": ""}
    done = subprocess.run(["bash", str(ROOT / "infra" / "submit-query.sh"), "SELECT count(*) AS n FROM requests"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"n"\n60' in done.stdout.replace("\r", "")
    assert "petrel[s3]" not in (ROOT / "infra" / "submit-query.sh").read_text()
