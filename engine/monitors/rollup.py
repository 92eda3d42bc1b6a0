"""Monitors that differ in their WHERE, evaluated from one rollup grouped by the WHERE's columns.

Teams stamp monitors out of templates: the same value over the same table
and groups, one per host, customer or endpoint (``WHERE host = 'web-7'``,
``WHERE customer <> 'test'``).  A shared scan (:mod:`engine.monitors.compile`)
computes one column per distinct WHERE, so every new segment is aggregated
once per monitor variant: with a hundred variants, a hundred filtered
aggregates of every row (and, for a quantile, a hundred histograms per group
in every segment's partial).

A rollup instead aggregates each segment once, grouped by the monitors'
group columns *and* the columns their WHEREs read (the dimensions), into
primitives that merge by addition, minimum or maximum: ``count(*)``,
``count(x)``, ``sum(x)``, ``min(x)``, ``max(x)`` (``avg`` is a sum over a
count; a FILTER clause becomes a CASE inside them), and for
``approx_quantile(x, q)`` over numbers the log-bucket histogram of ``x``
(:mod:`engine.query.execution.sketches`), which merges by adding counts.
Its partials go through the same incremental windows as any monitor query
(cached per segment, pre-merged blocks).  At a slot, each monitor's WHERE is evaluated
over the few distinct dimension values of the window, and its aggregates
are the primitives summed (or min/max-ed) over the values it keeps, per
group (a quantile is read from its summed histogram: the same histogram a
shared scan would have built from the same rows, so the same value); its
value expression is then computed over those aggregates with the engine's
own expression compiler.  Exact for every WHERE over the
dimensions, whatever it is: the WHERE is a function of the dimension values
alone.  Integer primitives (counts, sums and extremes of integers) are
added up as integers: exact, as the shared scan's would be.

A rollup pays only while its dimensions have few distinct values (a WHERE
on ``latency`` would group by every latency): past MAX_DIMENSION_VALUES in
one window, or MAX_ROLLUP_ROWS rows, :class:`TooFine` sends its monitors
back to shared scans, as do quantiles whose histograms would fill more than
MAX_HISTOGRAM_CELLS (group x dimension value x bucket) cells.  Values with
other aggregates (exact quantiles, distinct counts, ...) never come here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from engine.monitors.compile import DIALECT, parse_query, time_range, without_filter_clauses
from engine.monitors.definition import MonitorSpec
from engine.query.execution import sketches
from planner.expressions.compiler import ExpressionCompiler
from storage.errors import PetrelError

MAX_DIMENSION_VALUES = 1_000  # distinct dimension values in one window past which a rollup goes back to scans
MAX_ROLLUP_ROWS = 200_000  # rows of one window's rollup (groups x dimension values) past which it does too
MAX_PRIMITIVES = 100  # primitives of one rollup; monitors that would add more use shared scans
MAX_HISTOGRAM_CELLS = 16_000_000  # counts of one window's histograms (groups x dimension values x buckets)

_COUNT, _SUM, _AVG, _MIN, _MAX = "count", "sum", "avg", "min", "max"
# what a matrix cell without a value holds, by (integer primitive) and fill: nothing to add, or no extreme
_EMPTY = {False: {"zero": 0.0, "low": -np.inf, "high": np.inf},
          True: {"zero": 0, "low": np.iinfo(np.int64).min, "high": np.iinfo(np.int64).max}}
_QUANTILE = "quantile"  # a kind "quantile <fraction>": its one primitive is a histogram


class TooFine(Exception):
    """A rollup does not pay here (too many dimension values, or primitives that are not numbers).

    ``primitive``: the SQL of the one primitive at fault (a quantile of
    times is no histogram): only the monitors reading it leave the rollup.
    """

    def __init__(self, message: str, primitive: str | None = None) -> None:
        super().__init__(message)
        self.primitive = primitive


@dataclass(frozen=True)
class RollupKey:
    """Monitors with equal keys share a rollup: same table, group columns and WHERE columns."""

    table: str
    time_column: str
    groups: tuple[str, ...]
    dimensions: tuple[str, ...]  # the WHERE columns, as written (a rollup's result names them by their names)


@dataclass(frozen=True)
class Series:
    """One monitor's numbers in a rollup: its value over aggregates ``__a<j>``, each a kind and its primitives."""

    value: str
    aggregates: tuple[tuple[str, tuple[str, ...]], ...]
    where: str

    @property
    def histograms(self) -> bool:
        """Whether a primitive is a histogram (the query engine gives it only through incremental windows)."""
        return any(kind.startswith(_QUANTILE) for kind, _ in self.aggregates)


def series_of(spec: MonitorSpec, groups: tuple[str, ...]) -> tuple[RollupKey, Series] | None:
    """``spec``'s rollup and series, or None if it has no WHERE or aggregates a rollup cannot merge."""
    select = parse_query(spec.query, spec.name)
    where = select.args.get("where")
    if where is None:
        return None
    condition = where.this.copy()
    named: dict[str, str] = {}  # the WHERE's columns by name, as written
    for column in condition.find_all(exp.Column):
        column.set("table", None)
        named.setdefault(column.name, column.sql(DIALECT))
    dimensions = tuple(sorted(named.values()))
    if not dimensions or condition.find(exp.Subquery, exp.AggFunc):
        return None
    value = select.expressions[-1]
    value = without_filter_clauses(value.unalias() if isinstance(value, exp.Alias) else value)
    aggregates: list[tuple[str, tuple[str, ...]]] = []
    for node in list(value.find_all(exp.AggFunc)):
        if node is not value and node.find_ancestor(exp.AggFunc) is not None:
            return None
        described = _primitives(node)
        if described is None:
            return None
        reference = exp.column(f"__a{len(aggregates)}", quoted=True)
        if node is value:
            value = reference
        else:
            node.replace(reference)
        aggregates.append(described)
    if not aggregates:
        return None
    key = RollupKey(spec.table, spec.time_column, groups, dimensions)
    return key, Series(value.sql(DIALECT), tuple(aggregates), condition.sql(DIALECT))


def _primitives(node: exp.Expression) -> tuple[str, tuple[str, ...]] | None:
    """How an aggregate merges: its kind and the primitive aggregates (SQL) it is computed from."""
    target = node.this
    if isinstance(target, exp.Distinct) or (node.expressions and not isinstance(node, exp.CountIf)):
        return None
    if isinstance(node, exp.Count):
        if target is None or isinstance(target, exp.Star):
            return _COUNT, ("count(*)",)
        return _COUNT, (node.sql(DIALECT),)
    if isinstance(node, exp.CountIf):
        return _COUNT, (node.sql(DIALECT),)
    if target is None:
        return None
    if isinstance(node, exp.ApproxQuantile):  # one histogram of the values, whatever the fraction
        fraction = node.args.get("quantile")
        if set(node.args) - {"this", "quantile"} or not isinstance(fraction, exp.Literal) or fraction.is_string:
            return None
        histogram = exp.ApproxQuantile(this=target.copy(), quantile=exp.Literal.number(0.5))
        return f"{_QUANTILE} {float(fraction.this)!r}", (histogram.sql(DIALECT),)
    counted = exp.Count(this=target.copy()).sql(DIALECT)
    if isinstance(node, exp.Sum):
        return _SUM, (node.sql(DIALECT), counted)
    if isinstance(node, exp.Avg):
        return _AVG, (exp.Sum(this=target.copy()).sql(DIALECT), counted)
    if isinstance(node, (exp.Min, exp.Max)):
        return (_MIN if isinstance(node, exp.Min) else _MAX), (node.sql(DIALECT), counted)
    return None


class Rollup:
    """The primitives of one rollup key, its SQL, and the evaluation of its series over one window's result."""

    def __init__(self, key: RollupKey) -> None:
        self.key = key
        self.names = [sqlglot.parse_one(d, read=DIALECT).name for d in key.dimensions]  # the result's columns
        self.primitives: dict[str, int] = {"count(*)": 0}  # append-only: the SQL (and cached partials) stay put
        self._texts: tuple[int, tuple[str, str]] | None = None
        self._compiled: dict[tuple, pc.Expression] = {}  # WHEREs and values, by their types

    @property
    def histograms(self) -> bool:
        """Whether a primitive is a histogram: the window's query must return histograms, not quantiles."""
        return any(p.startswith("APPROX_QUANTILE(") for p in self.primitives)

    def admits(self, series: Series) -> bool:
        """Whether ``series`` fits (adding its primitives if need be)."""
        new = {p for _, primitives in series.aggregates for p in primitives} - self.primitives.keys()
        if len(self.primitives) + len(new) > MAX_PRIMITIVES:
            return False
        for primitive in sorted(new):
            self.primitives[primitive] = len(self.primitives)
        return True

    def columns(self, series: list[Series]) -> tuple[str, ...]:
        """The result columns ``series`` read: groups, dimensions, count(*) and their primitives (the window
        merges only those)."""
        used = {0} | {self.primitives[p] for one in series for _, primitives in one.aggregates for p in primitives}
        return (*(f"__g{j}" for j in range(len(self.key.groups))), *self.names, *(f"__p{i}" for i in sorted(used)))

    def texts(self, spec: MonitorSpec, start: float, end: float) -> tuple[str, str]:
        """The rollup's query with the stand-in window bounds ``start``/``end``, and without a window."""
        if self._texts is None or self._texts[0] != len(self.primitives):
            self._texts = (len(self.primitives), (self._sql(spec, start, end), self._sql(spec, None, None)))
        return self._texts[1]

    def _sql(self, spec: MonitorSpec, start: float | None, end: float | None) -> str:
        groups = [sqlglot.parse_one(g, read=DIALECT) for g in self.key.groups]
        dimensions = [sqlglot.parse_one(d, read=DIALECT) for d in self.key.dimensions]
        selected = [exp.alias_(g.copy(), f"__g{j}", quoted=True) for j, g in enumerate(groups)]
        selected += [exp.alias_(d.copy(), d.name, quoted=True) for d in dimensions]
        selected += [exp.alias_(sqlglot.parse_one(p, read=DIALECT), f"__p{i}", quoted=True)
                     for p, i in self.primitives.items()]
        query = exp.select(*selected).from_(exp.to_table(self.key.table, quoted=True))
        if start is not None:
            query = query.where(time_range(spec, start, end), copy=False)
        return query.group_by(*groups, *dimensions, copy=False).sql(DIALECT)

    def evaluate(self, result: pa.Table, series: list[Series]) -> tuple[list[list[Any]], list[tuple[list, list[bool]]]]:
        """The group values (one list per group column) and, per series, its values and which groups it saw
        (equal series get the same pair)."""
        if result.num_rows > MAX_ROLLUP_ROWS:
            raise TooFine(f"{result.num_rows} rows in one window")
        count = len(self.key.groups)
        if not result.num_rows:
            return [[] for _ in range(count)], [([], []) for _ in series]
        group_index, group_rows = _codes([result.column(f"__g{j}") for j in range(count)], result.num_rows)
        names = self.names
        dimension_index, dimension_rows = _codes([result.column(d) for d in names], result.num_rows)
        if len(dimension_rows) > MAX_DIMENSION_VALUES:
            raise TooFine(f"{len(dimension_rows)} distinct values of {', '.join(names)} in one window")
        groups = [result.column(f"__g{j}").take(group_rows).to_pylist() for j in range(count)]
        dimensions = _decoded(result.select(names).take(dimension_rows))
        masks = self._masks(dimensions, sorted({s.where for s in series}))
        cells = _Cells(result, group_index, dimension_index, len(group_rows), len(dimension_rows),
                       {number: sql for sql, number in self.primitives.items()})
        seen = {where: (cells.summed(0, mask) > 0).tolist() for where, mask in masks.items()}
        distinct = list(dict.fromkeys(series))  # monitors differing only in thresholds or targets: computed once
        found: dict[Series, tuple[list, list[bool]]] = {}
        by_value: dict[tuple, list[Series]] = {}  # series computing the same expression of the same aggregates
        for one in distinct:
            by_value.setdefault((one.value, one.aggregates), []).append(one)
        for (value, aggregates), members in by_value.items():
            columns = [[] for _ in aggregates]
            for one in members:
                for j, (kind, primitives) in enumerate(aggregates):
                    columns[j].append(cells.aggregate(kind, [self.primitives[p] for p in primitives],
                                                      masks[one.where]))
            table = pa.table({f"__a{j}": pa.concat_arrays(parts) for j, parts in enumerate(columns)})
            computed = self._value(value, table).to_pylist()
            size = len(group_rows)
            for order, one in enumerate(members):
                found[one] = (computed[order * size:(order + 1) * size], seen[one.where])
        out = [found[one] for one in series]  # equal series share their (values, seen): made into outcomes once
        return groups, out

    def _masks(self, dimensions: pa.Table, wheres: list[str]) -> dict[str, np.ndarray]:
        """Per WHERE, which distinct dimension values it keeps (NULL as false)."""
        types = tuple(str(t) for t in dimensions.schema.types)
        expressions = []
        for where in wheres:
            compiled = self._compiled.get(("where", where, types))
            if compiled is None:
                if len(self._compiled) > 10_000:
                    self._compiled.clear()
                try:
                    compiled = ExpressionCompiler(dimensions.schema).predicate(sqlglot.parse_one(where, read=DIALECT))
                except PetrelError as exc:  # the query planned it with more context than its columns' values
                    raise TooFine(f"a WHERE does not compile over its columns' values alone: {exc}") from None
                self._compiled[("where", where, types)] = compiled
            expressions.append(compiled)
        kept = _project(dimensions, expressions)
        return {w: pc.fill_null(kept.column(i), False).to_numpy(zero_copy_only=False)
                for i, w in enumerate(wheres)}

    def _value(self, value: str, aggregates: pa.Table) -> pa.ChunkedArray:
        key = (value, tuple(str(t) for t in aggregates.schema.types))
        compiled = self._compiled.get(key)
        if compiled is None:
            if len(self._compiled) > 10_000:
                self._compiled.clear()
            try:
                compiled = ExpressionCompiler(aggregates.schema).compile(sqlglot.parse_one(value, read=DIALECT)).expr
            except PetrelError as exc:
                raise TooFine(f"a value does not compile over its aggregates: {exc}") from None
            self._compiled[key] = compiled
        return _project(aggregates, [compiled]).column(0)


class _Cells:
    """A window's primitives as (group x dimension value) matrices, made as the series ask for them."""

    def __init__(self, result: pa.Table, groups: np.ndarray, dimensions: np.ndarray, group_count: int,
                 dimension_count: int, sql: dict[int, str]) -> None:
        self.result, self.groups, self.dimensions = result, groups, dimensions
        self.sql = sql  # each primitive's SQL, by its number
        self.shape = (group_count, dimension_count)
        self._matrices: dict[tuple[int, str], np.ndarray] = {}
        self._histogram_cells: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _matrix(self, primitive: int, fill: str) -> np.ndarray:
        key = (primitive, fill)
        matrix = self._matrices.get(key)
        if matrix is None:
            column = self.result.column(f"__p{primitive}")
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise TooFine(f"primitive {primitive} is {column.type}, not a number", self.sql[primitive])
            whole = pa.types.is_integer(column.type)  # summed as integers: exact past 2^53
            values = pc.cast(column, pa.int64() if whole else pa.float64()).to_numpy(zero_copy_only=False)
            valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
            empty = _EMPTY[whole][fill]
            matrix = np.full(self.shape, empty, dtype=np.int64 if whole else np.float64)
            matrix[self.groups, self.dimensions] = np.where(valid, values, empty)
            self._matrices[key] = matrix
        return matrix

    def summed(self, primitive: int, mask: np.ndarray) -> np.ndarray:
        return self._matrix(primitive, "zero")[:, mask].sum(axis=1)

    def aggregate(self, kind: str, primitives: list[int], mask: np.ndarray) -> pa.Array:
        """One aggregate per group over the dimension values ``mask`` keeps (NULL where it has no value)."""
        if kind == _COUNT:
            return pa.array(self.summed(primitives[0], mask).astype(np.int64))
        if kind.startswith(_QUANTILE):
            return self.quantile(primitives[0], float(kind.split()[1]), mask)
        counted = self.summed(primitives[1], mask)
        empty = counted == 0
        if kind == _AVG:
            return pa.array(self.summed(primitives[0], mask) / np.where(empty, 1, counted), mask=empty)
        stored = self.result.column(f"__p{primitives[0]}").type
        if kind == _SUM:
            found = self.summed(primitives[0], mask)
        elif kind == _MIN:
            matrix = self._matrix(primitives[0], "high")
            found = matrix[:, mask].min(axis=1, initial=_EMPTY[matrix.dtype.kind == "i"]["high"])
        else:
            matrix = self._matrix(primitives[0], "low")
            found = matrix[:, mask].max(axis=1, initial=_EMPTY[matrix.dtype.kind == "i"]["low"])
        out = pa.array(np.where(empty, 0, found), mask=empty)
        return pc.cast(out, stored) if pa.types.is_integer(stored) else out

    def quantile(self, primitive: int, fraction: float, mask: np.ndarray) -> pa.Array:
        """Per group, the ``fraction`` quantile of the histograms of the dimension values ``mask`` keeps, as
        :func:`engine.query.execution.sketches.dd_quantiles` reads one merged histogram (NULL if it is empty)."""
        counts, values, totals = self._histograms(primitive)
        if mask.sum() * 2 > len(mask):  # keeping most values: all of them, less the others (counts are exact)
            summed = totals - counts[:, ~mask, :].sum(axis=1)
        else:
            summed = counts[:, mask, :].sum(axis=1)
        cumulative = np.cumsum(summed, axis=1)
        total = cumulative[:, -1] if summed.shape[1] else np.zeros(len(summed), dtype=np.int64)
        empty = total == 0
        rank = np.maximum(1, np.ceil(fraction * total))
        found = np.minimum((cumulative < rank[:, None]).sum(axis=1), max(0, summed.shape[1] - 1))
        return pa.array(np.where(empty, 0.0, values[found] if len(values) else 0.0), pa.float64(), mask=empty)

    def _histograms(self, primitive: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A histogram primitive as counts (group x dimension value x bucket), the buckets' values, and the
        counts over all dimension values."""
        kept = self._histogram_cells.get(primitive)
        if kept is not None:
            return kept
        column = self.result.column(f"__p{primitive}")
        if not (pa.types.is_list(column.type) and pa.types.is_integer(column.type.value_type)):
            raise TooFine(f"primitive {primitive} is {column.type}, not a histogram", self.sql[primitive])
        lists = column.combine_chunks()
        codes, counts = sketches.dd_entries(pc.list_flatten(lists).to_numpy(zero_copy_only=False))
        groups, dimensions = self.shape
        low = int(codes.min()) if len(codes) else 0
        span = int(codes.max()) - low + 1 if len(codes) else 0
        # each entry's cell: its state row's (group, dimension value) cell base, repeated over the row's entries, plus
        # its bucket; a cell's bucket may come from several states (the window's parts): counts added up, exactly
        if groups * dimensions * span <= MAX_HISTOGRAM_CELLS:  # buckets numbered over the codes' span
            number, width, code_of = codes - low, span, np.arange(span)
        else:  # buckets far apart: the ones in use numbered first
            number, width = _dense(codes - low, span)
            if groups * dimensions * width > MAX_HISTOGRAM_CELLS:
                raise TooFine(f"{groups} groups x {dimensions} dimension values x {width} histogram buckets")
            code_of = np.empty(width, dtype=np.int64)
            code_of[number] = codes - low
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
        base = (self.groups * dimensions + self.dimensions) * width
        cells = np.bincount(np.repeat(base, lengths) + number, weights=counts,
                            minlength=groups * dimensions * width).reshape(groups, dimensions, width)
        used = np.flatnonzero(cells.any(axis=(0, 1)))  # in order: codes are ordered as their values
        cells = cells[:, :, used].astype(np.int64)
        kept = self._histogram_cells[primitive] = (cells, sketches.dd_bucket_values(code_of[used] + low),
                                                   cells.sum(axis=1))
        return kept


def _codes(columns: list[pa.ChunkedArray], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the index of its distinct combination of ``columns`` (NULL a value of its own); and the first
    row of each combination."""
    code, distinct = np.zeros(rows, dtype=np.int64), 1
    for column in columns:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        encoded = pc.dictionary_encode(array, null_encoding="encode")
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        width = max(1, len(encoded.dictionary))
        code, distinct = _dense(code * width + indices, distinct * width)  # no overflow however many columns
    first = np.empty(distinct, dtype=np.int64)
    first[code[::-1]] = np.arange(rows - 1, -1, -1)  # the last write of each is its first row
    return code, first


def _dense(code: np.ndarray, bound: int) -> tuple[np.ndarray, int]:
    """``code`` (each in [0, bound)) renumbered 0, 1, ... in order, and how many distinct codes it holds."""
    if bound <= max(4 * len(code), 1 << 16):  # a table over the code space: no sort
        present = np.zeros(bound, dtype=bool)
        present[code] = True
        renumbered = np.cumsum(present) - 1
        return renumbered[code], int(renumbered[-1]) + 1
    values, inverse = np.unique(code, return_inverse=True)
    return inverse.reshape(-1), len(values)


def _decoded(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns as their plain values (what a WHERE compares)."""
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(columns, names=table.column_names)


def _project(table: pa.Table, expressions: list[pc.Expression]) -> pa.Table:
    """``expressions`` evaluated over ``table``'s rows."""
    return acero.Declaration.from_sequence([
        acero.Declaration("table_source", acero.TableSourceNodeOptions(table)),
        acero.Declaration("project", acero.ProjectNodeOptions(expressions, [f"e{i}" for i in range(len(expressions))])),
    ]).to_table(use_threads=False)
