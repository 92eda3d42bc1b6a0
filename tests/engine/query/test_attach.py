"""Attaching to a running Ray cluster: what ``ray job submit -- petrel sql ...`` relies on.

The test session's own Ray stands in for the cluster: a ``petrel`` process
started with ``RAY_ADDRESS`` set joins it as a second driver (as a job's
entry point does), answers from the warehouse, and leaves the cluster
running when it exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import ray

from tests.event_data import load_events
from storage.objectstore import ObjectStore


def petrel_command() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "petrel")
    found = beside if os.path.exists(beside) else shutil.which("petrel")
    return [found] if found else [sys.executable, "-m", "engine.cli"]


def test_petrel_attaches_to_a_running_cluster_and_leaves_it_running(ray_session, tmp_path):
    root = str(tmp_path / "warehouse")
    _, rows = load_events(ObjectStore(root), hours=2, partitions=1, rows_per_segment=30)
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_ADDRESS": address, "PETREL_WAREHOUSE": root}
    nodes_before = {node["NodeID"] for node in ray.nodes()}
    done = subprocess.run(petrel_command() + ["sql", "SELECT count(*) AS n FROM events", "--format", "csv"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == ['"n"', str(rows.num_rows)]
    # it joined this cluster (no Ray of its own), and the cluster outlived it
    assert {node["NodeID"] for node in ray.nodes()} == nodes_before
    assert ray.get(ray.put("still here")) == "still here"
