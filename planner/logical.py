"""Logical operators: what a query computes, not yet how or where.

Each operator is a frozen dataclass; plans are trees of them, rewritten by
the rules in :mod:`planner.rules` into new trees.  Expressions are sqlglot
expressions whose columns name the output columns of the operator's input.
Operators with several inputs (joins, unions) list them in ``inputs`` like
the single-input ones do, so rules walk every plan the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa
from sqlglot import exp

from storage.catalog import TableMeta
from storage.segment import SegmentEntry


@dataclass(frozen=True, eq=False)
class TableSource:
    """A table as one query sees it: its metadata, schema and live segments."""

    meta: TableMeta
    schema: pa.Schema
    segments: tuple[SegmentEntry, ...] = ()
    versions: dict[int, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.meta.name


class Plan:
    """Base of every logical operator."""

    @property
    def inputs(self) -> tuple[Plan, ...]:
        child = getattr(self, "input", None)
        return (child,) if child is not None else ()

    def with_inputs(self, *inputs: Plan) -> Plan:
        if not inputs:
            return self
        return dataclasses.replace(self, input=inputs[0])

    def walk(self) -> Iterator[Plan]:
        """This operator and every operator below it, top down."""
        yield self
        for child in self.inputs:
            yield from child.walk()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.inputs[0].columns


@dataclass(frozen=True, eq=False)
class Pruning:
    """How many segments a scan kept, and why the others were skipped."""

    total: int
    by_time: int = 0
    by_stats: int = 0
    by_limit: int = 0

    @property
    def kept(self) -> int:
        return self.total - self.by_time - self.by_stats - self.by_limit


@dataclass(frozen=True, eq=False)
class Scan(Plan):
    """Read a table's segments: only ``fields``, only rows passing ``filter``.

    ``time_range`` is the [low, high] microsecond range the filter allows on
    the time column (None ends are open); ``limit`` lets the scan stop once
    it has that many rows; ``segments`` is set once pruning has run.
    """

    source: TableSource
    fields: tuple[str, ...] | None = None
    filter: exp.Expression | None = None
    time_range: tuple[int | None, int | None] | None = None
    limit: int | None = None
    segments: tuple[SegmentEntry, ...] | None = None
    pruning: Pruning | None = None
    compiled: Any = None  # the filter as a pyarrow.compute expression

    @property
    def columns(self) -> tuple[str, ...]:
        return self.fields if self.fields is not None else tuple(self.source.schema.names)


@dataclass(frozen=True, eq=False)
class Values(Plan):
    """Constant rows (``SELECT`` without ``FROM`` has one row and no columns)."""

    names: tuple[str, ...]
    rows: tuple[tuple[exp.Expression, ...], ...]
    compiled: pa.Table | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.names


@dataclass(frozen=True, eq=False)
class Filter(Plan):
    input: Plan
    condition: exp.Expression
    compiled: Any = None


@dataclass(frozen=True, eq=False)
class Project(Plan):
    """Compute ``exprs`` over the input's columns, named ``names``."""

    input: Plan
    names: tuple[str, ...]
    exprs: tuple[exp.Expression, ...]
    compiled: tuple[Any, ...] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.names


@dataclass(frozen=True, eq=False)
class AggCall:
    """One aggregate: ``func`` over input column ``arg`` (None for COUNT(*)).

    ``params`` holds constant arguments (the fraction of a quantile);
    ``approximate`` records that the query asked for an approximation.
    """

    name: str
    func: str
    arg: str | None = None
    params: tuple[Any, ...] = ()
    approximate: bool = False

    def describe(self) -> str:
        inner = "*" if self.arg is None else self.arg
        extra = "".join(f", {p}" for p in self.params)
        return f"{self.func}({inner}{extra})"


@dataclass(frozen=True, eq=False)
class Aggregate(Plan):
    """Group by ``keys`` (input column names) and compute ``aggregates``.

    ``mode`` is ``single`` (all rows at once), ``partial`` (per fragment,
    emitting mergeable states) or ``final`` (merging partial states).
    """

    input: Plan
    keys: tuple[str, ...]
    aggregates: tuple[AggCall, ...]
    mode: str = "single"
    schema: pa.Schema | None = None  # of the input, once compiled

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + tuple(a.name for a in self.aggregates)


@dataclass(frozen=True, eq=False)
class SortKey:
    column: str
    descending: bool = False
    nulls_first: bool = False

    def describe(self) -> str:
        return f"{self.column} {'DESC' if self.descending else 'ASC'} NULLS {'FIRST' if self.nulls_first else 'LAST'}"


@dataclass(frozen=True, eq=False)
class Sort(Plan):
    """Order rows by ``keys``; with ``limit``, keep only the first ``limit`` (top-k)."""

    input: Plan
    keys: tuple[SortKey, ...]
    limit: int | None = None


@dataclass(frozen=True, eq=False)
class Limit(Plan):
    input: Plan
    limit: int | None
    offset: int = 0


@dataclass(frozen=True, eq=False)
class Gather(Plan):
    """Exchange: every fragment of ``input`` runs on the workers; the rows meet here."""

    input: Plan
    schema: pa.Schema | None = None  # of the gathered rows, once compiled
