"""Fixtures of the SQL conformance tests: the fuzzer's tables in a warehouse, beside DuckDB."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def differential():
    """Petrel (planned against an in-memory warehouse, run in this process) and DuckDB on the fuzzer's tables."""
    from benchmarks.fuzzing.differential import Differential

    pair = Differential()
    yield pair
    pair.close()
