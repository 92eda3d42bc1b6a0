"""Constructs read off the parsed query before planning: named windows spelled out, refusals placed.

Some SQL parses into a tree the planner would otherwise read wrongly
rather than refuse: ``LIMIT 50 PERCENT`` looks like ``LIMIT 50``, an
ASOF join like an inner join, ``UNION BY NAME`` like a positional UNION,
a ``GROUPS`` frame like ``ROWS``.  :func:`check_constructs` refuses each
with :class:`UnsupportedSql` at its line and column.  Two constructs are
rewritten into what the planner knows: a window named in a ``WINDOW``
clause (``OVER w``) is copied into every call that names it, ``ORDER BY
ALL`` becomes the ordinals of every output column, and an
aggregate's ``FILTER (WHERE c)`` becomes a CASE on its argument
(``sum(x) FILTER (WHERE c)`` is ``sum(CASE WHEN c THEN x END)``, which is
the same for every aggregate that skips NULLs, as all of Petrel's do).
"""

from __future__ import annotations

from sqlglot import exp

from planner.parse import position
from storage.errors import SqlError, UnsupportedSql


def check_constructs(tree: exp.Expression) -> exp.Expression:
    """``tree`` with named windows spelled out; UnsupportedSql for constructs that would be misread."""
    for select in list(tree.find_all(exp.Select)):
        _spell_out_windows(select)
    for node in list(tree.find_all(exp.Filter)):
        _filter_into_case(node)
    for order in list(tree.find_all(exp.Order)):
        _order_by_all(order)
    for node in tree.walk():
        _refuse(node)
    return tree


def _refuse(node: exp.Expression) -> None:
    if isinstance(node, exp.Join) and (node.args.get("method") or "").upper() in ("ASOF", "POSITIONAL"):
        raise UnsupportedSql(f"{node.args['method'].upper()} JOIN is not supported yet; join on equal keys, "
                             "or pick the nearest row with a correlated subquery", *position(node.this))
    if isinstance(node, (exp.Limit, exp.Fetch)):
        options = node.args.get("limit_options")
        if options is not None and options.args.get("percent"):
            raise UnsupportedSql("LIMIT ... PERCENT is not supported; LIMIT a number of rows", *position(node))
        if options is not None and options.args.get("with_ties"):
            raise UnsupportedSql("FETCH ... WITH TIES is not supported; LIMIT a number of rows", *position(node))
    if isinstance(node, exp.SetOperation) and node.args.get("by_name"):
        raise UnsupportedSql(f"{node.key.upper()} BY NAME is not supported yet; list the columns of each side "
                             "in the same order", *position(node.expression))
    if isinstance(node, exp.WindowSpec):
        if (node.args.get("kind") or "").upper() == "GROUPS":
            raise UnsupportedSql("GROUPS window frames are not supported; use ROWS or RANGE", *position(node.parent))
        exclude = node.args.get("exclude")
        if exclude is not None and exclude.name.upper() != "NO OTHERS":
            raise UnsupportedSql(f"EXCLUDE {exclude.name.upper()} in a window frame is not supported",
                                 *position(node.parent))


def _spell_out_windows(select: exp.Select) -> None:
    """Every ``OVER w`` (and ``OVER (w ORDER BY ...)``) of ``select`` given the definition of ``w``."""
    definitions = {d.this.name.lower(): d for d in select.args.get("windows") or [] if isinstance(d.this, exp.Identifier)}
    if not definitions:
        return
    for window in list(select.find_all(exp.Window)):
        alias = window.args.get("alias")
        if not isinstance(alias, exp.Identifier) or window.args.get("over") is None:
            continue
        definition = definitions.get(alias.name.lower())
        if definition is None:
            raise SqlError(f"window {alias.name!r} is not defined; define it in a WINDOW clause", *position(alias))
        if window.args.get("partition_by") and definition.args.get("partition_by"):
            raise SqlError(f"window {alias.name!r} already has a PARTITION BY", *position(window))
        for key in ("partition_by", "order", "spec"):
            if not window.args.get(key) and definition.args.get(key):
                value = definition.args[key]
                window.set(key, [v.copy() for v in value] if isinstance(value, list) else value.copy())
        window.set("alias", None)
    select.set("windows", None)


def _filter_into_case(node: exp.Filter) -> None:
    """``agg(x) FILTER (WHERE c)`` replaced by ``agg(CASE WHEN c THEN x END)`` (``count(*)`` counts ``1``)."""
    call, where = node.this, node.expression
    if not isinstance(call, exp.AggFunc) or not isinstance(where, exp.Where):
        raise UnsupportedSql(f"FILTER applies to aggregate functions only, not {call.sql()[:60]}", *position(node))
    condition = where.this

    def only_when(value: exp.Expression) -> exp.Expression:
        if isinstance(value, exp.Star):
            value = exp.Literal.number(1)
        return exp.Case(ifs=[exp.If(this=condition.copy(), true=value)])

    call = call.copy()
    target = call.this
    if isinstance(target, exp.Distinct):
        target.set("expressions", [only_when(e) for e in target.expressions])
    elif target is not None:
        call.set("this", only_when(target))
    elif isinstance(call, exp.Count):
        call.set("this", only_when(exp.Star()))
    else:
        raise UnsupportedSql(f"FILTER on {call.sql()[:60]} is not supported", *position(node))
    node.replace(call)


def _order_by_all(order: exp.Order) -> None:
    """``ORDER BY ALL [DESC]`` as ``ORDER BY 1, 2, ...`` (each key with the same direction)."""
    keys = order.expressions
    if len(keys) != 1 or not isinstance(keys[0].this, (exp.Var, exp.Column)) or keys[0].this.name.upper() != "ALL" \
            or (isinstance(keys[0].this, exp.Column) and (keys[0].this.table or keys[0].this.this.quoted)):
        return
    owner = order.parent
    if not isinstance(owner, exp.Select) or any(isinstance(e, exp.Star) or e.find(exp.Star) and not e.find(exp.Count)
                                                for e in owner.expressions):
        raise UnsupportedSql("ORDER BY ALL is supported on a SELECT that lists its columns, not * or a set operation",
                             *position(order))
    template = keys[0]
    order.set("expressions", [exp.Ordered(this=exp.Literal.number(i + 1), desc=template.args.get("desc"),
                                          nulls_first=template.args.get("nulls_first"))
                              for i in range(len(owner.expressions))])
