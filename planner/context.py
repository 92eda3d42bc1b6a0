"""What rules may consult besides the plan: the query's clock and its limits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlanContext:
    """Settings and facts one query is planned with.

    ``now`` is fixed once per query so that every fragment sees the same
    ``now()``; ``distributed`` is False when the whole plan runs in one
    process (no exchange is placed then).  A join side estimated under
    ``broadcast_bytes`` is broadcast; larger joins are hash-shuffled into
    ``buckets`` parts (one per worker).
    """

    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    distributed: bool = True
    broadcast_bytes: int = 64 * 1024 * 1024
    buckets: int = 2
