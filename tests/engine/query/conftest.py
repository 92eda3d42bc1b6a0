"""Fixtures of the query runtime tests: a fresh local warehouse session on the suite's Ray."""

from __future__ import annotations

from typing import Iterator

import pytest

import engine


@pytest.fixture
def db(ray_session, tmp_path) -> Iterator[engine.Session]:
    """An empty session over a new local warehouse, background maintenance off, closed after the test."""
    session = engine.connect(str(tmp_path / "warehouse"), maintenance=False)
    yield session
    session.close()
