"""Window functions in a SELECT: taken out of the select list, computed by Window operators.

Each ``f(...) OVER (...)`` becomes a column ``_w0``, ``_w1``... that the
select list reads.  Below the Window operators one Project computes every
argument, PARTITION BY and ORDER BY expression as a plain column; calls
sharing a PARTITION BY share one Window operator (and, distributed, one
shuffle on those keys).
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from sqlglot import exp

from planner import aggregates, time_units
from planner.logical import Plan, Project, SortKey, Window, WindowCall
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql

RANKING = {exp.RowNumber: "row_number", exp.Rank: "rank", exp.DenseRank: "dense_rank", exp.Ntile: "ntile",
           exp.PercentRank: "percent_rank", exp.CumeDist: "cume_dist"}
VALUE = {exp.Lag: "lag", exp.Lead: "lead", exp.FirstValue: "first_value", exp.LastValue: "last_value",
         exp.NthValue: "nth_value"}
AGGREGATE = {exp.Sum: "sum", exp.Avg: "avg", exp.Count: "count", exp.Min: "min", exp.Max: "max"}


def take_windows(outputs: list[exp.Expression], ordered: list[exp.Ordered]):
    """The select list and ORDER BY with window calls replaced by ``_wN`` columns, and the calls."""
    windows: list[tuple[str, exp.Window]] = []

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Window):
            name = f"_w{len(windows)}"
            windows.append((name, node.copy()))
            return exp.Column(this=exp.Identifier(this=name, quoted=True))
        return node

    outputs = [e.transform(replace) for e in outputs]
    ordered = [o.transform(replace) for o in ordered]
    return outputs, ordered, windows


def window_aggregates(windows: list[tuple[str, exp.Window]]) -> list[exp.Expression]:
    """Group aggregates used inside window calls (``rank() OVER (ORDER BY sum(x))``)."""
    found = []
    for _, node in windows:
        for part in _parts(node):
            found.extend(n for n in part.find_all(exp.AggFunc))
    return found


def _parts(node: exp.Window) -> list[exp.Expression]:
    parts = [a for a in node.this.iter_expressions()]
    parts += list(node.args.get("partition_by") or [])
    order = node.args.get("order")
    if order is not None:
        parts += [o.this for o in order.expressions]
    return parts


def rewrite_window(node: exp.Window, rewrite: Callable[[exp.Expression], exp.Expression]) -> exp.Window:
    """The window call with ``rewrite`` applied to its arguments, partition and order (not the call itself)."""
    node = node.copy()
    func = node.this
    for key, value in list(func.args.items()):
        if isinstance(value, exp.Expression):
            func.set(key, rewrite(value))
    node.set("partition_by", [rewrite(p) for p in node.args.get("partition_by") or []])
    order = node.args.get("order")
    if order is not None:
        node.set("order", exp.Order(expressions=[
            exp.Ordered(this=rewrite(o.this), desc=o.args.get("desc"), nulls_first=o.args.get("nulls_first"))
            for o in order.expressions]))
    return node


def _bound(value, side, kind: str = "rows") -> int | float | dt.timedelta | None:
    """A frame bound as a signed offset: None for UNBOUNDED, 0 for CURRENT ROW.

    ROWS offsets count rows; RANGE offsets are distances on the ORDER BY key
    (a number, or an INTERVAL of fixed length in microseconds).
    """
    if value is None or (isinstance(value, str) and value.upper() == "UNBOUNDED"):
        return None
    if isinstance(value, str) and value.upper() == "CURRENT ROW":
        return 0
    sign = -1 if (side or "").lower() == "preceding" else 1
    if isinstance(value, exp.Literal) and not value.is_string:
        if kind == "range":
            amount = float(value.this)
            amount = int(amount) if amount.is_integer() else amount
        else:
            if not value.this.isdigit():
                raise SqlError(f"a ROWS frame offset must be a whole number of rows, not {value.sql()}")
            amount = int(value.this)
        if amount < 0:
            raise SqlError(f"a window frame offset must not be negative: {value.sql()}")
        return sign * amount
    if isinstance(value, exp.Interval) and kind == "range":
        unit = time_units.unit(value.text("unit") or "day")
        if unit not in time_units.MICROS:
            raise UnsupportedSql(f"RANGE frame offset {value.sql()} is not supported; use a unit of fixed length "
                                 "(week, day, hour, minute, second, ...)")
        amount = float(value.this.this) if isinstance(value.this, exp.Literal) else None
        if amount is None or amount < 0:
            raise SqlError(f"a RANGE frame offset must be a positive constant, not {value.sql()}")
        return sign * dt.timedelta(microseconds=int(round(amount * time_units.MICROS[unit])))
    raise UnsupportedSql(f"window frame bound {value.sql() if isinstance(value, exp.Expression) else value} is not "
                         "supported; use a number (or, in a RANGE frame, a fixed-length INTERVAL)")


def _frame(node: exp.Window, keys: tuple[SortKey, ...]) -> tuple[str, int | float | None, int | float | None]:
    spec = node.args.get("spec")
    has_order = bool(keys)
    if spec is None:
        return ("range", None, 0) if has_order else ("rows", None, None)
    kind = (spec.args.get("kind") or "range").lower()
    if kind not in ("rows", "range", "groups"):
        raise UnsupportedSql(f"{kind.upper()} window frames are not supported; use ROWS, RANGE or GROUPS")
    start = _bound(spec.args.get("start"), spec.args.get("start_side"), kind)
    end_value = spec.args.get("end")
    end = _bound(end_value, spec.args.get("end_side"), kind) if end_value is not None else 0
    if kind == "range" and (start not in (None, 0) or end not in (None, 0)) and len(keys) != 1:
        raise SqlError("a RANGE frame with an offset needs exactly one ORDER BY expression")
    if kind in ("range", "groups") and not has_order:  # one peer group: the whole partition
        return ("rows", None, None)
    return kind, start, end


def add_windows(plan: Plan, windows: list[tuple[str, exp.Window]]) -> Plan:
    """``plan`` with one column per window call, computed by Window operators."""
    names = list(plan.columns)
    exprs: list[exp.Expression] = [exp.Column(this=exp.Identifier(this=n, quoted=True)) for n in names]
    by_text: dict[str, str] = {}

    def column_for(node: exp.Expression) -> str:
        if isinstance(node, exp.Column) and node.name in plan.columns:
            return node.name
        text = node.sql()
        if text not in by_text:
            by_text[text] = f"_wx{len(by_text)}"
            names.append(by_text[text])
            exprs.append(node)
        return by_text[text]

    groups: dict[tuple[str, ...], list[WindowCall]] = {}
    for name, node in windows:
        try:
            call = _call(name, node, column_for)
        except SqlError as error:  # placed at the window call when it has no place yet
            located = error.located(*position(node))
            if located is error:
                raise
            raise located from None
        groups.setdefault(call.partition, []).append(call)
    plan = Project(plan, tuple(names), tuple(exprs))
    for calls in groups.values():
        plan = Window(plan, tuple(calls))
    return plan


def _call(name: str, node: exp.Window, column_for: Callable[[exp.Expression], str]) -> WindowCall:
    """The WindowCall computing ``node``, its columns named by ``column_for``."""
    func = node.this
    if isinstance(func, exp.IgnoreNulls) or isinstance(func, exp.RespectNulls):
        raise UnsupportedSql("IGNORE NULLS / RESPECT NULLS in window functions is not supported")
    partition = tuple(column_for(p) for p in node.args.get("partition_by") or [])
    order = node.args.get("order")
    keys = tuple(
        SortKey(column_for(o.this), bool(o.args.get("desc")), bool(o.args.get("nulls_first")))
        for o in (order.expressions if order is not None else [])
    )
    frame = _frame(node, keys)
    args: tuple[str, ...] = ()
    params: tuple = ()
    kind = type(func)
    if kind in RANKING:
        fname = RANKING[kind]
        if fname == "ntile":
            params = (_constant_int(func.this, "NTILE's bucket count"),)
    elif kind in VALUE:
        fname = VALUE[kind]
        args = (column_for(func.this),)
        if fname in ("lag", "lead"):
            offset = func.args.get("offset")
            default = func.args.get("default")
            params = (_constant_int(offset, "the LAG/LEAD offset") if offset is not None else 1,)
            if default is not None:
                args += (column_for(default),)
        elif fname == "nth_value":
            params = (_constant_int(func.args.get("offset"), "NTH_VALUE's position"),)
            if params[0] < 1:
                raise SqlError(f"NTH_VALUE's position must be 1 or more, not {params[0]}")
    elif kind in AGGREGATE:
        fname = AGGREGATE[kind]
        target = func.this
        if isinstance(target, exp.Distinct):
            raise UnsupportedSql("DISTINCT inside a window aggregate is not supported")
        if fname == "count" and (target is None or isinstance(target, exp.Star)):
            fname = "count_star"
        else:
            args = (column_for(target),)
    elif kind in (exp.Median, exp.PercentileCont, exp.PercentileDisc, exp.Quantile, exp.Mode, exp.ArgMax, exp.ArgMin,
                  exp.GroupConcat, exp.ArrayAgg):
        spec = aggregates.describe(func)
        if spec.distinct:
            raise UnsupportedSql("DISTINCT inside a window aggregate is not supported")
        if frame[1:] != (None, None):
            named = {exp.GroupConcat: "STRING_AGG", exp.ArrayAgg: "LIST"}.get(kind, func.sql_name().upper())
            raise UnsupportedSql(f"{named} over a moving window frame is not supported; "
                                 "use it over whole partitions (OVER (PARTITION BY ...) without ORDER BY)")
        fname, params = spec.func, spec.params
        args = (column_for(spec.arg), *(column_for(key) for key in spec.by))
    else:
        raise UnsupportedSql(f"window function {func.sql()[:60]} is not supported")
    return WindowCall(name, fname, args, params, partition, keys, frame)


def _constant_int(node: exp.Expression, what: str) -> int:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.lstrip("-").isdigit():
        return int(node.this)
    raise SqlError(f"{what} must be a whole number, not {node.sql() if node is not None else 'nothing'}")
