"""Place the exchanges: what runs in fragments on the workers, what runs on the coordinator.

Operators that work row by row (scans, filters, projections) run inside
the fragments of the scan below them.  A join of a distributed input with
a small one broadcasts the small side (computed once, shared by every
fragment); only the side a join does not preserve can be broadcast (the
right of LEFT, semi and anti joins; neither side of FULL), so when that
side is over the broadcast limit and there are equality keys, both sides
are hash-shuffled on the keys into one bucket per worker and the buckets
joined in parallel.  Window
functions with PARTITION BY shuffle on the partition keys.  Everything
else (final aggregates, sorts, set operations) gets a Gather below it.
Sizes are estimated from the snapshot's manifest (bytes of the segments
a scan keeps, scaled by the share of columns it reads).
"""

from __future__ import annotations

import dataclasses
import itertools

import pyarrow as pa
from sqlglot import exp

from planner.context import PlanContext
from planner.dispatch import OperatorTable
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


ESTIMATE: OperatorTable[int] = OperatorTable(
    "estimate", fallback=lambda plan: max((estimate(c) for c in plan.inputs), default=0))


def estimate(plan: Plan) -> int:
    """Estimated bytes of ``plan``'s output, from the manifest."""
    return ESTIMATE(plan)


@ESTIMATE.register(Scan)
def _estimate_scan(plan: Scan) -> int:
    segments = plan.segments if plan.segments is not None else plan.source.segments
    total = sum(s.bytes for s in segments)
    width = len(plan.source.schema.names) or 1
    return total * max(len(plan.columns), 1) // width


@ESTIMATE.register(Memory)
def _estimate_memory(plan: Memory) -> int:
    return plan.table.nbytes


@ESTIMATE.register(Values)
def _estimate_values(plan: Values) -> int:
    return 0


@ESTIMATE.register(Join)
def _estimate_join(plan: Join) -> int:
    if plan.kind in ("semi", "anti", "anti_in", "single"):
        return estimate(plan.left)
    return max(estimate(plan.left), estimate(plan.right))


def _gathered(plan: Plan, spread: bool) -> Plan:
    return Gather(plan) if spread else plan


def _rest(plan: Plan, context: PlanContext, keys) -> tuple[Plan, bool]:
    """Operators that need all their rows in one place: a Gather below each spread input."""
    if not plan.inputs:
        return plan, False
    placed = [_place(child, context, keys) for child in plan.inputs]
    return plan.with_inputs(*(_gathered(p, s) for p, s in placed)), False


PLACE: OperatorTable[tuple[Plan, bool]] = OperatorTable("distribute", fallback=_rest)


def _place(plan: Plan, context: PlanContext, keys) -> tuple[Plan, bool]:
    """The plan with exchanges placed, and whether its rows are still spread over fragments."""
    return PLACE(plan, context, keys)


@PLACE.register(Scan)
def _place_scan(plan: Scan, context: PlanContext, keys) -> tuple[Plan, bool]:
    return plan, True


@PLACE.register(Filter, Project)
def _place_row_by_row(plan: Plan, context: PlanContext, keys) -> tuple[Plan, bool]:
    child, spread = _place(plan.input, context, keys)
    if isinstance(plan, Project) and len(set(plan.names)) < len(plan.names):  # repeated names stay here
        return plan.with_inputs(_gathered(child, spread)), False
    return plan.with_inputs(child), spread


@PLACE.register(Window)
def _place_window(plan: Window, context: PlanContext, keys) -> tuple[Plan, bool]:
    child, spread = _place(plan.input, context, keys)
    partition = plan.calls[0].partition
    if spread and partition:
        shuffled = Shuffle(child, partition, context.buckets, f"x{next(keys)}")
        return plan.with_inputs(shuffled), True
    return plan.with_inputs(_gathered(child, spread)), False


@PLACE.register(Aggregate)
def _place_aggregate(plan: Aggregate, context: PlanContext, keys) -> tuple[Plan, bool]:
    child, spread = _place(plan.input, context, keys)
    return plan.with_inputs(_gathered(child, spread)), False


@PLACE.register(Join)
def _join(plan: Join, context: PlanContext, keys) -> tuple[Plan, bool]:
    left, left_spread = _place(plan.left, context, keys)
    right, right_spread = _place(plan.right, context, keys)
    left_size, right_size = estimate(plan.left), estimate(plan.right)
    if plan.kind in ("inner", "cross") and right_spread and (not left_spread or left_size < right_size):
        # probe with the larger side, so the smaller one is what gets broadcast
        names = plan.columns
        swapped = Join(plan.right, plan.left, plan.kind, plan.right_keys, plan.left_keys, plan.condition)
        joined, spread = _join(swapped, context, keys)
        return Project(joined, names, tuple(_column(n) for n in names)), spread
    limit = context.broadcast_bytes
    sizes = f"left ~{_mb(left_size)}, right ~{_mb(right_size)}, broadcast limit {_mb(limit)}"
    if not left_spread and not right_spread:
        return dataclasses.replace(plan, left=left, right=right, strategy="local",
                                   reason="both inputs are already on the coordinator"), False
    shuffle_keys = _shuffle_keys(plan)
    can_shuffle = shuffle_keys is not None and left_spread and right_spread
    if can_shuffle and (plan.kind == "full" or right_size > limit):
        if plan.kind == "full":
            why = "a FULL join needs every match in one place"
        elif plan.kind in ("inner", "cross"):
            why = "both sides exceed the broadcast limit"
        else:
            why = (f"the right side exceeds the broadcast limit and the left side is the preserved side of "
                   f"{_KIND_NAMES[plan.kind]}, so it cannot be broadcast instead")
        plan, left, right, shuffle_keys, names = _hash_alike(plan, left, right, shuffle_keys, context, keys)
        joined = dataclasses.replace(
            plan,
            left=Shuffle(left, shuffle_keys[0], context.buckets, f"x{next(keys)}"),
            right=Shuffle(right, shuffle_keys[1], context.buckets, f"x{next(keys)}"),
            strategy="shuffle", reason=f"{why} ({sizes})",
        )
        if names != joined.columns:
            return Project(joined, names, tuple(_column(n) for n in names)), True
        return joined, True
    if plan.kind == "full":
        return dataclasses.replace(plan, left=_gathered(left, left_spread), right=_gathered(right, right_spread),
                                   strategy="local", reason="a FULL join without equality keys runs on the coordinator"), False
    if not left_spread:  # the probe side is small already: bring the other side here
        return dataclasses.replace(plan, left=left, right=_gathered(right, right_spread), strategy="local",
                                   reason=f"the preserved side is on the coordinator ({sizes})"), False
    if right_size <= limit:
        why = "the right side is small enough to send to every fragment"
    elif not right_spread:
        why = "the right side is already computed on the coordinator"
    elif plan.kind == "anti_in":
        why = ("an uncorrelated NOT IN must see the whole subquery beside every row (whether it is empty "
               "or holds a NULL decides every row), so the right side is broadcast although it exceeds the limit")
    elif plan.kind == "single":
        why = "a scalar subquery's row goes to every fragment"
    else:
        why = "there are no equality keys to shuffle on, so the right side is broadcast although it exceeds the limit"
    build = Broadcast(_gathered(right, right_spread), f"x{next(keys)}")
    return dataclasses.replace(plan, left=left, right=build, strategy="broadcast", reason=f"{why} ({sizes})"), True


def _hash_class(type_: pa.DataType) -> str:
    """Which way the shuffle hashes a key of this type (see engine.query.execution.exchange)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_) or pa.types.is_boolean(type_):
        return "number"
    if pa.types.is_date(type_) or pa.types.is_timestamp(type_):
        return "time"
    return "text"


def _hash_alike(plan: Join, left: Plan, right: Plan, shuffle_keys, context: PlanContext, keys):
    """The join with shuffle keys that hash alike on both sides, and the columns it must output.

    The join compares a number (or time) key with a text key as text, but
    the shuffle hashes numbers by value and text by its bytes, so equal
    keys could land in different buckets: such a key pair is cast to text
    below the shuffle, and the join runs on the cast columns.
    """
    from planner.rules.compile_expressions import output_schema

    names = plan.columns
    left_schema, right_schema = output_schema(plan.left, context), output_schema(plan.right, context)
    left_keys, right_keys = list(plan.left_keys), list(plan.right_keys)
    extra_left, extra_right = [], []
    for index, (a, b) in enumerate(zip(*shuffle_keys)):
        if _hash_class(left_schema.field(a).type) == _hash_class(right_schema.field(b).type):
            continue
        for key, side, extra in ((a, left_keys, extra_left), (b, right_keys, extra_right)):
            name = f"_h{next(keys)}"
            extra.append((name, exp.Cast(this=_column(key), to=exp.DataType.build("VARCHAR"))))
            side[index] = name
    if not extra_left:
        return plan, left, right, shuffle_keys, names
    left, right = _with_columns(left, extra_left), _with_columns(right, extra_right)
    count = len(shuffle_keys[0])
    plan = dataclasses.replace(plan, left_keys=tuple(left_keys), right_keys=tuple(right_keys))
    return plan, left, right, (tuple(left_keys[:count]), tuple(right_keys[:count])), names


def _column(name: str) -> exp.Column:
    return exp.Column(this=exp.Identifier(this=name, quoted=True))


def _with_columns(plan: Plan, extra: list) -> Plan:
    return Project(plan, plan.columns + tuple(n for n, _ in extra), tuple(_column(c) for c in plan.columns) + tuple(e for _, e in extra))


_KIND_NAMES = {"left": "a LEFT join", "semi": "a semi join (IN / EXISTS)", "anti": "an anti join (NOT EXISTS)",
               "anti_in": "a NOT IN"}


def _shuffle_keys(plan: Join) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The (left, right) keys both sides can be hash-partitioned on, or None when the join cannot be shuffled.

    Rows that can match must meet in one bucket.  A NOT IN's last key is
    its value, and rows with different values still decide each other (a
    NULL anywhere in the group, an empty group), so it shuffles on its
    correlation keys only; without them it cannot shuffle.
    """
    if plan.kind == "single":
        return None
    left_keys, right_keys = plan.left_keys, plan.right_keys
    if plan.kind == "anti_in":
        left_keys, right_keys = left_keys[:-1], right_keys[:-1]
    return (left_keys, right_keys) if left_keys else None


def _mb(count: int) -> str:
    return f"{count / 1_048_576:.1f} MiB"
