"""Scalar SQL expressions compiled to ``pyarrow.compute`` expressions.

:class:`ExpressionCompiler` turns a sqlglot expression over the columns of
one Arrow schema into a :class:`Typed` ``pc.Expression`` that Acero and the
Parquet scanner evaluate column-at-a-time.  Sub-expressions without column
references are folded to constants on the spot, so ``now() - INTERVAL 1
HOUR`` reaches the scanner (and segment pruning) as one timestamp.
Functions live in :mod:`planner.functions`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc
from sqlglot import exp

from planner import types as sqltypes
from storage.errors import ColumnNotFound, SqlError, UnsupportedSql

_INTERVAL_UNITS = {
    "microsecond": 1, "microseconds": 1, "us": 1,
    "millisecond": 1_000, "milliseconds": 1_000, "ms": 1_000,
    "second": 1_000_000, "seconds": 1_000_000, "s": 1_000_000, "sec": 1_000_000, "secs": 1_000_000,
    "minute": 60_000_000, "minutes": 60_000_000, "m": 60_000_000, "min": 60_000_000, "mins": 60_000_000,
    "hour": 3_600_000_000, "hours": 3_600_000_000, "h": 3_600_000_000, "hr": 3_600_000_000,
    "day": 86_400_000_000, "days": 86_400_000_000, "d": 86_400_000_000,
    "week": 604_800_000_000, "weeks": 604_800_000_000, "w": 604_800_000_000,
}


@dataclass(frozen=True)
class Typed:
    """A compiled expression, its Arrow type, and its value when it is a constant."""

    expr: pc.Expression
    type: pa.DataType
    value: pa.Scalar | None = None

    @property
    def constant(self) -> bool:
        return self.value is not None


def constant(value: Any, type_: pa.DataType | None = None) -> Typed:
    scalar = value if isinstance(value, pa.Scalar) else pa.scalar(value, type_)
    return Typed(pc.scalar(scalar), scalar.type, scalar)


def interval_micros(node: exp.Interval) -> int:
    """Microseconds in an INTERVAL literal; UnsupportedSql for months and years."""
    text = node.this.name if isinstance(node.this, exp.Literal) else node.this.sql()
    unit = node.unit.name if node.unit is not None else ""
    parts = re.findall(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)", f"{text} {unit}".strip() if not unit else text)
    if unit:
        parts = [(parts[0][0] if parts else text, unit)]
    total = 0.0
    for amount, name in parts:
        name = (name or unit or "second").lower()
        if name not in _INTERVAL_UNITS:
            raise UnsupportedSql(
                f"INTERVAL unit {name!r} is not supported; use microseconds to weeks "
                "(months and years have no fixed length)"
            )
        total += float(amount) * _INTERVAL_UNITS[name]
    return int(total)


class ExpressionCompiler:
    """Compiles expressions over the columns of ``schema``."""

    def __init__(self, schema: pa.Schema, now: dt.datetime | None = None) -> None:
        self.schema = schema
        self.now = now or dt.datetime.now(dt.timezone.utc)
        self._empty: pa.Table | None = None
        from planner import functions  # the function table refers back to this module

        self._functions = functions

    # -- entry points -------------------------------------------------------------
    def compile(self, node: exp.Expression) -> Typed:
        handler = _HANDLERS.get(type(node))
        if handler is not None:
            return handler(self, node)
        return self._functions.compile_function(self, node)

    def predicate(self, node: exp.Expression) -> pc.Expression:
        """A boolean expression for a WHERE or HAVING clause."""
        typed = self.compile(node)
        if pa.types.is_null(typed.type):
            return pc.scalar(pa.scalar(None, pa.bool_()))
        if not pa.types.is_boolean(typed.type):
            typed = self.cast(typed, pa.bool_())
        return typed.expr

    # -- building blocks ------------------------------------------------------------
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
                return constant(_cast_scalar(typed.value, to))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
                if not safe:
                    return constant(pa.scalar(None, to))
                raise SqlError(f"cannot cast {typed.value} to {to}: {error}") from None
        if pa.types.is_floating(typed.type) and pa.types.is_integer(to):  # to the nearest, ties to even, as DuckDB
            typed = self.call("round", [typed], pc.RoundOptions(0, "half_to_even"), typed.type)
        if pa.types.is_timestamp(typed.type) and pa.types.is_date(to):
            return Typed(typed.expr.cast(pa.date32(), safe=False), to)
        if pa.types.is_timestamp(typed.type) and sqltypes.is_string(to):
            return self._functions.timestamp_text(self, typed)
        return Typed(typed.expr.cast(to, safe=True), to)

    def coerce(self, args: list[Typed], what: str) -> list[Typed]:
        """``args`` cast to their common type (for comparison, CASE, COALESCE, IN)."""
        target = args[0].type
        for arg in args[1:]:
            common = sqltypes.common_type(target, arg.type)
            if common is None:
                raise SqlError(f"{what} mixes incompatible types {target} and {arg.type}; add a CAST")
            target = common
        return [self.cast(a, target) for a in args]

    def column(self, name: str) -> Typed:
        index = self.schema.get_field_index(name)
        if index < 0:
            raise ColumnNotFound(f"column {name!r} is not available here; known columns: {', '.join(self.schema.names)}")
        return Typed(pc.field(name), self.schema.field(index).type)

    # -- node handlers -----------------------------------------------------------
    def _column(self, node: exp.Column) -> Typed:
        return self.column(node.name)

    def _dot(self, node: exp.Dot) -> Typed:
        base = self.compile(node.this)
        if not pa.types.is_struct(base.type):
            raise SqlError(f"{node.this.sql()} is not a struct, so {node.sql()} has no field to read")
        name = node.expression.name
        index = base.type.get_field_index(name)
        if index < 0:
            names = ", ".join(f.name for f in base.type)
            raise ColumnNotFound(f"struct {node.this.sql()} has no field {name!r}; its fields: {names}")
        return self.call("struct_field", [base], pc.StructFieldOptions([index]), base.type.field(index).type)

    def _literal(self, node: exp.Literal) -> Typed:
        if node.is_string:
            return constant(node.this, pa.string())
        text = node.this
        if re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
            return constant(value, pa.int64() if -(2**63) <= value < 2**63 else pa.float64())
        return constant(float(text), pa.float64())

    def _null(self, node: exp.Null) -> Typed:
        return constant(pa.scalar(None, pa.null()))

    def _boolean(self, node: exp.Boolean) -> Typed:
        return constant(bool(node.this), pa.bool_())

    def _paren(self, node: exp.Paren) -> Typed:
        return self.compile(node.this)

    def _neg(self, node: exp.Neg) -> Typed:
        arg = self.compile(node.this)
        return self.call("negate_checked", [arg], type_=arg.type)

    def _arith(self, node: exp.Binary) -> Typed:
        shifted = self._calendar_shift(node)
        if shifted is not None:
            return shifted
        exact = _decimal_arith(node)
        if exact is not None:
            return exact
        left, right = self.compile(node.this), self.compile(node.expression)
        op = type(node)
        if pa.types.is_timestamp(left.type) or pa.types.is_date(left.type) or pa.types.is_duration(left.type) \
                or pa.types.is_timestamp(right.type) or pa.types.is_date(right.type):
            return self._functions.temporal_arith(self, op, left, right)
        for side in (left, right):
            if not (sqltypes.is_numeric(side.type) or pa.types.is_null(side.type)):
                raise SqlError(f"{node.sql()} does arithmetic on a {side.type} value; CAST it to a number first")
        if op is exp.Div:
            target = pa.float64()
            left, right = self.cast(left, target), self.cast(right, target)
            return self.call("divide", [left, right], type_=target)
        target = sqltypes.numeric_common(left.type, right.type)
        left, right = self.cast(left, target), self.cast(right, target)
        if op is exp.IntDiv:
            quotient = self.call("divide", [left, right], type_=target)
            return quotient if pa.types.is_integer(target) else self.call("floor", [quotient], type_=target)
        if op is exp.Mod:
            return self._functions.modulo(self, left, right, target)
        name = {exp.Add: "add_checked", exp.Sub: "subtract_checked", exp.Mul: "multiply_checked"}[op]
        if pa.types.is_floating(target):
            name = name.replace("_checked", "")
        return self.call(name, [left, right], type_=target)

    def _calendar_shift(self, node: exp.Binary) -> Typed | None:
        """A constant date or timestamp plus or minus whole months, quarters or years."""
        if type(node) not in (exp.Add, exp.Sub) or not isinstance(node.expression, exp.Interval):
            return None
        interval = node.expression
        unit = (interval.unit.name if interval.unit is not None else "").lower().rstrip("s")
        amount_text = interval.this.name if isinstance(interval.this, exp.Literal) else ""
        if not unit:
            match = re.fullmatch(r"\s*(-?\d+)\s*([A-Za-z]+?)s?\s*", amount_text)
            if not match:
                return None
            amount_text, unit = match.group(1), match.group(2).lower()
        months_per = {"month": 1, "mon": 1, "quarter": 3, "year": 12, "yr": 12}.get(unit)
        if months_per is None or not re.fullmatch(r"-?\d+", amount_text.strip()):
            return None
        base = self.compile(node.this)
        if not base.constant or not (pa.types.is_date(base.type) or pa.types.is_timestamp(base.type)):
            if pa.types.is_date(base.type) or pa.types.is_timestamp(base.type):
                raise UnsupportedSql(f"{node.sql()}: month and year intervals can only shift constant dates")
            return None
        value = base.value.as_py()
        if value is None:
            return base
        months = int(amount_text) * months_per * (-1 if isinstance(node, exp.Sub) else 1)
        total = value.year * 12 + (value.month - 1) + months
        year, month = divmod(total, 12)
        month += 1
        import calendar

        day = min(value.day, calendar.monthrange(year, month)[1])
        return constant(pa.scalar(value.replace(year=year, month=month, day=day), base.type))

    def _compare(self, node: exp.Binary) -> Typed:
        left, right = self.coerce([self.compile(node.this), self.compile(node.expression)], node.sql())
        name = {
            exp.EQ: "equal", exp.NEQ: "not_equal", exp.GT: "greater", exp.GTE: "greater_equal",
            exp.LT: "less", exp.LTE: "less_equal",
        }[type(node)]
        return self.call(name, [left, right], type_=pa.bool_())

    def _distinct_from(self, node: exp.Binary) -> Typed:
        left, right = self.coerce([self.compile(node.this), self.compile(node.expression)], node.sql())
        equal = self.call("equal", [left, right], type_=pa.bool_())
        both_null = self.call("and", [self._is_null(left), self._is_null(right)], type_=pa.bool_())
        same = self.call("or", [self.call("coalesce", [equal, constant(False)], type_=pa.bool_()), both_null],
                         type_=pa.bool_())
        return same if isinstance(node, exp.NullSafeEQ) else self.call("invert", [same], type_=pa.bool_())

    def _is_null(self, typed: Typed) -> Typed:
        return self.call("is_null", [typed], type_=pa.bool_())

    def _is(self, node: exp.Is) -> Typed:
        arg = self.compile(node.this)
        target = node.expression
        if isinstance(target, exp.Null):
            return self._is_null(arg)
        if isinstance(target, exp.Boolean):
            arg = self.cast(arg, pa.bool_())
            value = self.call("equal", [arg, constant(bool(target.this))], type_=pa.bool_())
            return self.call("coalesce", [value, constant(False)], type_=pa.bool_())
        raise UnsupportedSql(f"{node.sql()} is not supported; IS takes NULL, TRUE or FALSE")

    def _logic(self, node: exp.Binary) -> Typed:
        args = [self.cast(self.compile(n), pa.bool_()) for n in (node.this, node.expression)]
        return self.call("and_kleene" if isinstance(node, exp.And) else "or_kleene", args, type_=pa.bool_())

    def _not(self, node: exp.Not) -> Typed:
        return self.call("invert", [self.cast(self.compile(node.this), pa.bool_())], type_=pa.bool_())

    def _between(self, node: exp.Between) -> Typed:
        value, low, high = self.coerce(
            [self.compile(node.this), self.compile(node.args["low"]), self.compile(node.args["high"])], node.sql()
        )
        lower = self.call("greater_equal", [value, low], type_=pa.bool_())
        upper = self.call("less_equal", [value, high], type_=pa.bool_())
        return self.call("and_kleene", [lower, upper], type_=pa.bool_())

    def _in(self, node: exp.In) -> Typed:
        if node.args.get("query") is not None:
            raise UnsupportedSql(f"IN with a subquery is not supported yet: {node.sql()}")
        value = self.compile(node.this)
        items = [self.compile(e) for e in node.expressions]
        coerced = self.coerce([value, *items], node.sql())
        value, items = coerced[0], coerced[1:]
        if all(i.constant for i in items):
            present = [i.value.as_py() for i in items if i.value.is_valid]
            values = pa.array(present, value.type if not pa.types.is_null(value.type) else None)
            found = self.call("is_in", [value], pc.SetLookupOptions(values, skip_nulls=True), type_=pa.bool_())
            unknown = constant(pa.scalar(None, pa.bool_()))
            if len(present) < len(items):  # x IN (..., NULL) is NULL rather than FALSE when x is not found
                found = self.call("or_kleene", [found, unknown], type_=pa.bool_())
            return self._case_when([self._is_null(value)], [unknown, found], node.sql())
        result = None
        for item in items:
            equal = self.call("equal", [value, item], type_=pa.bool_())
            result = equal if result is None else self.call("or_kleene", [result, equal], type_=pa.bool_())
        return result

    def _like(self, node: exp.Binary) -> Typed:
        value = self.compile(node.this)
        pattern = self.compile(node.expression)
        if not pattern.constant:
            raise UnsupportedSql(f"the pattern of {node.sql()} must be a constant string")
        if pa.types.is_null(pattern.type) or not pattern.value.is_valid:
            return constant(pa.scalar(None, pa.bool_()))
        options = pc.MatchSubstringOptions(pattern.value.as_py(), ignore_case=isinstance(node, exp.ILike))
        value = self.cast(value, pa.string())
        result = self.call("match_like", [value], options, type_=pa.bool_())
        if node.args.get("negate"):
            result = self.call("invert", [result], type_=pa.bool_())
        return result

    def _case(self, node: exp.Case) -> Typed:
        subject = self.compile(node.this) if node.this is not None else None
        conditions, values = [], []
        for branch in node.args.get("ifs") or []:
            if subject is not None:
                left, right = self.coerce([subject, self.compile(branch.this)], node.sql())
                condition = self.call("equal", [left, right], type_=pa.bool_())
            else:
                condition = self.cast(self.compile(branch.this), pa.bool_())
            conditions.append(condition)
            values.append(self.compile(branch.args["true"]))
        default = node.args.get("default")
        values.append(self.compile(default) if default is not None else constant(pa.scalar(None, pa.null())))
        return self._case_when(conditions, values, node.sql())

    def _case_when(self, conditions: list[Typed], values: list[Typed], what: str) -> Typed:
        values = self.coerce(values, what)
        target = values[0].type
        if pa.types.is_null(target):
            return constant(pa.scalar(None, pa.null()))
        names = [f"c{i}" for i in range(len(conditions))]
        conditions = [self.call("coalesce", [c, constant(False)], type_=pa.bool_()) for c in conditions]
        struct = self.call("make_struct", conditions, pc.MakeStructOptions(names), pa.struct([(n, pa.bool_()) for n in names]))
        return self.call("case_when", [struct, *values], type_=target)

    def _if(self, node: exp.If) -> Typed:
        condition = self.cast(self.compile(node.this), pa.bool_())
        false = node.args.get("false")
        values = [self.compile(node.args["true"]), self.compile(false) if false is not None else constant(pa.scalar(None, pa.null()))]
        return self._case_when([condition], values, node.sql())

    def _cast(self, node: exp.Cast) -> Typed:
        to = sqltypes.arrow_type(node.args["to"])
        value = self.compile(node.this)
        safe = isinstance(node, exp.TryCast) or bool(node.args.get("safe"))
        if safe and not value.constant and sqltypes.is_string(value.type) and not sqltypes.is_string(to):
            return self._functions.try_cast_text(self, value, to)
        if safe and value.constant:
            return self.cast(value, to, safe=False)
        if sqltypes.is_string(value.type) and pa.types.is_timestamp(to) and not value.constant:
            return self._functions.text_to_timestamp(self, value, to)
        return self.cast(value, to)

    def _coalesce(self, node: exp.Coalesce) -> Typed:
        args = self.coerce([self.compile(node.this), *[self.compile(e) for e in node.expressions]], node.sql())
        return self.call("coalesce", args, type_=args[0].type)

    def _nullif(self, node: exp.Nullif) -> Typed:
        value, other = self.coerce([self.compile(node.this), self.compile(node.expression)], node.sql())
        equal = self.call("equal", [value, other], type_=pa.bool_())
        return self._case_when([equal], [constant(pa.scalar(None, value.type)), value], node.sql())

    def _interval(self, node: exp.Interval) -> Typed:
        return constant(pa.scalar(interval_micros(node), pa.duration("us")))

    def _timestamp_now(self, node: exp.Expression) -> Typed:
        return constant(pa.scalar(self.now, pa.timestamp("us", tz="UTC")))

    def _current_date(self, node: exp.Expression) -> Typed:
        return constant(pa.scalar(self.now.date(), pa.date32()))

    def _placeholder(self, node: exp.Expression) -> Typed:
        raise UnsupportedSql(f"query parameters ({node.sql()}) are not supported; write the value into the query")

    def _subquery(self, node: exp.Expression) -> Typed:
        raise UnsupportedSql(f"subqueries are not supported yet: {node.sql()[:80]}")


def _decimal_arith(node: exp.Binary) -> Typed | None:
    """``0.06 + 0.01`` computed in decimal, as SQL's exact numeric literals are, then made a float."""
    import decimal

    left, right = node.this, node.expression
    if not all(isinstance(n, exp.Literal) and not n.is_string for n in (left, right)):
        return None
    if "." not in left.this + right.this or type(node) not in (exp.Add, exp.Sub, exp.Mul):
        return None
    a, b = decimal.Decimal(left.this), decimal.Decimal(right.this)
    value = a + b if isinstance(node, exp.Add) else a - b if isinstance(node, exp.Sub) else a * b
    return constant(float(value), pa.float64())


def _cast_scalar(value: pa.Scalar, to: pa.DataType) -> pa.Scalar:
    if not value.is_valid:
        return pa.scalar(None, to)
    if pa.types.is_floating(value.type) and pa.types.is_integer(to):
        number = value.as_py()
        return pa.scalar(int(number + (0.5 if number >= 0 else -0.5)), to)
    if sqltypes.is_string(value.type) and (pa.types.is_timestamp(to) or pa.types.is_date(to)):
        text = value.as_py().strip()
        parsed = dt.datetime.fromisoformat(text.replace(" UTC", "+00:00"))
        if pa.types.is_timestamp(to) and to.tz and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        if pa.types.is_timestamp(to) and not to.tz and parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return pa.scalar(parsed.date() if pa.types.is_date(to) else parsed, to)
    if pa.types.is_timestamp(value.type) and pa.types.is_timestamp(to):
        moment = value.as_py()
        if isinstance(moment, dt.datetime):
            if to.tz and moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            elif not to.tz and moment.tzinfo is not None:
                moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return pa.scalar(moment, to)
    if pa.types.is_date(value.type) and pa.types.is_timestamp(to):
        day = value.as_py()
        moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc if to.tz else None)
        return pa.scalar(moment, to)
    return value.cast(to)


_HANDLERS: dict[type, Callable[[ExpressionCompiler, Any], Typed]] = {
    exp.Column: ExpressionCompiler._column,
    exp.Dot: ExpressionCompiler._dot,
    exp.Literal: ExpressionCompiler._literal,
    exp.Null: ExpressionCompiler._null,
    exp.Boolean: ExpressionCompiler._boolean,
    exp.Paren: ExpressionCompiler._paren,
    exp.Neg: ExpressionCompiler._neg,
    exp.Add: ExpressionCompiler._arith,
    exp.Sub: ExpressionCompiler._arith,
    exp.Mul: ExpressionCompiler._arith,
    exp.Div: ExpressionCompiler._arith,
    exp.IntDiv: ExpressionCompiler._arith,
    exp.Mod: ExpressionCompiler._arith,
    exp.EQ: ExpressionCompiler._compare,
    exp.NEQ: ExpressionCompiler._compare,
    exp.GT: ExpressionCompiler._compare,
    exp.GTE: ExpressionCompiler._compare,
    exp.LT: ExpressionCompiler._compare,
    exp.LTE: ExpressionCompiler._compare,
    exp.NullSafeEQ: ExpressionCompiler._distinct_from,
    exp.NullSafeNEQ: ExpressionCompiler._distinct_from,
    exp.Is: ExpressionCompiler._is,
    exp.And: ExpressionCompiler._logic,
    exp.Or: ExpressionCompiler._logic,
    exp.Not: ExpressionCompiler._not,
    exp.Between: ExpressionCompiler._between,
    exp.In: ExpressionCompiler._in,
    exp.Like: ExpressionCompiler._like,
    exp.ILike: ExpressionCompiler._like,
    exp.Case: ExpressionCompiler._case,
    exp.If: ExpressionCompiler._if,
    exp.Cast: ExpressionCompiler._cast,
    exp.TryCast: ExpressionCompiler._cast,
    exp.Coalesce: ExpressionCompiler._coalesce,
    exp.Nullif: ExpressionCompiler._nullif,
    exp.Interval: ExpressionCompiler._interval,
    exp.CurrentTimestamp: ExpressionCompiler._timestamp_now,
    exp.CurrentDate: ExpressionCompiler._current_date,
    exp.Placeholder: ExpressionCompiler._placeholder,
    exp.Subquery: ExpressionCompiler._subquery,
    exp.Exists: ExpressionCompiler._subquery,
}
