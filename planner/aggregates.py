"""Aggregate functions: recognising them in SQL and naming what they compute.

Every SQL aggregate becomes one of a small set of functions that the
executor knows how to compute in one pass, or in a partial pass per
fragment and a final merge (see ``engine/query/execution/aggregate.py``):

``count_star count sum avg min max stddev_samp stddev_pop var_samp var_pop
count_distinct quantile_cont quantile_disc approx_count_distinct
approx_quantile bool_and bool_or mode arg_max arg_min string_agg list``

``mode``, ``arg_max``/``arg_min`` (``max_by``/``min_by``), ``string_agg``
(``group_concat``, ``listagg``) and ``list`` (``array_agg``) do not merge
into a small state: each fragment sends its group's values (and the
ordering values beside them), and the final merge picks or joins them.

The approximate aggregates keep mergeable sketches as partial states
(HyperLogLog for ``approx_count_distinct``, KLL for ``approx_quantile``), so
what a fragment sends stays small however many rows it read; their exact
counterparts keep their exact names (``count(DISTINCT ...)``, ``quantile_cont``).
Any aggregate takes DISTINCT (``SUM(DISTINCT x)``): each distinct value counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from sqlglot import exp

from storage.errors import SqlError, UnsupportedSql

FUNCTIONS = (
    "count_star", "count", "sum", "avg", "min", "max", "stddev_samp", "stddev_pop", "var_samp", "var_pop",
    "count_distinct", "quantile_cont", "quantile_disc", "approx_count_distinct", "approx_quantile",
    "bool_and", "bool_or", "mode", "arg_max", "arg_min", "string_agg", "list",
)


@dataclass(frozen=True)
class AggregateSpec:
    """What an aggregate node in the SQL asks for: function, argument, constants."""

    func: str
    arg: exp.Expression | None
    params: tuple = ()
    approximate: bool = False
    condition: exp.Expression | None = None
    distinct: bool = False
    by: tuple[exp.Expression, ...] = ()


_SIMPLE = {
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
    exp.Stddev: "stddev_samp",
    exp.StddevSamp: "stddev_samp",
    exp.StddevPop: "stddev_pop",
    exp.Variance: "var_samp",
    exp.VariancePop: "var_pop",
    exp.LogicalAnd: "bool_and",
    exp.LogicalOr: "bool_or",
}


def is_aggregate(node: exp.Expression) -> bool:
    return isinstance(node, (exp.AggFunc, exp.WithinGroup)) and not isinstance(node.parent, exp.WithinGroup)


def describe(node: exp.Expression) -> AggregateSpec:
    """The aggregate ``node`` stands for; UnsupportedSql for the ones Petrel lacks."""
    if isinstance(node, exp.Filter):
        raise UnsupportedSql(f"aggregate FILTER clauses are not supported yet: {node.sql()}")
    kind = type(node)
    if kind in _SIMPLE:
        distinct = isinstance(node.this, exp.Distinct) and _SIMPLE[kind] not in ("min", "max")
        return AggregateSpec(_SIMPLE[kind], _distinct_arg(node, _SIMPLE[kind]), distinct=distinct)
    if kind is exp.Count:
        arg = node.this
        if arg is None or isinstance(arg, exp.Star):
            return AggregateSpec("count_star", None)
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                raise UnsupportedSql("COUNT(DISTINCT ...) over several columns is not supported yet")
            return AggregateSpec("count_distinct", arg.expressions[0])
        return AggregateSpec("count", arg)
    if kind is exp.CountIf:  # DuckDB sums the truths: NULL when every condition is NULL, or there are no rows
        return AggregateSpec("sum", None, condition=node.this)
    if kind is exp.Mode:
        return AggregateSpec("mode", _distinct_arg(node, "mode"))
    if kind in (exp.ArgMax, exp.ArgMin):
        if isinstance(node.this, exp.Distinct) or node.expression is None or node.args.get("count") is not None:
            raise UnsupportedSql(f"{node.sql()} is not supported; write {node.sql_name().lower()}(value, ordering)")
        return AggregateSpec("arg_max" if kind is exp.ArgMax else "arg_min", node.this, by=(node.expression,))
    if kind in (exp.GroupConcat, exp.ArrayAgg):
        return _ordered_aggregate(node)
    if kind is exp.ApproxDistinct:  # counts distinct values with or without DISTINCT
        return AggregateSpec("approx_count_distinct", _distinct_arg(node, "approx_count_distinct"), approximate=True)
    if kind is exp.Median:
        distinct = isinstance(node.this, exp.Distinct)
        return AggregateSpec("quantile_cont", _distinct_arg(node, "median"), (0.5,), distinct=distinct)
    if kind is exp.ApproxQuantile:
        return AggregateSpec("approx_quantile", _distinct_arg(node, "approx_quantile"),
                             (_fraction(node.args.get("quantile"), node),), approximate=True,
                             distinct=isinstance(node.this, exp.Distinct))
    if kind in (exp.PercentileCont, exp.PercentileDisc, exp.Quantile):
        func = "quantile_disc" if kind in (exp.PercentileDisc, exp.Quantile) else "quantile_cont"
        fraction = node.args.get("expression") if kind is not exp.Quantile else node.args.get("quantile")
        return AggregateSpec(func, _distinct_arg(node, func), (_fraction(fraction, node),),
                             distinct=isinstance(node.this, exp.Distinct))
    if kind is exp.WithinGroup:
        inner = node.this
        if not isinstance(inner, (exp.PercentileCont, exp.PercentileDisc)):
            raise UnsupportedSql(f"{node.sql()} is not supported")
        order = node.expression.expressions if isinstance(node.expression, exp.Order) else []
        if len(order) != 1:
            raise UnsupportedSql("WITHIN GROUP needs exactly one ORDER BY expression")
        fraction = _fraction(inner.this, node)
        if order[0].args.get("desc"):
            fraction = 1.0 - fraction
        func = "quantile_disc" if isinstance(inner, exp.PercentileDisc) else "quantile_cont"
        return AggregateSpec(func, order[0].this, (fraction,))
    if isinstance(node, exp.AggFunc):
        raise UnsupportedSql(f"aggregate function {node.sql_name()}() is not supported")
    raise SqlError(f"{node.sql()} is not an aggregate")


def _ordered_aggregate(node: exp.Expression) -> AggregateSpec:
    """``string_agg(x, sep ORDER BY k, ...)`` and ``list(x ORDER BY k, ...)``.

    Params are (separator, ((descending, nulls first) per ORDER BY key)).
    """
    func = "string_agg" if isinstance(node, exp.GroupConcat) else "list"
    arg, by, directions = node.this, (), ()
    if isinstance(arg, exp.Order):
        keys = arg.expressions
        by = tuple(k.this for k in keys)
        directions = tuple((bool(k.args.get("desc")), bool(k.args.get("nulls_first"))) for k in keys)
        arg = arg.this
    distinct = isinstance(arg, exp.Distinct)
    if distinct:
        if len(arg.expressions) != 1:
            raise UnsupportedSql(f"{func.upper()}(DISTINCT ...) takes one argument: {node.sql()}")
        arg = arg.expressions[0]
        if any(b.sql() != arg.sql() for b in by):
            raise SqlError(f"in an aggregate with DISTINCT, ORDER BY must order by the argument: {node.sql()}")
    if arg is None:
        raise SqlError(f"{node.sql()} needs an argument")
    separator = None
    if func == "string_agg":
        given = node.args.get("separator")
        if given is None:
            separator = ","
        elif isinstance(given, exp.Literal) and given.is_string:
            separator = given.this
        else:
            raise UnsupportedSql(f"the separator of {node.sql()} must be a string literal")
        arg = exp.cast(exp.paren(arg.copy()), exp.DataType.build("VARCHAR"))  # values joined as DuckDB prints them
        if by and distinct:
            by = (arg,)
            directions = directions[:1]
    return AggregateSpec(func, arg, (separator, directions), distinct=distinct, by=by)


def _distinct_arg(node: exp.Expression, name: str) -> exp.Expression:
    """The argument of ``node``, under its DISTINCT if it has one."""
    arg = node.this
    if isinstance(arg, exp.Distinct):
        if len(arg.expressions) != 1:
            raise UnsupportedSql(f"{name.upper()}(DISTINCT ...) takes one argument, not {len(arg.expressions)}: {node.sql()}")
        return arg.expressions[0]
    if arg is None:
        raise SqlError(f"{node.sql()} needs an argument")
    return arg


def _fraction(node: exp.Expression | None, where: exp.Expression) -> float:
    if isinstance(node, exp.Array):
        raise UnsupportedSql(f"quantiles over a list of fractions are not supported yet: {where.sql()}; "
                             "ask for one fraction per aggregate")
    if not isinstance(node, exp.Literal) or node.is_string:
        raise UnsupportedSql(f"the fraction of {where.sql()} must be a number literal")
    value = float(node.this)
    if not 0.0 <= value <= 1.0:
        raise SqlError(f"the fraction of {where.sql()} is {value}; it must lie between 0 and 1")
    return value


def result_type(func: str, arg: pa.DataType | None) -> pa.DataType:
    """The Arrow type an aggregate returns for an argument of type ``arg``.

    TypeError when the function does not take that type.
    """
    if func in ("count_star", "count", "count_distinct", "approx_count_distinct"):
        return pa.int64()
    numeric = arg is not None and (pa.types.is_integer(arg) or pa.types.is_floating(arg) or pa.types.is_decimal(arg))
    if func == "sum":
        if arg is not None and (pa.types.is_boolean(arg) or pa.types.is_null(arg)):
            return pa.int64()
        if not numeric:
            raise TypeError(func)
        if pa.types.is_decimal(arg):  # DuckDB's rule: a sum of DECIMAL(p, s) is DECIMAL(38, s)
            return pa.decimal128(38, arg.scale)
        return pa.int64() if pa.types.is_integer(arg) else pa.float64()
    if func in ("avg", "stddev_samp", "stddev_pop", "var_samp", "var_pop"):
        if not numeric and not (arg is not None and pa.types.is_null(arg)):
            raise TypeError(func)
        return pa.float64()
    if func in ("min", "max", "quantile_disc", "mode", "arg_max", "arg_min"):
        return arg
    if func == "string_agg":
        return pa.string()
    if func == "list":
        return pa.list_(arg if arg is not None else pa.null())
    if func in ("quantile_cont", "approx_quantile"):
        if func == "quantile_cont" and arg is not None and pa.types.is_decimal(arg):  # DuckDB keeps the DECIMAL
            return arg
        if arg is not None and pa.types.is_timestamp(arg):
            return arg
        if arg is not None and pa.types.is_date(arg):
            return pa.timestamp("us")  # between two days lies a moment, as DuckDB has it
        if not numeric:
            raise TypeError(func)
        return pa.float64()
    if func in ("bool_and", "bool_or"):
        return pa.bool_()
    raise TypeError(func)
