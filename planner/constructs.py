"""Constructs read off the parsed query before planning: named windows spelled out, refusals placed.

Some SQL parses into a tree the planner would otherwise read wrongly
rather than refuse: ``LIMIT 50 PERCENT`` looks like ``LIMIT 50``, an
ASOF join like an inner join, ``UNION BY NAME`` like a positional UNION,
and an EXCLUDE clause as if absent.  :func:`check_constructs` refuses each
with :class:`UnsupportedSql` at its line and column.  Two constructs are
rewritten into what the planner knows: a window named in a ``WINDOW``
clause (``OVER w``) is copied into every call that names it, ``ORDER BY
ALL`` becomes the ordinals of every output column, and an
aggregate's ``FILTER (WHERE c)`` becomes a CASE on its argument
(``sum(x) FILTER (WHERE c)`` is ``sum(CASE WHEN c THEN x END)``, which is
the same for every aggregate that skips NULLs, as all of Petrel's do).
"""

from __future__ import annotations

import itertools

from sqlglot import exp

from planner.parse import position
from planner.quantified import rewrite_rows_and_quantifiers
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
    return rewrite_rows_and_quantifiers(tree)


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


def qualify_as_where(select: exp.Select) -> exp.Select:
    """A qualified SELECT with QUALIFY as a filter over it: ``SELECT <outputs> FROM (<select + condition>) WHERE
    condition``, with DISTINCT, ORDER BY and LIMIT moved outside (QUALIFY comes before them, as in DuckDB)."""
    clause = select.args["qualify"]
    inner = select.copy()
    for key in ("qualify", "order", "limit", "offset", "distinct", "with", "with_"):
        inner.set(key, None)
    names = [e.alias_or_name for e in inner.expressions]
    if any(not n or n == "_qualify" or isinstance(e, exp.Star) for n, e in zip(names, inner.expressions)) \
            or len(set(names)) != len(names):
        raise UnsupportedSql("QUALIFY needs select items with distinct names; give each an alias", *position(clause))
    inner.append("expressions", exp.alias_(clause.this.copy(), "_qualify", quoted=True))
    outer = exp.select(*[exp.alias_(exp.column(n, table="_q", quoted=True), n, quoted=True) for n in names])
    outer = outer.from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("_q", quoted=True))))
    outer = outer.where(exp.column("_qualify", table="_q", quoted=True))
    order = select.args.get("order")
    if order is not None:
        keys = []
        for key in order.expressions:
            target = key.this
            if isinstance(target, exp.Column) and not target.table and target.name in names:
                target = exp.column(target.name, table="_q", quoted=True)
            elif not (isinstance(target, exp.Literal) and not target.is_string):
                raise UnsupportedSql("with QUALIFY, ORDER BY may name only output columns (by alias or ordinal)",
                                     *position(key))
            keys.append(exp.Ordered(this=target, desc=key.args.get("desc"), nulls_first=key.args.get("nulls_first")))
        outer.set("order", exp.Order(expressions=keys))
    for key in ("limit", "offset", "distinct"):
        if select.args.get(key) is not None:
            outer.set(key, select.args[key].copy())
    return outer


def has_grouping_sets(select: exp.Select) -> bool:
    group = select.args.get("group")
    return group is not None and any(isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions)


def grouping_sets_as_union(select: exp.Select) -> exp.Expression:
    """A qualified SELECT with ROLLUP, CUBE or GROUPING SETS as the UNION ALL of one SELECT per grouping set.

    In the branch of a set, the keys outside it read as NULL (outside
    aggregates) and ``GROUPING(k, ...)`` is the bitmask of the keys left
    out; ORDER BY and LIMIT apply to the union.
    """
    group = select.args["group"]
    if select.args.get("distinct"):
        raise UnsupportedSql("SELECT DISTINCT with ROLLUP, CUBE or GROUPING SETS is not supported", *position(group))
    sets: list[list[exp.Expression]] = [[e for e in group.expressions
                                         if not isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets))]]
    for item in group.expressions:
        if isinstance(item, exp.Rollup):
            options = [item.expressions[:i] for i in range(len(item.expressions), -1, -1)]
        elif isinstance(item, exp.Cube):
            options = [list(c) for size in range(len(item.expressions), -1, -1)
                       for c in itertools.combinations(item.expressions, size)]
        elif isinstance(item, exp.GroupingSets):
            options = [list(o.expressions) if isinstance(o, exp.Tuple) else [o.this if isinstance(o, exp.Paren) else o]
                       for o in item.expressions]
        else:
            continue
        sets = [known + option for known in sets for option in options]
    keys = {k.sql(): k for found in sets for k in found}
    if len(sets) > 64:
        raise UnsupportedSql(f"these grouping sets make {len(sets)} groupings; at most 64 are supported",
                             *position(group))
    branches = [_grouping_branch(select, found, keys) for found in sets]
    union = branches[0]
    for branch in branches[1:]:
        union = exp.Union(this=union, expression=branch, distinct=False)
    for key in ("order", "limit", "offset"):
        if select.args.get(key) is not None:
            union.set(key, select.args[key].copy())
    return union


def _grouping_branch(select: exp.Select, found: list[exp.Expression], keys: dict[str, exp.Expression]) -> exp.Select:
    kept = {k.sql() for k in found}
    absent = {text for text in keys if text not in kept}
    branch = select.copy()
    for key in ("order", "limit", "offset", "with", "with_"):
        branch.set(key, None)
    unique = list({k.sql(): k for k in found}.values())
    branch.set("group", exp.Group(expressions=[k.copy() for k in unique]) if unique
               else (None if _aggregates_in(branch) else exp.Group(expressions=[exp.Literal.string("()")])))

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Grouping):
            bits = 0
            for argument in node.expressions:
                bits = bits * 2 + (1 if argument.sql() in absent else 0)
            return exp.Literal.number(bits)
        if node.sql() in absent and node.find_ancestor(exp.AggFunc) is None:
            return exp.Null()
        return node

    branch.set("expressions", [e.transform(replace) for e in branch.expressions])
    if branch.args.get("having") is not None:
        branch.set("having", branch.args["having"].transform(replace))
    return branch


def _aggregates_in(select: exp.Select) -> bool:
    return any(n for e in select.expressions for n in e.find_all(exp.AggFunc))
