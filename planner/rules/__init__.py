"""Plan rewrite rules, one per module, applied in the order of ``RULES``.

Each rule is a function ``rule(plan, context) -> plan`` named after its
module.  The first rules shape the logical plan (conditions into the scans,
only the columns used, inner joins ordered, pruning); then
``distribute`` places the exchange, the rules after it push work into the
fragments below it, and ``compile_expressions`` turns every expression into
Arrow compute so the plan can run.
"""

from __future__ import annotations

from typing import Callable

from planner.context import PlanContext
from planner.logical import Plan
from planner.rules.answer_from_manifest import answer_from_manifest
from planner.rules.compile_expressions import compile_expressions
from planner.rules.distribute import distribute
from planner.rules.extract_time_range import extract_time_range
from planner.rules.merge_projections import merge_projections
from planner.rules.prune_segments import prune_segments
from planner.rules.pushdown_limit import pushdown_limit
from planner.rules.pushdown_predicates import pushdown_predicates
from planner.rules.pushdown_projections import pushdown_projections
from planner.rules.pushdown_semi_joins import pushdown_semi_joins
from planner.rules.pushdown_topk import pushdown_topk
from planner.rules.reorder_joins import reorder_joins
from planner.rules.split_aggregates import split_aggregates
from storage.errors import PetrelError, QueryFailed

Rule = Callable[[Plan, PlanContext], Plan]

RULES: tuple[Rule, ...] = (
    pushdown_predicates,
    pushdown_projections,
    reorder_joins,
    pushdown_semi_joins,
    merge_projections,
    extract_time_range,
    prune_segments,
    answer_from_manifest,
    distribute,
    split_aggregates,
    pushdown_topk,
    pushdown_limit,
    compile_expressions,
)


def optimize(plan: Plan, context: PlanContext, rules: tuple[Rule, ...] = RULES) -> Plan:
    """Apply ``rules`` in order; an unexpected failure names the rule that failed."""
    for rule in rules:
        try:
            plan = rule(plan, context)
        except PetrelError:
            raise
        except Exception as error:  # a bug in a rule: say which one, keep the cause
            raise QueryFailed(f"planning failed in rule {rule.__name__}: {type(error).__name__}: {error}") from error
    return plan
