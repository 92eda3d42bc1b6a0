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
    ``approximate`` records that the query asked for an approximation;
    ``distinct`` that each distinct value of ``arg`` counts once (SUM(DISTINCT x));
    ``by`` names more input columns: the value ``arg_max``/``arg_min``
    maximise, or the ORDER BY keys of ``string_agg``/``list``.
    """

    name: str
    func: str
    arg: str | None = None
    params: tuple[Any, ...] = ()
    approximate: bool = False
    distinct: bool = False
    by: tuple[str, ...] = ()

    def describe(self) -> str:
        inner = "*" if self.arg is None else ("DISTINCT " if self.distinct else "") + self.arg
        if self.func in ("string_agg", "list"):  # (separator, directions of the ORDER BY keys)
            separator, directions = self.params
            keys = [f"{k}{' DESC' if d else ''}{' NULLS FIRST' if n else ''}" for k, (d, n) in zip(self.by, directions)]
            extra = (f", {separator!r}" if separator is not None else "") + (f" ORDER BY {', '.join(keys)}" if keys else "")
            return f"{self.func}({inner}{extra})"
        extra = "".join(f", {p}" for p in self.params) + (f" BY {', '.join(self.by)}" if self.by else "")
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


@dataclass(frozen=True, eq=False)
class Memory(Plan):
    """Rows that live in memory: a registered table or a file read by a table function."""

    name: str
    table: pa.Table

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.table.column_names)


JOIN_KINDS = ("inner", "left", "right", "full", "cross", "semi", "anti", "anti_in", "single")


@dataclass(frozen=True, eq=False)
class Join(Plan):
    """Join ``left`` and ``right`` on equal ``left_keys``/``right_keys`` plus ``condition``.

    ``kind`` is one of :data:`JOIN_KINDS`: ``semi``/``anti`` keep left rows
    with/without a match (EXISTS, IN, NOT EXISTS), ``anti_in`` is NOT IN
    with its NULL rules (its last key pair is the NOT IN value, the others
    correlate), ``single`` is a LEFT join to a scalar subquery
    (at most one row may match: in all, or per left row when it has keys).  With ``null_equal`` two NULL keys match
    (IS NOT DISTINCT FROM): a correlated subquery's result joins back to
    its outer rows that way.  ``strategy`` (local, broadcast, shuffle)
    and ``reason`` are set when the plan is distributed.
    """

    left: Plan
    right: Plan
    kind: str
    left_keys: tuple[str, ...] = ()
    right_keys: tuple[str, ...] = ()
    condition: exp.Expression | None = None
    strategy: str = "local"
    reason: str = ""
    compiled: Any = None
    null_equal: bool = False

    @property
    def inputs(self) -> tuple[Plan, ...]:
        return (self.left, self.right)

    def with_inputs(self, *inputs: Plan) -> Plan:
        return dataclasses.replace(self, left=inputs[0], right=inputs[1])

    @property
    def columns(self) -> tuple[str, ...]:
        if self.kind in ("semi", "anti", "anti_in"):
            return self.left.columns
        return self.left.columns + self.right.columns


@dataclass(frozen=True, eq=False)
class SetOp(Plan):
    """UNION / INTERSECT / EXCEPT of ``parts`` (columns matched by position, named after the first)."""

    parts: tuple[Plan, ...]
    kind: str  # union, intersect, except
    distinct: bool = True

    @property
    def inputs(self) -> tuple[Plan, ...]:
        return self.parts

    def with_inputs(self, *inputs: Plan) -> Plan:
        return dataclasses.replace(self, parts=tuple(inputs))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.parts[0].columns


@dataclass(frozen=True, eq=False)
class WindowCall:
    """One window function: ``func`` over input columns ``args``, written to column ``name``.

    ``frame`` is ``("range"|"rows", start, end)`` where a bound is None
    for UNBOUNDED, 0 for CURRENT ROW, and a signed row offset otherwise.
    """

    name: str
    func: str
    args: tuple[str, ...]
    params: tuple[Any, ...]
    partition: tuple[str, ...]
    order: tuple[SortKey, ...]
    frame: tuple[str, int | None, int | None]

    def describe(self) -> str:
        over = []
        if self.partition:
            over.append(f"PARTITION BY {', '.join(self.partition)}")
        if self.order:
            over.append(f"ORDER BY {', '.join(k.describe() for k in self.order)}")
        kind, start, end = self.frame
        bound = lambda v, side: "UNBOUNDED " + side if v is None else ("CURRENT ROW" if v == 0 else f"{abs(v)} {'PRECEDING' if v < abs(v) else 'FOLLOWING'}")
        over.append(f"{kind.upper()} BETWEEN {bound(start, 'PRECEDING')} AND {bound(end, 'FOLLOWING')}")
        return f"{self.name} := {self.func}({', '.join(self.args + tuple(map(str, self.params)))}) OVER ({' '.join(over)})"


@dataclass(frozen=True, eq=False)
class Window(Plan):
    """Add window function columns; every call of one Window shares its PARTITION BY."""

    input: Plan
    calls: tuple[WindowCall, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.input.columns + tuple(c.name for c in self.calls)


@dataclass(frozen=True, eq=False)
class Broadcast(Plan):
    """Exchange: ``input`` runs to completion once; every fragment of the stage above reads all of it."""

    input: Plan
    key: str = ""
    schema: pa.Schema | None = None


@dataclass(frozen=True, eq=False)
class Shuffle(Plan):
    """Exchange: ``input``'s rows hash-partitioned on ``keys`` into ``buckets``; bucket i goes to fragment i above."""

    input: Plan
    keys: tuple[str, ...]
    buckets: int = 1
    key: str = ""
    schema: pa.Schema | None = None
