"""The in-process executor: one fragment, or a whole distributed plan, run in this process.

:func:`run_fragment` is what a worker does with each fragment it receives,
and what the scheduler does with a stage that has nothing to read; tests
call it too (through :func:`run_locally`, which runs every stage of a plan
fragment by fragment and concatenates their results as the coordinator
does).  No Ray: the caller hands in the rows of the exchanges a fragment
reads.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pyarrow as pa

from engine.query.execution.memory import MemoryBudget
from engine.query.execution.operators import Execution, concat, execute, split
from engine.query.execution.scan import SegmentReader
from engine.query.stats import fragment_stats
from planner.fragments import Fragment, stage_scan
from planner.logical import Gather, Plan


def run_fragment(
    fragment: Fragment,
    reader: SegmentReader,
    inputs: dict[str, pa.Table] | None = None,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    gathered: dict[int, pa.Table] | None = None,
    worker: str = "local",
    memory: MemoryBudget | None = None,
    threads: int = 1,
) -> tuple[pa.Table, dict[str, Any]]:
    """``fragment``'s rows over its segments, and what it measured.

    ``inputs`` holds the rows of each exchange the fragment reads (by key),
    ``gathered`` the rows of Gathers already run (by node id); ``cancelled``
    and ``deadline`` are checked between operators and record batches;
    ``memory`` (the query's budget in this process) is charged with what the
    fragment materialises, and released when it returns its rows.  An
    aggregate reads its input on ``threads`` threads (see ``Execution``).
    """
    started = time.monotonic()
    run = Execution(reader=reader, segments=fragment.segments, deadline=deadline, cancelled=cancelled,
                    inputs=dict(inputs or {}), gathered=gathered if gathered is not None else {}, memory=memory,
                    threads=threads)
    try:
        table = execute(fragment.plan, run)
    finally:
        run.release_all()
    return table, fragment_stats(fragment, run.scan, table, time.monotonic() - started, worker)


def run_locally(plan: Plan, reader: SegmentReader, fragments: int = 1, threads: int = 1) -> pa.Table:
    """Execute ``plan``, running each Gather's input as ``fragments`` separate fragments (on ``threads`` each)."""
    run = Execution(reader=reader)
    stage = 0
    for node in reversed(list(plan.walk())):
        if isinstance(node, Gather):
            stage += 1
            scan = stage_scan(node.input)
            groups = split(scan.segments or (), fragments) if scan is not None else [()]
            parts = [run_fragment(Fragment("local", stage, index, node.input, group), reader, gathered=run.gathered,
                                  threads=threads)[0]
                     for index, group in enumerate(groups)]
            run.gathered[id(node)] = concat(parts)
            if len(parts) == 1:
                run.whole.add(id(node))
    return execute(plan, run)
