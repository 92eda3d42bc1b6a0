"""Evaluating monitors at slots: shared scans, one query per shape and slot.

:class:`Evaluator` takes (spec, slot) pairs and returns one
:class:`SlotOutcome` each.  Monitors with the same shape (table, group
columns, window, delay) due at the same slot are evaluated by one query
(:func:`engine.monitors.compile.shape_sql`).  Monitors whose value and WHERE
are the same compute the same numbers, so each distinct pair is one column
of its scan (the shape's table and group columns, whatever the window or
delay), numbered in the order first met; a scan's columns are cut into
chunks of ``MAX_SHARED``, and one slot runs every column of each chunk it
needs.  The SQL of a chunk is therefore the same at every slot and window,
whatever subset of its monitors is due: it is planned once, and its partial
aggregates of whole segments are cached once for all the slot offsets and
windows over the scan.  If a shared query fails, its monitors are run one by one so that
one broken monitor puts only itself in ERROR (and runs alone from then on).

Monitors that differ in a WHERE over a few columns, with values a rollup can
merge, are evaluated instead from one rollup per (table, group columns,
WHERE columns) (:mod:`engine.monitors.rollup`): one query per (shape,
rollup, slot) answers them all.

The evaluator runs SQL through one callable, ``run_sql(sql) -> pa.Table``
(a session's ``sql``), or, given ``run_window(windowed, unbounded, start_us,
end_us, columns, histograms=False)``
(:meth:`engine.monitors.queries.LocalQueries.window`), through the
incremental path that reuses cached partial aggregates of whole segments
and merges only the columns of the monitors due.  Only that path returns
histograms, so quantiles are rolled up only there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from engine.monitors.compile import (
    SharedShape, shape_of, shape_sql, shared_columns, timestamp_literal, timestamp_text, windowed_sql,
)
from engine.monitors.definition import MonitorSpec
from engine.monitors.rollup import Rollup, RollupKey, Series, TooFine, series_of
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
                 run_window: Callable[..., pa.Table] | None = None) -> None:
        self.run_sql = run_sql
        self.run_window = run_window
        self.share = share
        self.stats = EvaluationStats()
        self._shapes: dict[tuple, _Shaped | None] = {}  # monitors repeat queries
        self._texts: dict[tuple, tuple[str, str]] = {}
        # per scan (table and group columns: shapes differing only in window or delay read alike), every
        # distinct (value, seen) pair met so far -> its column; append-only, so a scan's chunks (and their SQL,
        # plans and cached partials) stay the same from slot to slot and are shared by all its windows
        self._columns: dict[tuple, dict[tuple[str, str], int]] = {}
        self._solo: set[tuple[str, str]] = set()  # pairs whose own query failed: they run alone
        self._rollups: dict[RollupKey, Rollup] = {}
        self._too_fine: set[RollupKey] = set()  # rollups that did not pay (or work): their monitors use shared scans
        self._unrolled: set[tuple[str, str]] = set()  # pairs reading a primitive no rollup can merge: shared scans

    def _shape(self, spec: MonitorSpec) -> _Shaped | None:
        key = (spec.query, spec.table, spec.time_column, spec.window, spec.delay)  # all a shape depends on
        if key not in self._shapes:
            if len(self._shapes) > 1_000_000:
                self._shapes.clear()
            shape = shape_of(spec) if self.share else None
            self._shapes[key] = None if shape is None else _Shaped(
                shape, shared_columns(spec), series_of(spec, shape.groups))
        return self._shapes[key]

    def _rolls(self, shaped: _Shaped) -> bool:
        """Whether ``shaped`` is evaluated from a rollup (which takes its primitives in if need be)."""
        if shaped.rolled is None or shaped.pair in self._solo or shaped.pair in self._unrolled:
            return False
        key, series = shaped.rolled
        if key in self._too_fine or (series.histograms and self.run_window is None):
            return False
        rollup = self._rollups.get(key)
        if rollup is None:
            rollup = self._rollups[key] = Rollup(key)
        return rollup.admits(series)

    def register(self, specs: list[MonitorSpec]) -> None:
        """Give the columns of ``specs`` their places in their shapes' chunks (or rollups) before their first slots.

        A chunk's SQL changes when a column joins it (and its cached
        partials with it): registering a scheduler's monitors up front lets
        the first period already run each chunk's final SQL.
        """
        for spec in sorted(specs, key=lambda s: s.name):
            shaped = self._shape(spec)
            if shaped is not None and shaped.pair not in self._solo and not self._rolls(shaped):
                columns = self._columns.setdefault(shaped.shape.scan, {})
                columns.setdefault(shaped.pair, len(columns))

    def evaluate(self, due: list[tuple[MonitorSpec, float]]) -> list[SlotOutcome]:
        """The outcome of every (spec, slot) in ``due``."""
        started = time.perf_counter()
        outcomes = self._outcomes(due)
        self.stats.evaluations += len(outcomes)
        self.stats.errors += sum(1 for o in outcomes if o.error is not None)
        self.stats.seconds += time.perf_counter() - started
        return outcomes

    def _outcomes(self, due: list[tuple[MonitorSpec, float]]) -> list[SlotOutcome]:
        batches: dict[tuple[SharedShape, int, float], list[tuple[MonitorSpec, int]]] = defaultdict(list)
        rolled: dict[tuple[SharedShape, RollupKey, float], list[tuple[MonitorSpec, Series]]] = defaultdict(list)
        alone: list[tuple[MonitorSpec, float]] = []
        for spec, slot in due:
            shaped = self._shape(spec)
            if shaped is None or shaped.pair in self._solo:
                alone.append((spec, slot))
            elif self._rolls(shaped):
                rolled[(shaped.shape, shaped.rolled[0], slot)].append((spec, shaped.rolled[1]))
            else:
                columns = self._columns.setdefault(shaped.shape.scan, {})
                index = columns.setdefault(shaped.pair, len(columns))
                batches[(shaped.shape, index // MAX_SHARED, slot)].append((spec, index % MAX_SHARED))
        outcomes: list[SlotOutcome] = []
        for (_, key, slot), members in rolled.items():
            outcomes.extend(self._rolled(key, members, slot))
        for (shape, chunk, slot), members in batches.items():
            outcomes.extend(self._shared(shape, chunk, members, slot))
        outcomes.extend(self._alone(spec, slot) for spec, slot in alone)
        return outcomes

    def _rolled(self, key: RollupKey, members: list[tuple[MonitorSpec, Series]], slot: float) -> list[SlotOutcome]:
        """Every member's outcome at ``slot`` from one window of their rollup."""
        rollup = self._rollups.get(key)
        if rollup is None or (self._unrolled and any(self._shape(spec).pair in self._unrolled
                                                     for spec, _ in members)):
            # given up on (or made again without some of them) earlier in this step: its monitors are routed again
            return self._outcomes([(spec, slot) for spec, _ in members])
        first = members[0][0]
        start, end = first.window_of(slot)
        try:
            series = [one for _, one in members]
            result = self._run(*rollup.texts(first, _START, _END), start, end, rollup.columns(series),
                               rollup.histograms)
            groups, computed = rollup.evaluate(result, series)
        except TooFine as exc:  # its monitors go back to shared scans, from now on
            if exc.primitive is not None:  # only those reading that primitive; the rollup is made again without it
                self._unrolled |= {self._shape(spec).pair for spec, one in members
                                   if any(exc.primitive in primitives for _, primitives in one.aggregates)}
            else:
                self._too_fine.add(key)
            del self._rollups[key]
            return self._outcomes([(spec, slot) for spec, _ in members])
        except PetrelError:
            outcomes = [self._alone(spec, slot) for spec, _ in members]
            failed = {self._shape(spec).pair for (spec, _), o in zip(members, outcomes) if o.error is not None}
            self._solo |= failed
            self._rollups.pop(key, None)  # made again from the monitors that still belong
            if not failed:  # each answers alone, the rollup does not: its monitors use shared scans
                self._too_fine.add(key)
            return outcomes
        self.stats.queries += 1
        self.stats.shared_queries += 1
        now = time.time()
        keyed: dict[tuple[str, ...], list[str]] = {}
        made: dict[tuple, dict[str, float | None]] = {}  # equal series named alike share their values (read-only)
        outcomes = []
        for (spec, _), pair in zip(members, computed):
            found = made.get((spec.group_columns, id(pair)))
            if found is None:
                found = made[(spec.group_columns, id(pair))] = _found(_keyed(keyed, spec.group_columns, groups), *pair)
            outcomes.append(SlotOutcome(spec.name, slot, found, None, now))
        return outcomes

    def _shared(self, shape: SharedShape, chunk: int, members: list[tuple[MonitorSpec, int]],
                slot: float) -> list[SlotOutcome]:
        """One scan for chunk ``chunk`` of ``shape``'s columns at ``slot``: every member's outcome.

        The scan computes every column of the chunk, due or not, so that all
        slots of the shape run the same query and share its cached partials.
        """
        if shape.scan not in self._columns:  # chunked afresh after a failure earlier in this step: routed again
            return self._outcomes([(spec, slot) for spec, _ in members])
        first = members[0][0]
        start, end = first.window_of(slot)
        pairs = list(self._columns[shape.scan])[chunk * MAX_SHARED:(chunk + 1) * MAX_SHARED]
        try:
            key = (shape.scan, tuple(pairs))
            texts = self._texts.get(key)
            if texts is None:
                texts = self._texts[key] = (shape_sql(first, pairs, _START, _END), shape_sql(first, pairs, None, None))
            wanted = sorted({index for _, index in members})
            columns = (*(f"g{j}" for j in range(len(shape.groups))),
                       *(f"{kind}{index}" for index in wanted for kind in "vn"))
            result = self._run(*texts, start, end, columns)
        except PetrelError:
            outcomes = [self._alone(spec, slot) for spec, _ in members]
            failed = {self._shape(spec).pair for (spec, _), outcome in zip(members, outcomes) if outcome.error is not None}
            if failed:  # those go alone from now on; the shape's other columns are chunked afresh
                self._solo |= failed
                self._columns.pop(shape.scan, None)
            return outcomes
        self.stats.queries += 1
        self.stats.shared_queries += 1
        now = time.time()
        groups = [result.column(f"g{j}").to_pylist() for j in range(len(shape.groups))]
        keyed: dict[tuple[str, ...], list[str]] = {}
        made: dict[tuple, dict[str, float | None]] = {}  # a column's values by group key, per naming (read-only)
        outcomes = []
        for spec, index in members:
            found = made.get((spec.group_columns, index))
            if found is None:
                found = made[(spec.group_columns, index)] = _found(
                    _keyed(keyed, spec.group_columns, groups), result.column(f"v{index}").to_pylist(),
                    result.column(f"n{index}").to_pylist())
            outcomes.append(SlotOutcome(spec.name, slot, found, None, now))
        return outcomes

    def _run(self, template: str, unbounded: str, start: float, end: float,
             columns: tuple[str, ...] | None = None, histograms: bool = False) -> pa.Table:
        """``template`` over [start, end) (``histograms``: quantiles as their merged histograms, for rollups)."""
        windowed = template.replace(_START_TEXT, timestamp_text(start)).replace(_END_TEXT, timestamp_text(end))
        if len(self._texts) > 50_000:
            self._texts.clear()
        if self.run_window is None:
            return self.run_sql(windowed)
        bounds = int(round(start * 1e6)), int(round(end * 1e6))
        if histograms:
            return self.run_window(windowed, unbounded, *bounds, columns, histograms=True)
        return self.run_window(windowed, unbounded, *bounds, columns) if columns else self.run_window(windowed, unbounded, *bounds)

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


@dataclass(frozen=True)
class _Shaped:
    """How a monitor is evaluated with others: its shape, its (value, seen) pair, and its rollup series if any."""

    shape: SharedShape
    pair: tuple[str, str]
    rolled: tuple[RollupKey, Series] | None


def _keyed(keyed: dict, names: tuple[str, ...], groups: list[list[Any]]) -> list[str]:
    """Per result row, the key of its group named by ``names`` (made once per naming, in ``keyed``: the
    monitors of a scan then share their key strings, which the hand-off to the state processor sends once).

    Monitors sharing a query may alias their group columns differently.
    """
    by_row = keyed.get(names)
    if by_row is None:
        by_row = keyed[names] = [group_key({name: column[row] for name, column in zip(names, groups)})
                                 for row in range(len(groups[0]) if groups else 1)]
    return by_row


def _found(keys: list[str], values: list[Any], seen) -> dict[str, float | None]:
    """Group key -> value of the rows ``seen`` marks (those where the monitor's rows had a group).

    Monitors computing the same column get the same dict: outcomes never
    change their values, and the hand-off to the state processor then
    pickles it once.
    """
    return {key: _number(value) for key, value, kept in zip(keys, values, seen) if kept}


def values_of(spec: MonitorSpec, result: pa.Table) -> dict[str, float | None]:
    """Group key -> value of a monitor query's result (group columns first, value last)."""
    columns = [result.column(i).to_pylist() for i in range(result.num_columns)]
    return {key: _number(value) for key, value in zip(_keyed({}, spec.group_columns, columns[:-1]), columns[-1])}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number  # NaN is no value
