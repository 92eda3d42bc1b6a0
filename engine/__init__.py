"""Petrel's runtime on Ray, and every way in: ``engine.connect(root)``.

The session is imported when first used, not with the package: a process
that runs only a part (an ingest owner unpickling ``engine.ingest.actor``, a
query worker) then starts without the planner, the executor and their
dependencies — about a second of imports on every actor start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.session import Session, connect

__all__ = ["Session", "connect"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from engine import session

        return getattr(session, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
