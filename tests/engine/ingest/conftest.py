"""Fixtures of the ingest tests: sessions (on each backend, or on local disk) and a table behind a faulty store."""

from __future__ import annotations

import uuid

import pytest

from storage.catalog import Catalog
from storage.objectstore import ObjectStore
from tests.engine.ingest.ingest_fixtures import FAST
from tests.engine.ingest.store_faults import FaultyStore


@pytest.fixture
def faulty_table(tmp_path):
    """(faulty store, table meta): a one-partition table on a fresh memory:// root."""
    store = FaultyStore.over(ObjectStore(f"memory://owner-{uuid.uuid4().hex[:8]}"), str(tmp_path / "faults"))
    return store, Catalog(store).create_table("default", "events", partitions=1)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def db(request, tmp_path, ray_session):
    """A session on an empty warehouse, on local disk and on the loopback S3."""
    import engine

    if request.param == "file":
        session = engine.connect(str(tmp_path / "warehouse"))
    else:
        options = request.getfixturevalue("s3_options")
        session = engine.connect(f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}", storage_options=options)
    session.ingestion.options = FAST
    yield session
    session.close()


@pytest.fixture
def local_db(tmp_path, ray_session):
    """A session on local disk alone, background maintenance off: for what one backend shows."""
    import engine

    session = engine.connect(str(tmp_path / "warehouse"), maintenance=False)
    session.ingestion.options = FAST
    yield session
    session.close()
