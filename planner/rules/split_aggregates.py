"""Split an aggregate into a partial one per fragment and a final merge.

Below the Gather each fragment reduces its rows to one row of mergeable
state per group (counts, sums, sum and count for AVG, moments for STDDEV
and VARIANCE, distinct values for COUNT(DISTINCT), values for quantiles);
above it the final aggregate merges those states.  Only the states cross
the network, not the rows.
"""

from __future__ import annotations

import dataclasses

from planner.context import PlanContext
from planner.logical import Aggregate, Gather, Plan


def split_aggregates(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(split_aggregates(child, context) for child in plan.inputs))
    if isinstance(plan, Aggregate) and plan.mode == "single" and isinstance(plan.input, Gather):
        gather = plan.input
        partial = Aggregate(gather.input, plan.keys, plan.aggregates, mode="partial")
        return dataclasses.replace(plan, input=Gather(partial), mode="final")
    return plan
