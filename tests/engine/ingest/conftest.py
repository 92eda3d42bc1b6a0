"""Fixtures of the ingest tests: a table on memory:// behind a store with injectable faults."""

from __future__ import annotations

import uuid

import pytest

from storage.catalog import Catalog
from storage.objectstore import ObjectStore
from tests.engine.ingest.store_faults import FaultyStore


@pytest.fixture
def faulty_table(tmp_path):
    """(faulty store, table meta): a one-partition table on a fresh memory:// root."""
    store = FaultyStore.over(ObjectStore(f"memory://owner-{uuid.uuid4().hex[:8]}"), str(tmp_path / "faults"))
    return store, Catalog(store).create_table("default", "events", partitions=1)
