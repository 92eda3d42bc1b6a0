"""Running a whole distributed plan in this process, fragment by fragment.

The coordinator does the same on Ray workers; this serial version is what
unit tests (and tiny queries) use, and it exercises the same merge path:
each Gather's input runs once per fragment and the results are concatenated.
"""

from __future__ import annotations

import pyarrow as pa

from engine.execution.operators import Execution, concat, execute
from engine.execution.scan import SegmentReader
from planner.logical import Gather, Plan, Scan


def fragment_scan(plan: Plan) -> Scan | None:
    """The scan a fragment plan splits by segments."""
    from planner.fragments import stage_scan

    return stage_scan(plan)


def split(segments: tuple, parts: int) -> list[tuple]:
    """``segments`` dealt round robin into at most ``parts`` non-empty groups."""
    parts = max(1, min(parts, len(segments)))
    return [tuple(segments[i::parts]) for i in range(parts)] if segments else [()]


def run_locally(plan: Plan, reader: SegmentReader, fragments: int = 1) -> pa.Table:
    """Execute ``plan``, running each Gather's input as ``fragments`` separate fragments."""
    run = Execution(reader=reader)
    for node in reversed(list(plan.walk())):
        if isinstance(node, Gather):
            scan = fragment_scan(node.input)
            groups = split(scan.segments or (), fragments) if scan is not None else [None]
            parts = []
            for group in groups:
                parts.append(execute(node.input, Execution(reader=reader, segments=group, gathered=run.gathered)))
            run.gathered[id(node)] = concat(parts)
    return execute(plan, run)
