"""Place the exchanges: what runs in fragments on the workers, what runs on the coordinator.

Operators that work row by row (scans, filters, projections) run inside
the fragments of the scan below them.  A join of a distributed input with
a small one broadcasts the small side (computed once, shared by every
fragment); a join of two large inputs hash-shuffles both on the join keys
into one bucket per worker and joins the buckets in parallel.  Window
functions with PARTITION BY shuffle on the partition keys.  Everything
else (final aggregates, sorts, set operations) gets a Gather below it.
Sizes are estimated from the snapshot's manifest (bytes of the segments
a scan keeps, scaled by the share of columns it reads).
"""

from __future__ import annotations

import dataclasses
import itertools

from planner.context import PlanContext
from planner.logical import (
    Aggregate, Broadcast, Filter, Gather, Join, Memory, Plan, Project, Scan, Shuffle, Values, Window,
)

PRESERVES_LEFT = ("inner", "cross", "left", "semi", "anti", "anti_in", "single")


def distribute(plan: Plan, context: PlanContext) -> Plan:
    if not context.distributed:
        return plan
    keys = itertools.count(1)
    plan, spread = _place(plan, context, keys)
    return Gather(plan) if spread else plan


def estimate(plan: Plan) -> int:
    """Estimated bytes of ``plan``'s output, from the manifest."""
    if isinstance(plan, Scan):
        segments = plan.segments if plan.segments is not None else plan.source.segments
        total = sum(s.bytes for s in segments)
        width = len(plan.source.schema.names) or 1
        return total * max(len(plan.columns), 1) // width
    if isinstance(plan, Memory):
        return plan.table.nbytes
    if isinstance(plan, Values):
        return 0
    if isinstance(plan, Join):
        if plan.kind in ("semi", "anti", "anti_in", "single"):
            return estimate(plan.left)
        return max(estimate(plan.left), estimate(plan.right))
    return max((estimate(c) for c in plan.inputs), default=0)


def _gathered(plan: Plan, spread: bool) -> Plan:
    return Gather(plan) if spread else plan


def _place(plan: Plan, context: PlanContext, keys) -> tuple[Plan, bool]:
    """The plan with exchanges placed, and whether its rows are still spread over fragments."""
    if isinstance(plan, Scan):
        return plan, True
    if not plan.inputs:
        return plan, False
    if isinstance(plan, Join):
        return _join(plan, context, keys)
    placed = [_place(child, context, keys) for child in plan.inputs]
    if isinstance(plan, (Filter, Project)):
        child, spread = placed[0]
        if isinstance(plan, Project) and len(set(plan.names)) < len(plan.names):  # repeated names stay here
            return plan.with_inputs(_gathered(child, spread)), False
        return plan.with_inputs(child), spread
    if isinstance(plan, Window):
        child, spread = placed[0]
        partition = plan.calls[0].partition
        if spread and partition:
            shuffled = Shuffle(child, partition, context.buckets, f"x{next(keys)}")
            return plan.with_inputs(shuffled), True
        return plan.with_inputs(_gathered(child, spread)), False
    if isinstance(plan, Aggregate) and placed[0][1] is False:
        return plan.with_inputs(placed[0][0]), False
    return plan.with_inputs(*(_gathered(p, s) for p, s in placed)), False


def _join(plan: Join, context: PlanContext, keys) -> tuple[Plan, bool]:
    left, left_spread = _place(plan.left, context, keys)
    right, right_spread = _place(plan.right, context, keys)
    left_size, right_size = estimate(plan.left), estimate(plan.right)
    if plan.kind in ("inner", "cross") and right_spread and (not left_spread or left_size < right_size):
        # probe with the larger side, so the smaller one is what gets broadcast
        names = plan.columns
        swapped = Join(plan.right, plan.left, plan.kind, plan.right_keys, plan.left_keys, plan.condition)
        joined, spread = _join(swapped, context, keys)
        from planner.subqueries import column

        return Project(joined, names, tuple(column(n) for n in names)), spread
    limit = context.broadcast_bytes
    sizes = f"left ~{_mb(left_size)}, right ~{_mb(right_size)}, broadcast limit {_mb(limit)}"
    if not left_spread and not right_spread:
        return dataclasses.replace(plan, left=left, right=right, strategy="local",
                                   reason="both inputs are already on the coordinator"), False
    can_shuffle = bool(plan.left_keys) and plan.kind not in ("anti_in", "single") and left_spread and right_spread
    if can_shuffle and (min(left_size, right_size) > limit or plan.kind == "full"):
        why = "both sides exceed the broadcast limit" if plan.kind != "full" else "a FULL join needs every match in one place"
        return dataclasses.replace(
            plan,
            left=Shuffle(left, plan.left_keys, context.buckets, f"x{next(keys)}"),
            right=Shuffle(right, plan.right_keys, context.buckets, f"x{next(keys)}"),
            strategy="shuffle", reason=f"{why} ({sizes})",
        ), True
    if plan.kind == "full":
        return dataclasses.replace(plan, left=_gathered(left, left_spread), right=_gathered(right, right_spread),
                                   strategy="local", reason="a FULL join without equality keys runs on the coordinator"), False
    if not left_spread:  # the probe side is small already: bring the other side here
        return dataclasses.replace(plan, left=left, right=_gathered(right, right_spread), strategy="local",
                                   reason=f"the preserved side is on the coordinator ({sizes})"), False
    build = Broadcast(_gathered(right, right_spread), f"x{next(keys)}")
    return dataclasses.replace(plan, left=left, right=build, strategy="broadcast",
                               reason=f"the right side is small enough to send to every fragment ({sizes})"), True


def _mb(count: int) -> str:
    return f"{count / 1_048_576:.1f} MiB"
