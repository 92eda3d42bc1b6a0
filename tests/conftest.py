"""Shared fixtures: one local Ray per test session, a loopback S3 endpoint,
and warehouse roots over every backend."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("RAY_ACCEPT_DEPRECATED_SHARED_MEMORY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on loopback (moto's threaded server), for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    previous = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    yield endpoint
    server.stop()
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_options(s3_server):
    """storage_options for s3fs against the loopback endpoint, with a fresh bucket.

    The server is reset first, so each test starts from an empty S3.
    """
    import boto3
    import requests

    requests.post(f"{s3_server}/moto-api/reset", timeout=10)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="petrel-test")
    return {
        "endpoint_url": s3_server,
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
        "skip_instance_cache": True,
    }


@pytest.fixture(params=["file", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def warehouse(request, tmp_path):
    """(url, storage_options) of an empty warehouse root on each backend."""
    if request.param == "file":
        return str(tmp_path / "warehouse"), {}
    if request.param == "memory":
        return f"memory://petrel-{uuid.uuid4().hex}", {}
    options = request.getfixturevalue("s3_options")
    return f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}", options


@pytest.fixture
def store(warehouse):
    """An ObjectStore on an empty warehouse root, on each backend."""
    from storage.objectstore import ObjectStore

    url, options = warehouse
    return ObjectStore(url, options)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, like CI)."""
    import ray

    from engine.runtime import ensure_ray

    ensure_ray(num_cpus=int(os.environ.get("PETREL_TEST_CPUS", "2")))
    yield ray
    ray.shutdown()
