"""Time functions and INTERVAL arithmetic: date_trunc, time_bucket, extract, epoch
conversions, strftime/strptime, date_add/date_diff, now(), as Arrow temporal kernels.

Time zones: timestamps with a zone are computed in UTC, Petrel's session
time zone; timestamps without one are taken as UTC wall-clock times.
Units are read by :mod:`planner.time_units`.
"""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp
from sqlglot.optimizer.simplify import simplify

from planner import time_units
from planner import types as sqltypes
from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles, named
from planner.expressions.typed import Typed, constant
from storage.errors import SqlError, UnsupportedSql

_I64 = pa.int64()
_F64 = pa.float64()

#: DuckDB's default origin for time_bucket: Monday 2000-01-03 00:00:00 UTC.
TIME_BUCKET_ORIGIN_US = 946_857_600_000_000


def interval_micros(node: exp.Interval) -> int:
    """Microseconds in an INTERVAL literal (``INTERVAL 90 MINUTE``, ``INTERVAL '1 day 2 hours'``).

    UnsupportedSql for months and years, which have no fixed length (they
    can only shift a constant date, see :func:`calendar_shift`).
    """
    text = node.this.name if isinstance(node.this, exp.Literal) else node.this.sql()
    unit = node.unit.name if node.unit is not None else ""
    parts = re.findall(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)", text)
    if unit:
        parts = [(parts[0][0] if parts else text, unit)]
    total = 0.0
    for amount, name in parts:
        found = time_units.find_unit(name or unit or "second")
        if found not in time_units.MICROS:
            raise UnsupportedSql(
                f"INTERVAL unit {name or unit!r} is not supported here; use microseconds to weeks "
                "(months and years have no fixed length)"
            )
        total += float(amount) * time_units.MICROS[found]
    return int(total)


def calendar_shift(c: ExpressionCompiler, node: exp.Binary) -> Typed | None:
    """A constant date or timestamp plus or minus whole months, quarters or years; None for anything else.

    The date arithmetic is sqlglot's (``simplify``): the day is kept, or
    clamped to the end of a shorter month.
    """
    if type(node) not in (exp.Add, exp.Sub) or not isinstance(node.expression, exp.Interval):
        return None
    interval = node.expression
    spelling = interval.unit.name if interval.unit is not None else ""
    amount = interval.this.name if isinstance(interval.this, exp.Literal) else ""
    if not spelling:
        match = re.fullmatch(r"\s*(-?\d+)\s*([A-Za-z]+)\s*", amount)
        if not match:
            return None
        amount, spelling = match.group(1), match.group(2)
    unit = time_units.find_unit(spelling)
    if unit not in time_units.MONTHS or not re.fullmatch(r"\s*-?\d+\s*", amount):
        return None
    base = c.compile(node.this)
    if not (pa.types.is_date(base.type) or pa.types.is_timestamp(base.type)):
        return None
    if not base.constant:
        raise UnsupportedSql(f"{node.sql()}: month and year intervals can only shift constant dates")
    if not base.value.is_valid:
        return base
    moment = base.value.as_py()
    if isinstance(moment, dt.datetime):
        literal = exp.cast(exp.Literal.string(moment.replace(tzinfo=None).isoformat(sep=" ")), "TIMESTAMP")
    else:
        literal = exp.cast(exp.Literal.string(moment.isoformat()), "DATE")
    shifted = type(node)(this=literal, expression=exp.Interval(this=exp.Literal.number(int(amount)), unit=exp.var(unit)))
    folded = simplify(shifted)
    if not isinstance(folded, exp.Cast):
        raise UnsupportedSql(f"{node.sql()}: this date cannot be shifted by {amount} {unit}s")
    return c.cast(c.compile(folded), pa.timestamp("us") if pa.types.is_date(base.type) else base.type)  # DuckDB's


def _unit(node: exp.Expression | str | None) -> str:
    """The time unit a function argument names (a keyword like ``hour`` or a string ``'hour'``)."""
    return time_units.unit(node if isinstance(node, str) else (node.name if node is not None else ""))


@handles(exp.Interval)
def _interval(c: ExpressionCompiler, node: exp.Interval) -> Typed:
    return constant(pa.scalar(interval_micros(node), pa.duration("us")))


@handles(exp.CurrentTimestamp)
def _current_timestamp(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    return constant(pa.scalar(c.now, pa.timestamp("us", tz="UTC")))


@handles(exp.CurrentDate)
def _current_date(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    return constant(pa.scalar(c.now.date(), pa.date32()))


def as_timestamp(c: ExpressionCompiler, value: Typed) -> Typed:
    """A date or timestamp as a microsecond timestamp (keeping its zone)."""
    if pa.types.is_timestamp(value.type):
        if value.type.unit == "us":
            return value
        return c.cast(value, pa.timestamp("us", tz=value.type.tz)) if value.type.unit != "ns" else Typed(
            value.expr.cast(pa.timestamp("us", tz=value.type.tz), safe=False), pa.timestamp("us", tz=value.type.tz))
    if pa.types.is_date(value.type):
        return c.cast(value, pa.timestamp("us"))
    if sqltypes.is_string(value.type):
        return c.cast(value, pa.timestamp("us"))
    raise SqlError(f"expected a timestamp or date, got a {value.type} value")


def micros(c: ExpressionCompiler, value: Typed) -> Typed:
    """Microseconds since the epoch of a timestamp, as int64."""
    stamp = as_timestamp(c, value)
    return Typed(stamp.expr.cast(_I64), _I64) if not stamp.constant else c.cast(
        constant(pa.scalar(stamp.value.value, _I64)), _I64)


@handles(exp.TimestampTrunc, exp.DateTrunc)
def _date_trunc(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    unit = _unit(node.args.get("unit"))
    value = c.compile(node.this)
    if sqltypes.is_string(value.type) or pa.types.is_date(value.type):  # a date truncates to a TIMESTAMP, as in DuckDB
        value = c.cast(value, pa.timestamp("us"))
    options = pc.RoundTemporalOptions(1, unit, week_starts_monday=True)
    return c.call("floor_temporal", [value], options, value.type)


@named("date_trunc")
def _date_trunc_named(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    unit = _unit(args[0].value.as_py() if args[0].constant else "")
    value = args[1]
    if pa.types.is_date(value.type):  # a date truncates to a TIMESTAMP, as in DuckDB
        value = c.cast(value, pa.timestamp("us"))
    options = pc.RoundTemporalOptions(1, unit, week_starts_monday=True)
    return c.call("floor_temporal", [value], options, value.type)


def time_bucket(c: ExpressionCompiler, width_us: int, value: Typed, origin_us: int = TIME_BUCKET_ORIGIN_US) -> Typed:
    """The start of the ``width_us`` bucket (counted from ``origin_us``) holding each time."""
    if width_us <= 0:
        raise SqlError(f"time_bucket width must be positive, got {width_us} microseconds")
    stamp = as_timestamp(c, value)
    offset = c.call("subtract", [micros(c, stamp), constant(origin_us, _I64)], type_=_I64)
    quotient = c.call("divide", [offset, constant(width_us, _I64)], type_=_I64)
    start = c.call("multiply", [quotient, constant(width_us, _I64)], type_=_I64)
    behind = c.call("greater", [start, offset], type_=pa.bool_())
    start = c.case_when([behind], [c.call("subtract", [start, constant(width_us, _I64)], type_=_I64), start], "time_bucket")
    start = c.call("add", [start, constant(origin_us, _I64)], type_=_I64)
    if start.constant:
        return constant(pa.scalar(start.value.as_py(), _I64).cast(stamp.type))
    return Typed(start.expr.cast(stamp.type), stamp.type)


@handles(exp.DateBin)
def _time_bucket(c: ExpressionCompiler, node: exp.DateBin) -> Typed:
    width = node.this
    if not isinstance(width, exp.Interval):
        typed = c.compile(width)
        if not (typed.constant and pa.types.is_duration(typed.type)):
            raise UnsupportedSql(f"time_bucket needs a constant INTERVAL width, not {width.sql()}")
        width_us = typed.value.cast(pa.duration("us")).value
    else:
        width_us = interval_micros(width)
    value = c.compile(node.expression)
    origin = node.args.get("unit")
    origin_us = TIME_BUCKET_ORIGIN_US
    if origin is not None:
        typed = c.compile(origin)
        if not typed.constant:
            raise UnsupportedSql("the origin of time_bucket must be a constant timestamp")
        origin_us = c.cast(typed, pa.timestamp("us")).value.value
    return time_bucket(c, width_us, value, origin_us)


def extract(c: ExpressionCompiler, part: str, value: Typed) -> Typed:
    """EXTRACT(part FROM value) with DuckDB's numbering (dow: Sunday = 0)."""
    part = part.lower()
    if sqltypes.is_string(value.type):
        value = c.cast(value, pa.timestamp("us"))
    simple = {
        "year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute",
        "second": "second", "doy": "day_of_year", "dayofyear": "day_of_year", "quarter": "quarter",
        "week": "iso_week", "weeks": "iso_week", "isoyear": "iso_year", "years": "year", "months": "month",
        "days": "day", "hours": "hour", "minutes": "minute", "seconds": "second",
    }
    if part in simple:
        return c.call(simple[part], [value], type_=_I64)
    if part in ("dow", "dayofweek", "weekday"):
        return c.call("day_of_week", [value], pc.DayOfWeekOptions(count_from_zero=True, week_start=7), _I64)
    if part in ("isodow",):
        return c.call("day_of_week", [value], pc.DayOfWeekOptions(count_from_zero=False, week_start=1), _I64)
    if part in ("millisecond", "milliseconds", "ms"):
        seconds = c.call("multiply", [c.call("second", [value], type_=_I64), constant(1000, _I64)], type_=_I64)
        return c.call("add", [seconds, c.call("millisecond", [value], type_=_I64)], type_=_I64)
    if part in ("microsecond", "microseconds", "us"):
        seconds = c.call("multiply", [c.call("second", [value], type_=_I64), constant(1_000_000, _I64)], type_=_I64)
        sub = c.call("add", [c.call("multiply", [c.call("millisecond", [value], type_=_I64), constant(1000, _I64)], type_=_I64),
                             c.call("microsecond", [value], type_=_I64)], type_=_I64)
        return c.call("add", [seconds, sub], type_=_I64)
    if part == "epoch":
        return epoch_seconds(c, value)
    raise UnsupportedSql(f"date part {part!r} is not supported; use year, quarter, month, week, day, dow, doy, hour, "
                         "minute, second, millisecond, microsecond or epoch")


@handles(exp.Extract)
def _extract(c: ExpressionCompiler, node: exp.Extract) -> Typed:
    return extract(c, node.this.name, c.compile(node.expression))


@named("date_part", "datepart")
def _date_part_named(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    if not args[0].constant:
        raise UnsupportedSql("the part name of date_part must be a constant string")
    return extract(c, args[0].value.as_py(), args[1])


def _part(name: str):
    def handler(c: ExpressionCompiler, node: exp.Expression) -> Typed:
        return extract(c, name, c.compile(node.this))
    return handler


def epoch_seconds(c: ExpressionCompiler, value: Typed) -> Typed:
    us = micros(c, value)
    return c.call("divide", [c.cast(us, _F64), constant(1e6)], type_=_F64)


def _floor_divide(c: ExpressionCompiler, value: Typed, by: int) -> Typed:
    quotient = c.call("divide", [value, constant(by, _I64)], type_=_I64)
    product = c.call("multiply", [quotient, constant(by, _I64)], type_=_I64)
    behind = c.call("greater", [product, value], type_=pa.bool_())
    return c.case_when([behind], [c.call("subtract", [quotient, constant(1, _I64)], type_=_I64), quotient], "epoch")


@handles(exp.UnixToTime)
def _unix_to_time(c: ExpressionCompiler, node: exp.UnixToTime) -> Typed:
    scale = node.args.get("scale")
    scale = int(scale.this) if isinstance(scale, exp.Literal) else (0 if scale is None else None)
    if scale is None:
        raise UnsupportedSql(f"{node.sql()} is not supported")
    value = c.compile(node.this)
    if pa.types.is_timestamp(value.type) or pa.types.is_date(value.type):
        us = micros(c, value)  # epoch_ms(ts) and friends: the other direction, rounded like DuckDB
        if scale == 6:
            return us
        if scale > 6:
            return c.call("multiply", [us, constant(10 ** (scale - 6), _I64)], type_=_I64)
        factor = 10 ** (6 - scale)
        return _floor_divide(c, c.call("add", [us, constant(factor // 2, _I64)], type_=_I64), factor)
    target = pa.timestamp("us", tz="UTC") if scale == 0 else pa.timestamp("us")
    if pa.types.is_floating(value.type) or pa.types.is_decimal(value.type):
        scaled = c.call("multiply", [c.cast(value, _F64), constant(float(10 ** (6 - scale)))], type_=_F64)
        scaled = c.cast(scaled, _I64)
    else:
        value = c.cast(value, _I64)
        scaled = value if scale == 6 else (c.call("multiply", [value, constant(10 ** (6 - scale), _I64)], type_=_I64)
                                            if scale < 6 else _floor_divide(c, value, 10 ** (scale - 6)))
    if scaled.constant:
        return constant(pa.scalar(scaled.value.as_py(), _I64).cast(target))
    return Typed(scaled.expr.cast(target), target)


def _epoch_named(factor: int):
    def handler(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
        us = micros(c, args[0])
        if factor == 1000:
            return c.call("multiply", [us, constant(1000, _I64)], type_=_I64)
        return us
    return handler


@handles(exp.TimeToStr)
def _strftime(c: ExpressionCompiler, node: exp.TimeToStr) -> Typed:
    fmt = c.compile(node.args["format"])
    if not fmt.constant:
        raise UnsupportedSql("the format of strftime must be a constant string")
    value = c.compile(node.this)
    return strftime(c, value, fmt.value.as_py())


def strftime(c: ExpressionCompiler, value: Typed, fmt: str) -> Typed:
    if "%f" in fmt:
        raise UnsupportedSql("strftime's %f (microseconds) is not supported; use date_part('microsecond', ts)")
    stamp = as_timestamp(c, value)
    whole = c.call("floor_temporal", [stamp], pc.RoundTemporalOptions(1, "second"), stamp.type)
    seconds = pa.timestamp("s", tz=stamp.type.tz)
    whole = Typed(whole.expr.cast(seconds, safe=False), seconds) if not whole.constant else constant(
        pa.scalar(whole.value.value // 1_000_000, pa.int64()).cast(seconds))
    return c.call("strftime", [whole], pc.StrftimeOptions(fmt.replace("%-", "%")), pa.string())


@handles(exp.StrToTime)
def _strptime(c: ExpressionCompiler, node: exp.StrToTime) -> Typed:
    fmt = c.compile(node.args["format"])
    if not fmt.constant:
        raise UnsupportedSql("the format of strptime must be a constant string")
    return strptime(c, c.compile(node.this), fmt.value.as_py(), error_is_null=bool(node.args.get("safe")))


def strptime(c: ExpressionCompiler, value: Typed, fmt: str, error_is_null: bool = False) -> Typed:
    zoned = "%z" in fmt or "%Z" in fmt
    target = pa.timestamp("us", tz="UTC") if zoned else pa.timestamp("us")
    options = pc.StrptimeOptions(fmt, "us", error_is_null=error_is_null)
    return c.call("strptime", [c.cast(value, pa.string())], options, target)


@named("try_strptime")
def _try_strptime_named(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    if not args[1].constant:
        raise UnsupportedSql("the format of try_strptime must be a constant string")
    return strptime(c, args[0], args[1].value.as_py(), error_is_null=True)


@handles(exp.DateAdd, exp.DateSub, exp.TimestampAdd, exp.TimestampSub)
def _date_add(c: ExpressionCompiler, node: exp.Expression) -> Typed:
    value = c.compile(node.this)
    amount = c.compile(node.expression)
    if not pa.types.is_duration(amount.type):
        unit = node.args.get("unit")
        if unit is None:
            raise UnsupportedSql(f"{node.sql()} needs an INTERVAL")
        micros_per = interval_micros(exp.Interval(this=exp.Literal.string("1"), unit=exp.var(unit.name)))
        amount = c.cast(c.call("multiply", [c.cast(amount, _I64), constant(micros_per, _I64)], type_=_I64), pa.duration("us"))
    op = exp.Sub if isinstance(node, (exp.DateSub, exp.TimestampSub)) else exp.Add
    return arith(c, op, value, amount)


@handles(exp.DateDiff)
def _date_diff(c: ExpressionCompiler, node: exp.DateDiff) -> Typed:
    unit = _unit(node.args.get("unit") or "day")
    end, start = c.compile(node.this), c.compile(node.expression)
    kernel = {
        "year": "years_between", "quarter": "quarters_between", "month": "month_interval_between",
        "week": "weeks_between", "day": "days_between", "hour": "hours_between", "minute": "minutes_between",
        "second": "seconds_between", "millisecond": "milliseconds_between", "microsecond": "microseconds_between",
    }[unit]
    if unit == "month":
        years = c.call("years_between", [start, end], type_=_I64)
        months = c.call("subtract", [c.call("month", [end], type_=_I64), c.call("month", [start], type_=_I64)], type_=_I64)
        return c.call("add", [c.call("multiply", [years, constant(12, _I64)], type_=_I64), months], type_=_I64)
    if unit == "week":
        weeks = pc.RoundTemporalOptions(1, "week", week_starts_monday=True)
        first = c.call("floor_temporal", [start], weeks, start.type)
        last = c.call("floor_temporal", [end], weeks, end.type)
        days = c.call("days_between", [first, last], type_=_I64)
        return c.call("divide", [days, constant(7, _I64)], type_=_I64)
    return c.call(kernel, [start, end], type_=_I64)


def arith(c: ExpressionCompiler, op: type, left: Typed, right: Typed) -> Typed:
    """``+`` and ``-`` where a timestamp, date or interval takes part."""
    lt, rt = left.type, right.type
    duration = pa.duration("us")
    if op is exp.Add and pa.types.is_duration(lt) and not pa.types.is_duration(rt):
        left, right, lt, rt = right, left, rt, lt
    if pa.types.is_date(lt) and (pa.types.is_integer(rt)) and op in (exp.Add, exp.Sub):
        days = c.call("add" if op is exp.Add else "subtract", [Typed(left.expr.cast(pa.int32()), pa.int32()) if not left.constant
                       else constant(pa.scalar((left.value.as_py() - dt.date(1970, 1, 1)).days, pa.int32())), c.cast(right, pa.int32())],
                      type_=pa.int32())
        return Typed(days.expr.cast(pa.date32()), pa.date32()) if not days.constant else constant(
            pa.scalar(dt.date(1970, 1, 1) + dt.timedelta(days=days.value.as_py()), pa.date32()))
    if pa.types.is_date(lt) and pa.types.is_date(rt) and op is exp.Sub:
        return c.call("days_between", [right, left], type_=_I64)
    if (pa.types.is_timestamp(lt) or pa.types.is_date(lt)) and pa.types.is_duration(rt) and op in (exp.Add, exp.Sub):
        stamp = as_timestamp(c, left)
        amount = c.cast(right, duration)
        return c.call("add" if op is exp.Add else "subtract", [stamp, amount], type_=stamp.type)
    if pa.types.is_duration(lt) and pa.types.is_duration(rt) and op in (exp.Add, exp.Sub):
        return c.call("add" if op is exp.Add else "subtract", [c.cast(left, duration), c.cast(right, duration)], type_=duration)
    if (pa.types.is_timestamp(lt) or pa.types.is_date(lt)) and (pa.types.is_timestamp(rt) or pa.types.is_date(rt) or sqltypes.is_string(rt)) and op is exp.Sub:
        left, right = c.coerce([as_timestamp(c, left) if not pa.types.is_timestamp(lt) else left,
                                as_timestamp(c, right) if not pa.types.is_timestamp(rt) else right], "timestamp subtraction")
        return c.call("subtract", [left, right], type_=duration)
    if pa.types.is_duration(lt) and sqltypes.is_numeric(rt) and op in (exp.Mul, exp.Div):
        us = Typed(left.expr.cast(_I64), _I64) if not left.constant else constant(left.value.cast(duration).value, _I64)
        scaled = c.call("multiply" if op is exp.Mul else "divide", [c.cast(us, _F64), c.cast(right, _F64)], type_=_F64)
        return Typed(c.cast(scaled, _I64).expr.cast(duration), duration)
    raise SqlError(f"cannot apply {op.__name__.lower()} to {lt} and {rt}; use INTERVAL arithmetic on timestamps")


@named("now", "get_current_timestamp")
def _now(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    return constant(pa.scalar(c.now, pa.timestamp("us", tz="UTC")))


@named("today")
def _today(c: ExpressionCompiler, args: list[Typed], node: exp.Expression) -> Typed:
    return constant(pa.scalar(c.now.date(), pa.date32()))


handles(exp.Year)(_part("year"))
handles(exp.Quarter)(_part("quarter"))
handles(exp.Month)(_part("month"))
handles(exp.Week)(_part("week"))
handles(exp.Day, exp.DayOfMonth)(_part("day"))
handles(exp.DayOfWeek)(_part("dow"))
handles(exp.DayOfWeekIso)(_part("isodow"))
handles(exp.DayOfYear)(_part("doy"))
handles(exp.Hour)(_part("hour"))
handles(exp.Minute)(_part("minute"))
handles(exp.Second)(_part("second"))
handles(exp.TimeToUnix)(lambda c, node: epoch_seconds(c, c.compile(node.this)))
named("epoch_us")(_epoch_named(1))
named("epoch_ns")(_epoch_named(1000))
named("millisecond")(lambda c, args, node: extract(c, "millisecond", args[0]))
named("microsecond")(lambda c, args, node: extract(c, "microsecond", args[0]))
