"""Plans kept for queries asked again: planning is most of a small query's time.

A service answers the same dashboards' SQL over and over.  A plan depends
on the SQL text, the planning context and the snapshot of each table it
read; the query engine keeps the snapshot's :class:`TableSource` object
until a commit moves the table, so a kept plan is reused exactly while
resolving each of its tables again gives the same objects.  Plans that
read the clock (``now()``, ``current_date``...) or a table function are
never kept: their answer may change without any commit.
"""

from __future__ import annotations

import collections
import re
import threading
from typing import Any, Callable, Hashable

from planner.planning import QueryPlan

_CLOCK = re.compile(r"\b(now|today|current_\w+|get_current_timestamp|localtime\w*|transaction_timestamp)\b",
                    re.IGNORECASE)


def reads_clock(query: str) -> bool:
    """Whether ``query`` may call a function of the current time (conservatively: any such word in its text)."""
    return _CLOCK.search(query) is not None


class PlanCache:
    """The last ``size`` plans, each with the table sources it was planned against (LRU)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._plans: collections.OrderedDict[Hashable, tuple[QueryPlan, dict[str, Any]]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, resolve: Callable[[str], Any]) -> QueryPlan | None:
        """The kept plan for ``key`` if every table it read still resolves to the same source."""
        with self._lock:
            kept = self._plans.get(key)
        if kept is not None:
            plan, sources = kept
            try:
                fresh = all(resolve(name) is source for name, source in sources.items())
            except Exception:  # a table gone or unreadable: plan again, which reports it properly
                fresh = False
            if fresh:
                with self._lock:
                    self.hits += 1
                    if key in self._plans:
                        self._plans.move_to_end(key)
                return plan
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: Hashable, plan: QueryPlan, sources: dict[str, Any]) -> None:
        with self._lock:
            self._plans[key] = (plan, dict(sources))
            self._plans.move_to_end(key)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
