"""Backtests: the transitions a definition would have made over past data.

The same evaluator and the same state machine as the live service, over
every slot in ``[start, end)`` in order, starting from an empty state; the
result is returned, never committed.  This is how thresholds are tuned.
"""

from __future__ import annotations

import time

import pyarrow as pa

from engine.monitors.definition import MonitorSpec
from engine.monitors.evaluate import Evaluator
from engine.monitors.history import transitions_table
from engine.monitors.queries import LocalQueries
from engine.monitors.state import MonitorState, Transition, apply_slot
from storage.errors import InvalidMonitor
from storage.objectstore import ObjectStore

MAX_SLOTS = 100_000
BATCH = 64


def backtest(store: ObjectStore, namespace: str, spec: MonitorSpec, start: float, end: float,
             evaluator: Evaluator | None = None) -> pa.Table:
    """Rows shaped like ``_monitor_transitions`` for every transition ``spec`` makes over ``[start, end)``."""
    if end <= start:
        raise InvalidMonitor(f"backtest: end ({end}) is not after start ({start}); give a time range to replay")
    slots = [s for s in spec.slots_between(start - spec.every, end) if start <= s < end]
    if len(slots) > MAX_SLOTS:
        raise InvalidMonitor(
            f"backtest of {spec.name!r}: {len(slots):,} slots in the range; the limit is {MAX_SLOTS:,}, "
            "so shorten the range"
        )
    if evaluator is None:
        queries = LocalQueries(store, namespace)
        evaluator = Evaluator(queries.sql, run_window=queries.window)
    state = MonitorState()
    made: list[Transition] = []
    for index in range(0, len(slots), BATCH):
        outcomes = evaluator.evaluate([(spec, slot) for slot in slots[index:index + BATCH]])
        for outcome in sorted(outcomes, key=lambda o: o.slot):
            state, transitions = apply_slot(spec, state, outcome)
            made.extend(transitions)
    return transitions_table(made, time.time())
