"""Evaluating monitors at slots: shared scans, one query per shape and slot.

:class:`Evaluator` takes (spec, slot) pairs and returns one
:class:`SlotOutcome` each.  Monitors with the same shape (table, group
columns, window, delay) due at the same slot are evaluated by one query that
computes all their values (:func:`engine.monitors.compile.shared_sql`), in
chunks of ``MAX_SHARED`` monitors.  If a shared query fails, its monitors
are run one by one so that one broken monitor puts only itself in ERROR.

The evaluator runs SQL through one callable, ``run_sql(sql) -> pa.Table``
(a session's ``sql``), or, given ``run_window(windowed, unbounded, start_us,
end_us)`` (:meth:`engine.monitors.queries.LocalQueries.window`), through the
incremental path that reuses cached partial aggregates of whole segments.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from engine.monitors.compile import SharedShape, shape_of, shared_sql, timestamp_literal, windowed_sql
from engine.monitors.definition import MonitorSpec
from engine.monitors.state import SlotOutcome, group_key
from storage.errors import PetrelError

MAX_SHARED = 100
# stand-in window bounds: the SQL of a monitor (or a shared batch) is generated once with these and the
# real bounds are put in by text replacement at each slot
_START, _END = -2_000_000_000.123456, -1_999_999_999.654321
_START_TEXT, _END_TEXT = (timestamp_literal(t).this.sql() for t in (_START, _END))


@dataclass
class EvaluationStats:
    """How much work evaluations took: monitor evaluations, queries run, seconds spent."""

    evaluations: int = 0
    queries: int = 0
    shared_queries: int = 0
    errors: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Evaluates monitors at slots through ``run_sql``."""

    def __init__(self, run_sql: Callable[[str], pa.Table], share: bool = True,
                 run_window: Callable[[str, str, int, int], pa.Table] | None = None) -> None:
        self.run_sql = run_sql
        self.run_window = run_window
        self.share = share
        self.stats = EvaluationStats()
        self._shapes: dict[tuple[str, int, str], SharedShape | None] = {}
        self._texts: dict[tuple, tuple[str, str]] = {}

    def _shape(self, spec: MonitorSpec) -> SharedShape | None:
        key = (spec.name, spec.version, spec.query)
        if key not in self._shapes:
            self._shapes[key] = shape_of(spec) if self.share else None
        return self._shapes[key]

    def evaluate(self, due: list[tuple[MonitorSpec, float]]) -> list[SlotOutcome]:
        """The outcome of every (spec, slot) in ``due``."""
        started = time.perf_counter()
        batches: dict[tuple[SharedShape, float], list[MonitorSpec]] = defaultdict(list)
        alone: list[tuple[MonitorSpec, float]] = []
        for spec, slot in due:
            shape = self._shape(spec)
            if shape is None:
                alone.append((spec, slot))
            else:
                batches[(shape, slot)].append(spec)
        outcomes: list[SlotOutcome] = []
        for (shape, slot), specs in batches.items():
            if len(specs) == 1:
                alone.append((specs[0], slot))
                continue
            for index in range(0, len(specs), MAX_SHARED):
                outcomes.extend(self._shared(specs[index:index + MAX_SHARED], slot))
        outcomes.extend(self._alone(spec, slot) for spec, slot in alone)
        self.stats.evaluations += len(outcomes)
        self.stats.errors += sum(1 for o in outcomes if o.error is not None)
        self.stats.seconds += time.perf_counter() - started
        return outcomes

    def _shared(self, specs: list[MonitorSpec], slot: float) -> list[SlotOutcome]:
        start, end = specs[0].window_of(slot)
        try:
            key = tuple((spec.name, spec.version) for spec in specs)
            texts = self._texts.get(key)
            if texts is None:
                texts = self._texts[key] = (shared_sql(specs, _START, _END), shared_sql(specs, None, None))
            result = self._run(*texts, start, end)
        except PetrelError:
            return [self._alone(spec, slot) for spec in specs]
        self.stats.queries += 1
        self.stats.shared_queries += 1
        now = time.time()
        group_count = len(specs[0].group_columns)
        groups = [result.column(f"g{j}").to_pylist() for j in range(group_count)]
        rows = result.num_rows
        outcomes = []
        for index, spec in enumerate(specs):
            values = result.column(f"v{index}").to_pylist()
            seen = result.column(f"n{index}").to_pylist()
            found: dict[str, tuple[dict[str, Any], float | None]] = {}
            for row in range(rows):
                if not seen[row]:
                    continue
                group = {spec.group_columns[j]: groups[j][row] for j in range(group_count)}
                found[group_key(group)] = (group, _number(values[row]))
            outcomes.append(SlotOutcome(spec.name, slot, found, None, now))
        return outcomes

    def _run(self, template: str, unbounded: str, start: float, end: float) -> pa.Table:
        windowed = template.replace(_START_TEXT, timestamp_literal(start).this.sql()).replace(
            _END_TEXT, timestamp_literal(end).this.sql())
        if len(self._texts) > 50_000:
            self._texts.clear()
        if self.run_window is None:
            return self.run_sql(windowed)
        return self.run_window(windowed, unbounded, int(round(start * 1e6)), int(round(end * 1e6)))

    def _alone(self, spec: MonitorSpec, slot: float) -> SlotOutcome:
        start, end = spec.window_of(slot)
        try:
            key = ((spec.name, spec.version),)
            texts = self._texts.get(key)
            if texts is None:
                texts = self._texts[key] = (windowed_sql(spec, _START, _END), windowed_sql(spec, None, None))
            result = self._run(*texts, start, end)
        except PetrelError as exc:
            return SlotOutcome(spec.name, slot, None, f"{type(exc).__name__}: {exc}", time.time())
        self.stats.queries += 1
        return SlotOutcome(spec.name, slot, values_of(spec, result), None, time.time())


def values_of(spec: MonitorSpec, result: pa.Table) -> dict[str, tuple[dict[str, Any], float | None]]:
    """Group key -> (group, value) of a monitor query's result (group columns first, value last)."""
    names = spec.group_columns
    columns = [result.column(i).to_pylist() for i in range(result.num_columns)]
    found = {}
    for row in range(result.num_rows):
        group = {names[j]: columns[j][row] for j in range(len(names))}
        found[group_key(group)] = (group, _number(columns[-1][row]))
    return found


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number  # NaN is no value
