"""The session's plan cache: a query asked again over unchanged tables is not planned again.

Dashboards and monitors send the same SQL over and over; parsing,
qualifying and optimizing it costs milliseconds each time (more than a
small scan).  A plan is kept under its SQL text and planning settings,
with the table sources it was planned against (each the snapshot it
pruned).  It is reused only while resolving every one of those tables
gives the very same source again, that is, while no commit, schema
change or re-registration touched them.  Plans that depend on the moment
they were made (``now()``, ``current_date``, ``random()``...) or on
rows outside the warehouse (registered tables and table functions, held
in the plan as Memory) are never kept.
"""

from __future__ import annotations

import collections
import re
import threading
from typing import Callable, Hashable

from planner.logical import Memory
from planner.planning import QueryPlan

# Words of functions folded into constants at planning time: a query naming one is planned each time.
_MOMENT = re.compile(r"now|current|today|localtime|_timestamp|random|rand|uuid|setseed", re.IGNORECASE)
PLANS_KEPT = 256


class PlanCache:
    """Plans by (SQL text, settings), each with the sources it was planned against (LRU, thread-safe)."""

    def __init__(self, size: int = PLANS_KEPT) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0  # lookups of keepable queries that had to plan (for /metrics)
        self._plans: collections.OrderedDict[Hashable, tuple[QueryPlan, dict[str, object]]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def plan(self, key: Hashable, query: str, resolve: Callable[[str], object],
             make: Callable[[Callable[[str], object]], QueryPlan]) -> QueryPlan:
        """The plan of ``query``: kept, if every table it read resolves to the same source, else ``make``'s."""
        if self.size <= 0 or _MOMENT.search(query):
            return make(resolve)
        with self._lock:
            kept = self._plans.get(key)
        if kept is not None:
            planned, sources = kept
            if all(resolve(name) is source for name, source in sources.items()):
                with self._lock:
                    self._plans.move_to_end(key)
                    self.hits += 1
                return planned
        with self._lock:
            self.misses += 1
        sources: dict[str, object] = {}

        def recording(name: str) -> object:
            source = resolve(name)
            sources[name] = source
            return source

        planned = make(recording)
        if not any(isinstance(node, Memory) for node in planned.logical.walk()):
            with self._lock:
                self._plans[key] = (planned, sources)
                self._plans.move_to_end(key)
                while len(self._plans) > self.size:
                    self._plans.popitem(last=False)
        return planned

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
