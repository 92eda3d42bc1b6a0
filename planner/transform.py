"""Ingest-time transforms: one SQL SELECT over the virtual table ``input``, run on every batch.

A table may carry a transform such as::

    SELECT * EXCLUDE (payload), lower(level) AS level,
           CAST(regexp_extract(message, 'status=(\\d+)', 1) AS INT) AS status,
           json_extract_string(payload, '$.user.id') AS user_id
    FROM input WHERE level <> 'debug'

:func:`check_transform` refuses, when the table is created or altered,
anything but one SELECT of scalar expressions over ``input`` with an
optional WHERE (no joins, aggregates, windows, ORDER BY or LIMIT), an unknown
function, a bad regular expression or a type that cannot work.  Each batch's
columns (nested objects flattened to dotted names, as ingestion stores them)
are then the columns of ``input``; the program for one input schema is
compiled once by the planner's :class:`ExpressionCompiler` into
``pyarrow.compute`` expressions and run as one Acero projection.

Column rules: ``*`` is every input column (``* EXCLUDE (a, b)`` drops some,
``* REPLACE (expr AS a)`` rewrites one); an expression aliased to the name of
a column ``*`` already gave replaces that column in place (``lower(level) AS
level``); other items are added in order.

Per-row failures never fail the batch: a ``CAST`` whose value does not read
as the type (``TRY_CAST`` gives NULL instead), or a function that fails on a
row (malformed JSON, an overflow), rejects just that row with the reason and
the value; the rest of the batch goes on.  Rows the WHERE clause does not
keep are dropped, not rejected.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions import ExpressionCompiler, Typed
from planner.expressions.casts import text_to_timestamp, try_cast_text
from planner.parse import parse
from storage.errors import ColumnNotFound, SqlError, UnsupportedSql

INPUT_TABLE = "input"
_EVAL_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


@dataclass(frozen=True)
class Applied:
    """A batch after its transform: rows kept (transformed), their input row index, rejected rows."""

    table: pa.Table
    rows: np.ndarray
    rejected: dict[int, str]


@dataclass(frozen=True)
class _Check:
    """A per-row failure test: a boolean column of the projection, its reason, the value's column."""

    column: int
    reason: str
    value: int | None
    in_where: bool


def flatten(table: pa.Table) -> pa.Table:
    """Struct columns replaced by their fields named ``parent.child`` (as ingestion stores them)."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


class _Compiler(ExpressionCompiler):
    """The expression compiler with CAST turned into a per-row check and dotted column names."""

    def __init__(self, schema: pa.Schema, dialect: str) -> None:
        super().__init__(schema, now=dt.datetime.now(dt.timezone.utc))
        self.dialect = dialect
        self.checks: list[tuple[Typed, str, Typed]] = []  # (failed, reason, value)
        self.temps: list[tuple[str, pc.Expression]] = []  # values computed once, ahead of the projection

    def compile(self, node: exp.Expression) -> Typed:
        if type(node) is exp.Cast and not node.args.get("safe"):
            return self._checked_cast(node)
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            return self.column(".".join(part.name for part in node.parts))
        return super().compile(node)

    def column(self, name: str) -> Typed:
        if self.schema.get_field_index(name) < 0:
            matches = [n for n in self.schema.names if n.lower() == name.lower()]
            if len(matches) == 1:
                name = matches[0]
        return super().column(name)

    def materialize(self, value: Typed) -> Typed:
        """``value`` as a column computed once, before the projection (Acero shares no subexpressions)."""
        name = f"__value{len(self.temps)}"
        self.temps.append((name, value.expr))
        self.schema = self.schema.append(pa.field(name, value.type))
        self._empty = None  # type_of reads the schema's empty table
        return Typed(pc.field(name), value.type)

    def _checked_cast(self, node: exp.Cast) -> Typed:
        """CAST with TRY semantics per row: a value that does not convert rejects its row."""
        to = sqltypes.arrow_type(node.args["to"])
        value = self.compile(node.this)
        if not value.constant and not isinstance(node.this, exp.Column):
            value = self.materialize(value)  # the conversion and its check read it several times
        if value.constant or not sqltypes.is_string(value.type) or sqltypes.is_string(to):
            if sqltypes.is_string(value.type) and pa.types.is_timestamp(to) and not value.constant:
                return text_to_timestamp(self, value, to)
            return self.cast(value, to)  # a failure here is a failure of the whole expression: caught per row
        converted = try_cast_text(self, value, to)
        failed = self.call("and", [self.call("is_valid", [value], type_=pa.bool_()),
                                   self.call("is_null", [converted], type_=pa.bool_())], type_=pa.bool_())
        self.checks.append((failed, f"{node.sql(self.dialect)} failed", value))
        return converted


class Program:
    """A transform compiled for one input schema."""

    def __init__(self, select: exp.Select, schema: pa.Schema, dialect: str) -> None:
        compiler = _Compiler(schema, dialect)
        outputs: list[tuple[str, Typed]] = []
        for item in select.expressions:
            star = item if isinstance(item, exp.Star) else item.this if (
                isinstance(item, exp.Column) and isinstance(item.this, exp.Star)) else None
            if star is not None:
                outputs.extend(_star(compiler, star, schema))
                continue
            name = item.alias if isinstance(item, exp.Alias) else (
                ".".join(p.name for p in item.parts) if isinstance(item, exp.Column) else item.sql(dialect))
            typed = compiler.compile(item.this if isinstance(item, exp.Alias) else item)
            _place(outputs, name, typed)
        first_where_check = len(compiler.checks)
        where = select.args.get("where")
        predicate = compiler.predicate(where.this) if where is not None else pc.scalar(True)
        exprs: list[pc.Expression] = [predicate]
        self.checks: list[_Check] = []
        for position, (failed, reason, value) in enumerate(compiler.checks):
            exprs.append(failed.expr)
            column, shown = len(exprs) - 1, None
            if sqltypes.is_string(value.type) or sqltypes.is_numeric(value.type):
                exprs.append(value.expr)
                shown = len(exprs) - 1
            self.checks.append(_Check(column, reason, shown, in_where=position >= first_where_check))
        self.first_output = len(exprs)
        self.names = [name for name, _ in outputs]
        exprs.extend(typed.expr for _, typed in outputs)
        self.exprs = exprs
        self.temps = compiler.temps
        self.types = [typed.type for _, typed in outputs]

    def apply(self, table: pa.Table) -> Applied:
        """Run over ``table`` (already flattened); see the module docstring for what is kept."""
        projected, rows, rejected = self._evaluate(table, np.arange(table.num_rows, dtype=np.int64))
        if projected.num_rows == 0:
            return Applied(self._empty(), np.zeros(0, np.int64), rejected)
        keep = _bools(projected.column(0))
        bad = np.zeros(projected.num_rows, dtype=bool)
        for check in self.checks:
            failed = _bools(projected.column(check.column)) & ~bad
            if not check.in_where:
                failed &= keep
            if failed.any():
                values = projected.column(check.value) if check.value is not None else None
                for i in np.flatnonzero(failed).tolist():
                    shown = "" if values is None else f" on value {values[i].as_py()!r}"
                    rejected[int(rows[i])] = f"transform: {check.reason}{shown}"
                bad |= failed
        keep &= ~bad
        out = projected.select(list(range(self.first_output, projected.num_columns)))
        out = out.rename_columns(self.names).filter(pa.array(keep))
        return Applied(out, rows[keep], rejected)

    def _empty(self) -> pa.Table:
        return pa.schema([pa.field(n, t) for n, t in zip(self.names, self.types)]).empty_table()

    def _project(self, table: pa.Table) -> pa.Table:
        steps = [acero.Declaration("table_source", acero.TableSourceNodeOptions(table))]
        columns = list(table.column_names)
        for name, expr in self.temps:  # one step each: a later value may read an earlier one
            steps.append(acero.Declaration("project", acero.ProjectNodeOptions(
                [pc.field(c) for c in columns] + [expr], columns + [name])))
            columns.append(name)
        names = [f"c{i}" for i in range(len(self.exprs))]
        steps.append(acero.Declaration("project", acero.ProjectNodeOptions(self.exprs, names)))
        return acero.Declaration.from_sequence(steps).to_table(use_threads=False)

    def _evaluate(self, table: pa.Table, rows: np.ndarray) -> tuple[pa.Table, np.ndarray, dict[int, str]]:
        """The projection; a batch a kernel fails on is halved until the failing rows stand alone."""
        try:
            return self._project(table), rows, {}
        except _EVAL_ERRORS as error:
            if table.num_rows <= 1:
                message = str(error).split("\n")[0]
                return self._project(table.slice(0, 0)), rows[:0], {int(r): f"transform failed: {message}" for r in rows}
        mid = table.num_rows // 2
        first = self._evaluate(table.slice(0, mid), rows[:mid])
        second = self._evaluate(table.slice(mid), rows[mid:])
        return (pa.concat_tables([first[0], second[0]]), np.concatenate([first[1], second[1]]),
                {**first[2], **second[2]})


def _bools(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(column, False).to_numpy(zero_copy_only=False), dtype=bool)


def _star(compiler: _Compiler, star: exp.Star, schema: pa.Schema) -> list[tuple[str, Typed]]:
    if star.args.get("rename"):
        raise UnsupportedSql("* RENAME is not supported in a transform; write `column AS new_name` instead")
    dropped = {".".join(p.name for p in c.parts) for c in star.args.get("except_") or star.args.get("except") or []}
    replaced = {}
    for item in star.args.get("replace") or []:
        replaced[item.alias] = compiler.compile(item.this)
    return [(name, replaced.get(name) or compiler.column(name)) for name in schema.names if name not in dropped]


def _place(outputs: list[tuple[str, Typed]], name: str, typed: Typed) -> None:
    """Add an output column; one with the name of an earlier column replaces it in place."""
    for index, (existing, _) in enumerate(outputs):
        if existing == name:
            outputs[index] = (name, typed)
            return
    outputs.append((name, typed))


class Transform:
    """A checked transform; compiled once per input schema and applied to batches."""

    def __init__(self, sql: str, dialect: str = "duckdb") -> None:
        self.sql = sql
        self.dialect = dialect
        self.select = _check_shape(sql, dialect)
        self._programs: dict[pa.Schema, Program | SqlError] = {}

    def program(self, schema: pa.Schema) -> Program:
        """The program for ``schema`` (compiled the first time it is seen); SqlError if it does not apply."""
        compiled = self._programs.get(schema)
        if compiled is None:
            try:
                compiled = Program(self.select, schema, self.dialect)
            except SqlError as error:
                compiled = error
            if len(self._programs) > 64:
                self._programs.clear()
            self._programs[schema] = compiled
        if isinstance(compiled, SqlError):
            raise compiled
        return compiled

    def apply(self, table: pa.Table) -> Applied:
        """Transform ``table``; when the transform cannot apply to its columns, every row is rejected."""
        table = flatten(table)
        try:
            program = self.program(table.schema)
        except SqlError as error:
            reason = f"transform does not apply to this batch: {error}"
            return Applied(pa.table({}), np.zeros(0, np.int64), {i: reason for i in range(table.num_rows)})
        return program.apply(table)

    def __reduce__(self) -> tuple[Any, ...]:  # compiled programs stay behind; they are rebuilt where used
        return (Transform, (self.sql, self.dialect))


def _check_shape(sql: str, dialect: str) -> exp.Select:
    """The SELECT of a transform, if it has a transform's shape; SqlError/UnsupportedSql if not."""
    tree = parse(sql, dialect).tree
    if not isinstance(tree, exp.Select):
        raise UnsupportedSql("a transform is one SELECT ... FROM input [WHERE ...]; set operations are not supported")
    from_ = tree.args.get("from_") or tree.args.get("from")
    source = from_.this if from_ is not None else None
    if not isinstance(source, exp.Table) or source.name.lower() != INPUT_TABLE or source.db:
        raise SqlError(f"a transform reads FROM {INPUT_TABLE} (the incoming batch), not "
                       f"{source.sql(dialect) if source is not None else 'nothing'}")
    for key, what in (("joins", "joins"), ("group", "GROUP BY"), ("having", "HAVING"), ("order", "ORDER BY"),
                      ("limit", "LIMIT"), ("offset", "OFFSET"), ("distinct", "DISTINCT"), ("qualify", "QUALIFY"),
                      ("with_", "WITH"), ("with", "WITH")):
        if tree.args.get(key):
            raise UnsupportedSql(f"{what} is not allowed in a transform: it runs on each batch, row by row")
    for node in tree.find_all(exp.AggFunc, exp.Window, exp.Subquery, exp.Exists):
        raise UnsupportedSql(f"a transform works row by row; {node.sql(dialect)[:60]} is not allowed in it")
    return tree


def check_transform(sql: str, dialect: str = "duckdb") -> Transform:
    """Check a transform when a table is created or altered; returns it compiled for its shape.

    The input's types are known only when batches arrive, so the expressions
    are compiled here over the referenced columns typed as unknown (NULL),
    then as text, then as integers: a transform that fails every way (an
    unknown function, a bad regular expression, a wrong argument) is refused
    now, with its position.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("the transform is empty; write SELECT ... FROM input [WHERE ...]", 1, 1)
    transform = Transform(sql, dialect)
    names = sorted({".".join(p.name for p in c.parts) for c in transform.select.find_all(exp.Column)
                    if not isinstance(c.this, exp.Star)})
    failure: SqlError | None = None
    for kind in (pa.null(), pa.string(), pa.int64()):
        schema = pa.schema([pa.field(n, kind) for n in names])
        try:
            Program(transform.select, schema, dialect)
            return transform
        except (UnsupportedSql, ColumnNotFound):
            raise
        except SqlError as error:
            failure = failure or error
    raise failure


__all__ = ["Applied", "Program", "Transform", "check_transform"]
