"""The short form of benchmarks/chaos.py: kills, S3 faults and a full disk, then nothing acknowledged lost or doubled."""

from __future__ import annotations

import uuid

import boto3
import pytest

from benchmarks.chaos_run import ChaosConfig, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.s3, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def test_a_short_chaos_run_loses_nothing_acknowledged_and_stores_nothing_twice(s3_server, tmp_path):
    bucket = f"chaos-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    config = ChaosConfig(workdir=str(tmp_path), endpoint=s3_server, bucket=bucket, seconds=15.0, kills=6,
                         writers=2, partitions=2, rows=10, s3_fault_rate=0.1, phase_seconds=4.0,
                         disk_mb=16, disk_full_every=5.0, disk_full_for=2.0, maintain_every=3.0)
    lines: list[str] = []
    result = run_chaos(config, progress=lines.append)
    assert result.violations == [], result.violations
    assert (result.lost, result.doubled, result.partial_batches, result.orphans_after_vacuum) == (0, 0, 0, 0)
    assert result.acked_batches > 0 and result.stored_rows >= result.acked_rows
    assert result.sql_count == result.sql_distinct == result.stored_rows == result.distinct_rows
    assert sum(result.kills.values()) >= 3 and result.kills.get("owner", 0) >= 1, result.kills
    assert sum(result.faults.values()) > 0 and result.disk_full_periods >= 1
    assert result.queries.get("answered", 0) > 0 and lines  # it reported progress while it ran
    assert result.ok
