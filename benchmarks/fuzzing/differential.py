"""Running generated queries on Petrel and on DuckDB, and judging the pair.

:class:`Differential` writes the generator's tables into an in-memory
warehouse as small segments over two partitions, so every query plans
against real snapshots and runs its fragments through the same operators
the workers use (in this process, without Ray, which keeps a case at a
few milliseconds), each aggregate reading its input on two threads as a
stage run in the driver does.  DuckDB reads the very same Arrow tables.

Each case ends in one :data:`OUTCOMES`: ``match``; ``mismatch`` (different
rows, row count, column count or column type family); ``unsupported``
(Petrel raised :class:`UnsupportedSql`); ``error`` (another Petrel error
where DuckDB answered); ``crash`` (an exception that is not a
``PetrelError``, or an ``UnsupportedSql`` the planner raised for one:
a bug whatever the query); ``oracle_error`` (DuckDB
refused the query, so there is nothing to compare).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from benchmarks.fuzzing.generator import TABLES, Case, QueryGenerator
from storage.errors import PetrelError, UnsupportedSql

OUTCOMES = ("match", "mismatch", "unsupported", "error", "crash", "oracle_error")


@dataclass(frozen=True)
class Verdict:
    """How one case came out, and why when it was not a match."""

    case: Case
    outcome: str
    detail: str = ""


@dataclass
class Tally:
    """Outcome counts overall and per construct, with a few examples of each failure."""

    total: Counter = field(default_factory=Counter)
    by_construct: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[Verdict]] = field(default_factory=lambda: defaultdict(list))

    def add(self, verdict: Verdict, keep: int = 3) -> None:
        self.total[verdict.outcome] += 1
        for construct in verdict.case.constructs or {"plain"}:
            self.by_construct[construct][verdict.outcome] += 1
        if verdict.outcome != "match" and len(self.examples[verdict.outcome]) < keep:
            self.examples[verdict.outcome].append(verdict)

    @property
    def cases(self) -> int:
        return sum(self.total.values())


def _value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def _rows(table: pa.Table) -> list[tuple]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(_value(c[r]) for c in columns) for r in range(table.num_rows)]


def _sort_key(row: tuple) -> tuple:
    key = []
    for value in row:
        if value is None:
            key.append((0, 0.0, ""))
        elif isinstance(value, (int, float)):
            key.append((1, float(f"{value:.9g}") if not (isinstance(value, float) and math.isnan(value)) else math.inf, ""))
        else:
            key.append((2, 0.0, repr(value)))
    return tuple(key)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _family(type_: pa.DataType) -> str:
    if pa.types.is_integer(type_) or pa.types.is_decimal(type_) and type_.scale == 0:
        return "integer"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "float"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_null(type_):
        return "null"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):  # the item's name differs: item vs l
        return f"list<{_family(type_.value_type)}>"
    return str(type_)


def compare(got: pa.Table, expected: pa.Table, ordered: bool) -> str:
    """Why ``got`` differs from ``expected`` ('' when they agree)."""
    if got.num_columns != expected.num_columns:
        return f"columns: petrel {got.column_names} vs duckdb {expected.column_names}"
    for ours, theirs in zip(got.schema, expected.schema):
        kinds = {_family(ours.type), _family(theirs.type)}
        if len(kinds) > 1 and "null" not in kinds:
            return f"column {theirs.name}: petrel {ours.type} vs duckdb {theirs.type}"
    ours, theirs = _rows(got), _rows(expected)
    if len(ours) != len(theirs):
        return f"row count: petrel {len(ours)} vs duckdb {len(theirs)}: {ours[:6]} vs {theirs[:6]}"
    if not ordered:
        ours, theirs = sorted(ours, key=_sort_key), sorted(theirs, key=_sort_key)
    for index, (a, b) in enumerate(zip(ours, theirs)):
        if not all(_same(x, y) for x, y in zip(a, b)):
            return f"row {index}: petrel {a} vs duckdb {b}"
    return ""


class Differential:
    """Petrel (planned against a real warehouse, run in this process) beside DuckDB on the same tables."""

    def __init__(self, tables: dict[str, pa.Table] | None = None, fragments: int = 2) -> None:
        from engine.query.execution.scan import SegmentReader
        from storage.catalog import Catalog
        from storage.objectstore import ObjectStore

        self.tables = tables or TABLES
        self.fragments = fragments
        self.store = ObjectStore(f"memory://fuzz-{uuid.uuid4().hex}")
        _load(self.store, self.tables)
        self.catalog = Catalog(self.store)
        self.reader = SegmentReader(self.store)
        self._sources: dict[str, Any] = {}
        self.oracle = duckdb.connect()
        for name, table in self.tables.items():
            self.oracle.register(name, table)

    def resolve(self, name: str):
        from planner.logical import TableSource
        from storage.snapshot import load_snapshot

        if name not in self._sources:
            meta = self.catalog.table("default", name)
            snapshot = load_snapshot(self.store, meta)
            self._sources[name] = TableSource(meta, snapshot.schema, snapshot.segments, dict(snapshot.versions))
        return self._sources[name]

    def difference(self, sql: str, ordered: bool) -> str:
        """How Petrel's answer to ``sql`` differs from DuckDB's ('' when they agree; see :func:`compare`)."""
        expected = self.oracle.sql(sql).to_arrow_table()
        return compare(self.petrel(sql), expected, ordered)

    def petrel(self, sql: str) -> pa.Table:
        from engine.query.executor import run_locally
        from planner.context import PlanContext
        from planner.planning import plan_query

        def execute(planned) -> pa.Table:
            return run_locally(planned.optimized, self.reader, fragments=self.fragments, threads=2)

        return execute(plan_query(sql, self.resolve, context=PlanContext(buckets=self.fragments), execute=execute))

    def run(self, case: Case) -> Verdict:
        try:
            expected = self.oracle.sql(case.sql).to_arrow_table()
        except duckdb.Error as error:
            return Verdict(case, "oracle_error", str(error).split("\n")[0])
        try:
            got = self.petrel(case.sql)
            got.validate(full=True)  # a column shorter than the table is a crash, not a row to compare
        except UnsupportedSql as error:
            if error.__cause__ is not None and not isinstance(error.__cause__, PetrelError):
                return Verdict(case, "crash", f"{type(error.__cause__).__name__} (reported as unsupported): {error}")
            return Verdict(case, "unsupported", str(error))
        except PetrelError as error:
            return Verdict(case, "error", f"{type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            return Verdict(case, "crash", f"{type(error).__name__}: {error}")
        reason = compare(got, expected, case.ordered)
        return Verdict(case, "mismatch" if reason else "match", reason)

    def close(self) -> None:
        self.oracle.close()


def _load(store, tables: dict[str, pa.Table]) -> None:
    """Each table as segments of three rows over two partitions (an empty table as one empty segment)."""
    from storage.catalog import Catalog
    from storage.log import PartitionLog
    from storage.segment import write_segment

    catalog = Catalog(store)
    for name, table in tables.items():
        meta = catalog.create_table("default", name, partitions=2)
        logs = [PartitionLog(store, meta.path, p) for p in range(2)]
        states = [log.load() for log in logs]
        added: list[list] = [[], []]
        for index, start in enumerate(range(0, max(table.num_rows, 1), 3)):
            entry = write_segment(store, meta.path, table.slice(start, 3), partition=index % 2,
                                  time_column=meta.time_column, sort_key=meta.full_sort_key)
            added[index % 2].append(entry)
        for p in range(2):
            if added[p]:
                logs[p].commit(states[p], epoch=None, added=added[p])


def cases(seeds: range, max_depth: int = 2):
    """The generated case of every seed in ``seeds``."""
    generator = QueryGenerator(max_depth)
    for seed in seeds:
        yield generator.case(seed)
