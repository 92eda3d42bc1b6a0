"""Fixtures of the storage tests."""

from __future__ import annotations

import uuid

import pytest

from storage.objectstore import ObjectStore


@pytest.fixture
def memory_store() -> ObjectStore:
    """A fresh in-memory warehouse, for logic that is the same on every backend."""
    return ObjectStore(f"memory://petrel-{uuid.uuid4().hex}")
