"""ORDER BY ... LIMIT k: every fragment keeps only its own first k rows.

``Limit(Sort(Gather(x)))`` becomes a top-k in each fragment and a top-k of
the gathered candidates, so at most k rows per fragment cross the network
and nothing is fully sorted.
"""

from __future__ import annotations

import dataclasses

from planner.context import PlanContext
from planner.logical import Gather, Limit, Plan, Sort


def pushdown_topk(plan: Plan, context: PlanContext) -> Plan:
    plan = plan.with_inputs(*(pushdown_topk(child, context) for child in plan.inputs))
    if isinstance(plan, Limit) and plan.limit is not None and isinstance(plan.input, Sort):
        sort = plan.input
        k = plan.limit + plan.offset
        if isinstance(sort.input, Gather):
            gather = sort.input
            local = Sort(gather.input, sort.keys, limit=k)
            sort = dataclasses.replace(sort, input=Gather(local), limit=k)
        else:
            sort = dataclasses.replace(sort, limit=k)
        return dataclasses.replace(plan, input=sort)
    return plan
