"""Order inner joins so each one has an equality with what is joined so far.

A run of inner and cross joins (as the FROM clause lists them) is taken
apart into its inputs and conditions and joined again: the largest input
(the fact table, by manifest bytes, a quarter of that when filtered)
drives, then each step takes the first input in FROM order that an
equality links to what is joined so far (no cross product), or, with none
linked, the smallest remaining one.  Each condition is placed at the first
join where all its columns are present; equalities become hash keys.
"""

from __future__ import annotations

from sqlglot import exp

from planner.context import PlanContext
from planner.joins import column, make_join, referenced
from planner.logical import Filter, Join, Plan, Scan
from planner.predicates import conjuncts
from planner.rules.distribute import estimate

REORDERED = ("inner", "cross")


def reorder_joins(plan: Plan, context: PlanContext) -> Plan:
    if isinstance(plan, Join) and plan.kind in REORDERED:
        inputs, conditions = _take_apart(plan)
        return _join_in_order([reorder_joins(p, context) for p in inputs], conditions)
    return plan.with_inputs(*(reorder_joins(child, context) for child in plan.inputs))


def _take_apart(plan: Plan) -> tuple[list[Plan], list[exp.Expression]]:
    """The inputs of a run of inner/cross joins (in FROM order) and all of their conditions."""
    if not (isinstance(plan, Join) and plan.kind in REORDERED):
        return [plan], []
    left, left_conditions = _take_apart(plan.left)
    right, right_conditions = _take_apart(plan.right)
    keys = [exp.EQ(this=column(a), expression=column(b)) for a, b in zip(plan.left_keys, plan.right_keys)]
    return left + right, left_conditions + right_conditions + keys + list(conjuncts(plan.condition))


def _join_in_order(inputs: list[Plan], conditions: list[exp.Expression]) -> Plan:
    owner = {name: index for index, plan in enumerate(inputs) for name in plan.columns}

    def sides(node: exp.Expression) -> set[int]:
        return {owner[n] for n in referenced(node) if n in owner}

    pending = []
    for condition in conditions:
        used = sides(condition)
        if len(used) == 1:  # on one input alone: filter that input
            index = next(iter(used))
            inputs[index] = Filter(inputs[index], condition)
        else:
            pending.append(condition)
    if len(inputs) == 1:
        return Filter(inputs[0], exp.and_(*pending)) if pending else inputs[0]
    sizes = [_size(p) for p in inputs]
    first = max(range(len(inputs)), key=lambda i: sizes[i])
    joined = {first}
    plan = inputs[first]
    rest = [i for i in range(len(inputs)) if i != first]
    while rest:
        linked = [i for i in rest if any(_links(c, joined, i, sides) for c in pending)]
        choice = linked[0] if linked else min(rest, key=lambda i: sizes[i])
        rest.remove(choice)
        now = joined | {choice}
        on = [c for c in pending if sides(c) <= now]
        pending = [c for c in pending if not sides(c) <= now]
        plan = make_join(plan, inputs[choice], "inner" if on else "cross", on)
        joined = now
    return plan


def _links(condition: exp.Expression, joined: set[int], candidate: int, sides) -> bool:
    """Whether ``condition`` equates something joined so far with the input ``candidate``."""
    if not isinstance(condition, exp.EQ):
        return False
    a, b = sides(condition.this), sides(condition.expression)
    return bool(a and b) and (a <= joined and b == {candidate} or a == {candidate} and b <= joined)


def _size(plan: Plan) -> float:
    """A rough size of a join input: manifest bytes, less when filtered."""
    filtered = any(isinstance(n, Filter) or isinstance(n, Scan) and n.filter is not None for n in plan.walk())
    return estimate(plan) / (4 if filtered else 1)
