"""LIMIT without ORDER BY: stop reading once enough rows are found.

``Limit(Gather(x))`` gets a copy of the limit inside every fragment, and
when only projections lie between it and the scan, the scan itself stops
after that many (filtered) rows.  Without a filter the row counts in the
manifest say in advance how many segments are enough; the rest are pruned.
"""

from __future__ import annotations

import dataclasses

from planner.context import PlanContext
from planner.logical import Gather, Limit, Plan, Project, Scan


def pushdown_limit(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(pushdown_limit(child, context) for child in plan.inputs))
    if isinstance(plan, Limit) and plan.limit is not None and isinstance(plan.input, Gather):
        n = plan.limit + plan.offset
        local = _limit_scan(plan.input.input, n)
        return dataclasses.replace(plan, input=Gather(Limit(local, n)))
    if isinstance(plan, Limit) and plan.limit is not None and not isinstance(plan.input, Gather):
        return dataclasses.replace(plan, input=_limit_scan(plan.input, plan.limit + plan.offset))
    return plan


def _limit_scan(plan: Plan, n: int) -> Plan:
    if isinstance(plan, Project):
        return plan.with_inputs(_limit_scan(plan.input, n))
    if isinstance(plan, Scan):
        segments, pruning = plan.segments, plan.pruning
        if plan.filter is None and segments is not None:
            kept, rows = [], 0
            for segment in segments:
                if rows >= n:
                    break
                kept.append(segment)
                rows += segment.rows
            if pruning is not None:
                pruning = dataclasses.replace(pruning, by_limit=len(segments) - len(kept))
            segments = tuple(kept)
        return dataclasses.replace(plan, limit=n, segments=segments, pruning=pruning)
    return plan
