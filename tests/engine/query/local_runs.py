"""Running a query in-process over stored segments and comparing it with DuckDB's answer (no Ray)."""

from __future__ import annotations

from typing import Iterable

import pyarrow as pa

from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_locally
from planner.logical import TableSource
from planner.planning import plan_query
from storage.objectstore import ObjectStore
from tests.result_compare import assert_same


def assert_runs_like(query: str, store: ObjectStore, source: TableSource, expected: pa.Table,
                     fragments: Iterable[int] = (1,), threads: Iterable[int] = (1,)) -> None:
    """``query`` over ``source``, run with each number of ``fragments`` per stage (and of ``threads`` per
    fragment), gives ``expected`` in order."""
    planned = plan_query(query, lambda name: source)
    for count in fragments:
        for threads_each in threads:
            got = run_locally(planned.optimized, SegmentReader(store), fragments=count, threads=threads_each)
            assert_same(got, expected, ordered=True, query=query)
