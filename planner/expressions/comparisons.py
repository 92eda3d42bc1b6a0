"""Comparisons and logic: ``= <> < <= > >=``, IS [NOT] DISTINCT FROM, IS, BETWEEN, IN, LIKE, AND, OR, NOT.

Both sides of a comparison are cast to their common type first; AND and
OR follow SQL's three-valued logic (Arrow's Kleene kernels).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.registry import handles
from planner.expressions.typed import Typed, constant
from storage.errors import SqlError, UnsupportedSql

@handles(exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
def _compare(c: ExpressionCompiler, node: exp.Binary) -> Typed:
    left, right = c.comparable([c.compile(node.this), c.compile(node.expression)], node.sql())
    name = {
        exp.EQ: "equal", exp.NEQ: "not_equal", exp.GT: "greater", exp.GTE: "greater_equal",
        exp.LT: "less", exp.LTE: "less_equal",
    }[type(node)]
    return c.call(name, [left, right], type_=pa.bool_())


@handles(exp.NullSafeEQ, exp.NullSafeNEQ)
def _distinct_from(c: ExpressionCompiler, node: exp.Binary) -> Typed:
    left, right = c.comparable([c.compile(node.this), c.compile(node.expression)], node.sql())
    equal = c.call("equal", [left, right], type_=pa.bool_())
    both_null = c.call("and", [c.is_null(left), c.is_null(right)], type_=pa.bool_())
    same = c.call("or", [c.call("coalesce", [equal, constant(False)], type_=pa.bool_()), both_null],
                     type_=pa.bool_())
    return same if isinstance(node, exp.NullSafeEQ) else c.call("invert", [same], type_=pa.bool_())


@handles(exp.Is)
def _is(c: ExpressionCompiler, node: exp.Is) -> Typed:
    arg = c.compile(node.this)
    target = node.expression
    if isinstance(target, exp.Null):
        return c.is_null(arg)
    if isinstance(target, exp.Boolean):
        arg = c.cast(arg, pa.bool_())
        value = c.call("equal", [arg, constant(bool(target.this))], type_=pa.bool_())
        return c.call("coalesce", [value, constant(False)], type_=pa.bool_())
    raise UnsupportedSql(f"{node.sql()} is not supported; IS takes NULL, TRUE or FALSE")


@handles(exp.And, exp.Or)
def _logic(c: ExpressionCompiler, node: exp.Binary) -> Typed:
    args = [c.cast(c.compile(n), pa.bool_()) for n in (node.this, node.expression)]
    return c.call("and_kleene" if isinstance(node, exp.And) else "or_kleene", args, type_=pa.bool_())


@handles(exp.Not)
def _not(c: ExpressionCompiler, node: exp.Not) -> Typed:
    return c.call("invert", [c.cast(c.compile(node.this), pa.bool_())], type_=pa.bool_())


@handles(exp.Between)
def _between(c: ExpressionCompiler, node: exp.Between) -> Typed:
    value, low, high = c.comparable(
        [c.compile(node.this), c.compile(node.args["low"]), c.compile(node.args["high"])], node.sql()
    )
    lower = c.call("greater_equal", [value, low], type_=pa.bool_())
    upper = c.call("less_equal", [value, high], type_=pa.bool_())
    return c.call("and_kleene", [lower, upper], type_=pa.bool_())


@handles(exp.In)
def _in(c: ExpressionCompiler, node: exp.In) -> Typed:
    if node.args.get("query") is not None:
        raise UnsupportedSql(f"IN with a subquery is not supported yet: {node.sql()}")
    value = c.compile(node.this)
    items = [c.compile(e) for e in node.expressions]
    coerced = c.comparable([value, *items], node.sql())
    value, items = coerced[0], coerced[1:]
    if all(i.constant for i in items):
        present = [i.value.as_py() for i in items if i.value.is_valid]
        values = pa.array(present, value.type if not pa.types.is_null(value.type) else None)
        found = c.call("is_in", [value], pc.SetLookupOptions(values, skip_nulls=True), type_=pa.bool_())
        unknown = constant(pa.scalar(None, pa.bool_()))
        if len(present) < len(items):  # x IN (..., NULL) is NULL rather than FALSE when x is not found
            found = c.call("or_kleene", [found, unknown], type_=pa.bool_())
        return c.case_when([c.is_null(value)], [unknown, found], node.sql())
    result = None
    for item in items:
        equal = c.call("equal", [value, item], type_=pa.bool_())
        result = equal if result is None else c.call("or_kleene", [result, equal], type_=pa.bool_())
    return result


@handles(exp.Escape)
def _escape(c: ExpressionCompiler, node: exp.Escape) -> Typed:
    """``x LIKE p ESCAPE e``: ``e%`` and ``e_`` match a literal ``%`` and ``_``, ``ee`` the escape character."""
    if not isinstance(node.this, (exp.Like, exp.ILike)):
        raise UnsupportedSql(f"ESCAPE applies to LIKE and ILIKE only: {node.sql()[:80]}")
    escape = c.literal_arg(node.expression, "ESCAPE character")
    if not isinstance(escape, str) or len(escape) > 1:
        raise SqlError(f"the ESCAPE of {node.sql()[:80]} must be one character, not {escape!r}")
    return _like(c, node.this, escape or None)


@handles(exp.Like, exp.ILike)
def _like(c: ExpressionCompiler, node: exp.Binary, escape: str | None = None) -> Typed:
    value = c.compile(node.this)
    pattern = c.compile(node.expression)
    if not pattern.constant:
        raise UnsupportedSql(f"the pattern of {node.sql()} must be a constant string")
    if pa.types.is_null(pattern.type) or not pattern.value.is_valid:
        return constant(pa.scalar(None, pa.bool_()))
    text = arrow_like_pattern(pattern.value.as_py(), escape)
    options = pc.MatchSubstringOptions(text, ignore_case=isinstance(node, exp.ILike))
    value = c.cast(value, pa.string())
    result = c.call("match_like", [value], options, type_=pa.bool_())
    if node.args.get("negate"):
        result = c.call("invert", [result], type_=pa.bool_())
    return result


def arrow_like_pattern(pattern: str, escape: str | None) -> str:
    """A SQL LIKE pattern in Arrow's spelling, where a backslash always escapes.

    Without ESCAPE a backslash is an ordinary character, as in DuckDB; with
    it, the escape character makes the character after it literal.
    """
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape:
            if index + 1 >= len(pattern):
                raise SqlError(f"the LIKE pattern {pattern!r} ends with its escape character {escape!r}")
            following = pattern[index + 1]
            out.append("\\" + following if following in "%_" or following == "\\" else following)
            index += 2
            continue
        out.append("\\\\" if char == "\\" else char)
        index += 1
    return "".join(out)
