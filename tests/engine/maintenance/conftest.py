"""Fixtures of the maintenance tests: a warehouse every Ray worker can reach."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def ray_warehouse(request, tmp_path, ray_session):
    """(url, storage_options) of an empty warehouse every Ray worker can reach."""
    if request.param == "file":
        return str(tmp_path / "warehouse"), {}
    return f"s3://petrel-test/wh-{uuid.uuid4().hex[:8]}", request.getfixturevalue("s3_options")
