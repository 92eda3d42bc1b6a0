"""The expression compiler: a sqlglot expression over one Arrow schema to a ``pyarrow.compute`` expression.

:class:`ExpressionCompiler` dispatches each node to the handler registered
for it in :mod:`planner.expressions.registry` (the handler modules of this
package register themselves), and gives handlers the building blocks they
share: calling a kernel (folded on the spot when every argument is a
constant, so ``now() - INTERVAL 1 HOUR`` reaches the scanner and segment
pruning as one timestamp), casting, finding a common type, CASE.
"""

from __future__ import annotations

import functools

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from planner.expressions import decimals
from planner.expressions.conversions import cast_scalar, decimals_apply, float_text, timestamp_text
from planner.expressions.registry import HANDLERS, NAMED
from planner.expressions.typed import Typed, constant
from planner.parse import position
from storage.errors import ColumnNotFound, SqlError, UnsupportedSql


class ExpressionCompiler:
    """Compiles expressions over the columns of ``schema``; ``now`` is the query's fixed clock."""

    def __init__(self, schema: pa.Schema, now: dt.datetime | None = None) -> None:
        self.schema = schema
        self.now = now or dt.datetime.now(dt.timezone.utc)
        self._empty: pa.Table | None = None

    def compile(self, node: exp.Expression) -> Typed:
        """``node`` compiled by the handler registered for its type (or its name, for anonymous calls)."""
        handler = HANDLERS.get(type(node))
        if handler is not None:
            try:
                return handler(self, node)
            except SqlError as error:  # no position yet: the innermost node that has one gives it
                located = error.located(*position(node))
                if located is error:
                    raise
                raise located from None
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name in NAMED:
                return NAMED[name](self, [self.compile(a) for a in node.expressions], node)
            raise UnsupportedSql(f"function {node.name}() is not supported", *position(node))
        if isinstance(node, exp.AggFunc):
            raise SqlError(f"aggregate {node.sql()} is not allowed here (in WHERE, GROUP BY, or nested in another "
                           "aggregate)", *position(node))
        if isinstance(node, exp.Window):
            raise UnsupportedSql(f"window functions are not supported here: {node.sql()[:80]}", *position(node))
        if isinstance(node, exp.Func):
            raise UnsupportedSql(f"function {node.sql_name()}() is not supported", *position(node))
        raise UnsupportedSql(f"{node.key.upper()} expressions are not supported: {node.sql()[:80]}", *position(node))

    def predicate(self, node: exp.Expression) -> pc.Expression:
        """A boolean expression for a WHERE or HAVING clause."""
        typed = self.compile(node)
        if pa.types.is_null(typed.type):
            return pc.scalar(pa.scalar(None, pa.bool_()))
        if not pa.types.is_boolean(typed.type):
            typed = self.cast(typed, pa.bool_())
        return typed.expr

    def call(self, name: str, args: list[Typed], options: Any = None, type_: pa.DataType | None = None) -> Typed:
        """``name(args)``; evaluated now when every argument is a constant."""
        if args and all(a.constant for a in args):
            try:
                value = pc.call_function(name, [a.value for a in args], options)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
                raise SqlError(f"cannot evaluate {name} on {[str(a.value) for a in args]}: {error}") from None
            if isinstance(value, pa.Scalar):
                return constant(value)
        expr = pc.Expression._call(name, [a.expr for a in args], options)
        return Typed(expr, type_ if type_ is not None else self.type_of(expr, name))

    def type_of(self, expr: pc.Expression, what: str = "expression") -> pa.DataType:
        """The result type of ``expr``, found by evaluating it over no rows."""
        if self._empty is None:
            self._empty = self.schema.empty_table()
        try:
            plan = acero.Declaration.from_sequence([
                acero.Declaration("table_source", acero.TableSourceNodeOptions(self._empty)),
                acero.Declaration("project", acero.ProjectNodeOptions([expr], ["v"])),
            ])
            return plan.to_table(use_threads=False).schema.field(0).type
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            message = str(error).split("\n")[0]
            raise SqlError(f"{what} cannot be applied to these argument types: {message}") from None

    def cast(self, typed: Typed, to: pa.DataType, safe: bool = True) -> Typed:
        if typed.type.equals(to):
            return typed
        if typed.constant:
            try:
                return constant(cast_scalar(typed.value, to))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
                if not safe:
                    return constant(pa.scalar(None, to))
                raise SqlError(f"cannot cast {typed.value} to {to}: {error}") from None
        if decimals_apply(typed.type, to):
            return decimals.cast(self, typed, to)
        if pa.types.is_floating(typed.type) and pa.types.is_integer(to):  # to the nearest, ties to even, as DuckDB
            typed = self.call("round", [typed], pc.RoundOptions(0, "half_to_even"), typed.type)
        if pa.types.is_timestamp(typed.type) and pa.types.is_date(to):
            return Typed(typed.expr.cast(pa.date32(), safe=False), to)
        if pa.types.is_timestamp(typed.type) and sqltypes.is_string(to):
            return timestamp_text(self, typed)
        if pa.types.is_floating(typed.type) and sqltypes.is_string(to):
            return float_text(self, typed)
        return Typed(typed.expr.cast(to, safe=True), to)

    def coerce(self, args: list[Typed], what: str, meeting: bool = False) -> list[Typed]:
        """``args`` cast to their common type: the one they are compared in (comparisons, IN), or with
        ``meeting`` the one their values become as one result (CASE, COALESCE, GREATEST).

        Exact numbers differ between the two, as in DuckDB: compared, DECIMALs
        keep every digit of both (a 256-bit decimal past 38 digits); meeting as
        values, past 38 digits the scale gives way to the integer part.
        """
        exact = any(pa.types.is_decimal(a.type) for a in args)
        types = [decimals.operand_type(a) if exact else a.type for a in args]
        target = types[0]
        for arg, type_ in zip(args[1:], types[1:]):
            common = sqltypes.common_type(target, type_)
            if common is None:
                raise SqlError(f"{what} mixes incompatible types {target} and {arg.type}; add a CAST")
            target = common
        numbers = [t for t in types if not pa.types.is_null(t)]
        if exact and pa.types.is_decimal(target) and all(pa.types.is_integer(t) or pa.types.is_decimal(t) for t in numbers):
            combine = sqltypes.decimal_meeting if meeting else sqltypes.decimal_comparing
            target = functools.reduce(combine, numbers)
        return [self.cast(a, target) for a in args]

    def comparable(self, args: list[Typed], what: str) -> list[Typed]:
        """``args`` cast to the common type they are compared in.

        When every one is an untyped NULL (``NULL >= NULL``) they are compared
        as booleans, for which Arrow has kernels: every such comparison is NULL.
        """
        args = self.coerce(args, what)
        if pa.types.is_null(args[0].type):
            args = [self.cast(a, pa.bool_()) for a in args]
        return args

    def column(self, name: str) -> Typed:
        index = self.schema.get_field_index(name)
        if index < 0:
            raise ColumnNotFound(f"column {name!r} is not available here; known columns: {', '.join(self.schema.names)}")
        return Typed(pc.field(name), self.schema.field(index).type)

    def is_null(self, typed: Typed) -> Typed:
        return self.call("is_null", [typed], type_=pa.bool_())

    def case_when(self, conditions: list[Typed], values: list[Typed], what: str) -> Typed:
        values = self.coerce(values, what, meeting=True)
        target = values[0].type
        if pa.types.is_null(target):
            return constant(pa.scalar(None, pa.null()))
        names = [f"c{i}" for i in range(len(conditions))]
        conditions = [self.call("coalesce", [c, constant(False)], type_=pa.bool_()) for c in conditions]
        struct = self.call("make_struct", conditions, pc.MakeStructOptions(names), pa.struct([(n, pa.bool_()) for n in names]))
        return self.call("case_when", [struct, *values], type_=target)

    def literal_arg(self, node: exp.Expression | None, what: str, default: Any = None) -> Any:
        """The Python value of an argument that must be a constant (``what`` names it in the error)."""
        if node is None:
            return default
        typed = self.compile(node)
        if not typed.constant:
            raise UnsupportedSql(f"the {what} must be a constant, not {node.sql()}", *position(node))
        value = typed.value.as_py()
        return float(value) if isinstance(value, decimal.Decimal) else value  # 0.5 is a DECIMAL, read as a number

    def text(self, node: exp.Expression) -> Typed:
        """``node`` compiled, and cast to text when it is not text already."""
        typed = self.compile(node)
        return typed if sqltypes.is_string(typed.type) else self.cast(typed, pa.string())
