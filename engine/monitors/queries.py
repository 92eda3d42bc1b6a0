"""The one seam between monitors and the query engine: SQL text in, Arrow out.

Scheduler actors run their (small, windowed) monitor queries in their own
process: the engine plans them against the warehouse and executes the plan
locally, with no worker pool per scheduler.  Everything else in
``engine.monitors`` calls only ``LocalQueries.sql`` (or a session's
``sql``), so a change to the query engine's layout touches this module
alone.
"""

from __future__ import annotations

import pyarrow as pa

from engine.execution.local import run_locally
from engine.execution.scan import SegmentReader
from engine.query import QueryEngine
from storage.catalog import Catalog
from storage.objectstore import ObjectStore


class LocalQueries:
    """Runs queries of one namespace in this process (snapshot and footer caches kept between calls)."""

    def __init__(self, store: ObjectStore, namespace: str) -> None:
        self.engine = QueryEngine(store, Catalog(store), namespace)
        self.reader = SegmentReader(store)

    def sql(self, query: str) -> pa.Table:
        planned = self.engine.plan(query)
        return run_locally(planned.optimized, self.reader)
