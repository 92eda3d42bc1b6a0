"""The query runtime: SQL in, Arrow out, on the session's worker pool.

What runs where:

- ``api.py`` — :class:`QueryEngine`, what the session calls (on the driver):
  resolves tables to snapshots, plans, runs, explains.
- ``scheduler.py`` — the stage scheduler (on the driver): sends each stage's
  fragments to the workers, retries, cancels, merges.
- ``workers.py`` — the worker pool and the ``QueryWorker`` actor (on the
  cluster) that runs fragments.
- ``executor.py`` — the in-process executor: one fragment (or a whole plan,
  for tests) run in this process; workers and the scheduler use it alike.
- ``stats.py`` — what a query measured (EXPLAIN ANALYZE).
- ``plans.py`` — plans kept for queries asked again while their tables stay.
- ``execution/`` — the operators on Arrow: scans, joins, aggregates, windows,
  hash partitioning, and the per-query memory budget they charge.  No Ray.

The API is imported when first used, not with the package, so a worker
process unpickling its actor class does not import the planner's front-end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.query.api import QueryEngine

__all__ = ["QueryEngine"]


def __getattr__(name: str) -> Any:
    if name == "QueryEngine":
        from engine.query.api import QueryEngine

        return QueryEngine
    raise AttributeError(f"module 'engine.query' has no attribute {name!r}")
