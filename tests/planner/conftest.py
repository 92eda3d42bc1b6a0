"""Fixtures of the planner tests: tables the planner resolves by name, with no storage and no Ray."""

from __future__ import annotations

from typing import Callable, Mapping

import pytest

from planner.context import PlanContext
from planner.logical import Memory, TableSource
from planner.planning import QueryPlan, plan_query
from storage.errors import TableNotFound

Source = TableSource | Memory


def _resolver(sources: Mapping[str, Source]) -> Callable[[str], Source]:
    def resolve(name: str) -> Source:
        if name not in sources:
            raise TableNotFound(f"table {name!r} does not exist; the tables are {', '.join(sorted(sources))}")
        return sources[name]
    return resolve


@pytest.fixture
def planner_over() -> Callable[..., Callable[[str], QueryPlan]]:
    """``planner_over(sources, **context)``: plans SQL over ``sources`` (name -> source) in one process."""

    def planner(sources: Mapping[str, Source], **context) -> Callable[[str], QueryPlan]:
        resolve = _resolver(sources)
        settings = PlanContext(**{"distributed": False, **context})
        return lambda query: plan_query(query, resolve, context=settings)
    return planner
