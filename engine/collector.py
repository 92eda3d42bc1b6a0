"""When this process's cyclic garbage collector walks every object alive, and how long it pauses.

Long-running processes hold many long-lived objects: a query engine its
snapshots' manifest entries, a monitor scheduler a hundred thousand monitor
definitions, a state processor the states of every group of its monitors.
Each full collection walks all of them, a pause of a second or more in
which every thread of the process waits.

:func:`freeze_long_lived` moves the objects alive now out of the collector
(``gc.freeze``), so collections walk only what was made since.  Frozen
objects are never collected, though: cyclic garbage alive at a freeze would
stay for good.  So a freeze FULL_COLLECT_SECONDS after the last full
collection first unfreezes everything and runs one, which bounds that
garbage at what accumulates in that time.

A process that knows when it is idle (a monitor scheduler knows when its
next slot is due) calls :func:`defer_full_collections`: a freeze then runs
the full collection only once it is DEFERRED_COLLECT_SECONDS late, and the
process runs it itself, when idle, with :func:`collect_if_owed`.
"""

from __future__ import annotations

import gc
import time

FULL_COLLECT_SECONDS = 60.0  # at least this long between two full collections of the frozen objects
DEFERRED_COLLECT_SECONDS = 600.0  # a process deferring them goes at most this long without one

_last_full_collect = time.monotonic()
_deferred = False


def freeze_long_lived() -> None:
    """Move the objects alive now out of the collector, after a full collection if one is owed.

    (Counting freezes instead of seconds made a monitor scheduler, whose
    table commits twice a second, walk its hundred thousand monitor
    definitions every ten seconds.)
    """
    period = DEFERRED_COLLECT_SECONDS if _deferred else FULL_COLLECT_SECONDS
    if time.monotonic() - _last_full_collect >= period:
        _full_collect()
    gc.freeze()


def defer_full_collections() -> None:
    """Leave full collections to :func:`collect_if_owed`, called when this process is idle (but for one
    DEFERRED_COLLECT_SECONDS late, which the next freeze runs)."""
    global _deferred
    _deferred = True


def collect_if_owed() -> bool:
    """Run a full collection if FULL_COLLECT_SECONDS passed since the last one (and freeze what survives);
    whether it ran."""
    if time.monotonic() - _last_full_collect < FULL_COLLECT_SECONDS:
        return False
    _full_collect()
    gc.freeze()
    return True


def _full_collect() -> None:
    global _last_full_collect
    gc.unfreeze()
    gc.collect()
    _last_full_collect = time.monotonic()


class GcPauses:
    """The collector's pauses in this process: per generation, how many, their seconds and the longest."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation, pause = info["generation"], time.perf_counter() - self._started
        self.counts[generation] += 1
        self.seconds[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)

    def stats(self) -> dict[str, list]:
        return {"counts": list(self.counts), "seconds": [round(s, 3) for s in self.seconds],
                "longest": [round(s, 3) for s in self.longest]}
