"""A qualified SELECT turned into a logical plan.

The shape is always the same, each step present only when the query asks
for it::

    Scan | Values -> Filter(WHERE) -> Project(group keys, aggregate inputs)
      -> Aggregate -> Filter(HAVING) -> Project(select list, hidden sort keys)
      -> Aggregate(DISTINCT) -> Sort -> Limit -> Project(output names)

Intermediate columns get internal names (``_g0`` group keys, ``_p0``
aggregate inputs, ``_a0`` aggregates, ``_c0`` select items, ``_o0`` sort
keys that are not selected); the last Project gives the user's names.
"""

from __future__ import annotations

from sqlglot import exp

from planner import aggregates
from planner.logical import (
    AggCall, Aggregate, Filter, Join, Limit, Plan, Project, Sort, SortKey,
)
from planner.windows import add_windows, rewrite_window, take_windows, window_aggregates
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql


def flatten_columns(node: exp.Expression) -> exp.Expression:
    """``alias.column`` references turned into columns named ``"alias.column"`` (a join's column names)."""
    def flat(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column) and n.table:
            identifier = exp.Identifier(this=f"{n.table}.{n.name}", quoted=True)
            identifier.meta.update(n.this.meta if isinstance(n.this, exp.Expression) else {})  # keep its position
            return exp.Column(this=identifier)
        return n

    return node.transform(flat)


def attach_scalars(plan: Plan, scalars: dict[str, Plan], names: set[str] | None = None) -> Plan:
    """Each scalar subquery's one value as a column (a join to at most one row)."""
    for name, sub in scalars.items():
        if names is None or name in names:
            plan = Join(plan, sub, "single")
    return plan


def build(select: exp.Select, output_names: tuple[str, ...], plan: Plan, scalars: dict[str, Plan] | None = None) -> Plan:
    """The plan of ``select`` (its FROM already planned as ``plan``), with output columns ``output_names``."""
    scalars = scalars or {}
    where = select.args.get("where")
    if where is not None:
        _no_aggregates(where.this, "WHERE")

    order = select.args.get("order")
    outputs, ordered, windows = take_windows(list(select.expressions), list(order.expressions) if order is not None else [])
    having = select.args.get("having")
    group = select.args.get("group")
    keys = list(group.expressions) if group is not None else []
    for found in group.find_all(exp.Rollup, exp.Cube, exp.GroupingSets) if group is not None else ():
        kind = {exp.Rollup: "ROLLUP", exp.Cube: "CUBE", exp.GroupingSets: "GROUPING SETS"}[type(found)]
        raise UnsupportedSql(f"GROUP BY {kind} is not supported yet; UNION ALL the groupings instead", *position(found))
    if group is not None and group.args.get("all"):  # GROUP BY ALL: every select item without an aggregate
        window_names = {name for name, _ in windows}
        keys = [e.this if isinstance(e, exp.Alias) else e for e in outputs
                if not any(aggregates.is_aggregate(n) for n in e.find_all(exp.AggFunc, exp.WithinGroup))
                and not any(c.name in window_names for c in e.find_all(exp.Column))]
    for key in keys:
        _no_aggregates(key, "GROUP BY")

    found = [n for e in outputs + [o.this for o in ordered] + ([having.this] if having else [])
             for n in e.find_all(exp.AggFunc, exp.WithinGroup) if aggregates.is_aggregate(n)]
    found += [n for n in window_aggregates(windows) if aggregates.is_aggregate(n)]
    # a scalar subquery joins the rows before aggregation only where they use it
    # (WHERE, GROUP BY, an aggregate's argument); the aggregated rows get their own below
    before = None
    aggregated = bool(keys or found or having is not None)  # HAVING alone makes one group, as in DuckDB
    if aggregated:
        before = {c.name for e in ([where.this] if where is not None else []) + keys + found
                  for c in e.find_all(exp.Column)}
    plan = attach_scalars(plan, scalars, before)
    if where is not None:
        plan = Filter(plan, where.this)
    if aggregated:
        plan, rewrite = _aggregate(plan, keys, found)
        aliases = {e.alias_or_name for e in outputs}
        outputs = [rewrite(e) for e in outputs]
        ordered = [o if _is_alias(o.this, aliases) else
                   exp.Ordered(this=rewrite(o.this), desc=o.args.get("desc"), nulls_first=o.args.get("nulls_first"))
                   for o in ordered]
        windows = [(name, rewrite_window(node, rewrite)) for name, node in windows]
        if scalars:
            used = {c.name for e in outputs + [o.this for o in ordered] + ([having.this] if having else [])
                    + [w for _, w in windows] for c in e.find_all(exp.Column)}
            plan = attach_scalars(plan, scalars, used)
        if having is not None:
            plan = Filter(plan, rewrite(having.this))
    if windows:
        plan = add_windows(plan, windows)

    names = [f"_c{i}" for i in range(len(outputs))]
    exprs = [e.this if isinstance(e, exp.Alias) else e for e in outputs]
    aliases = {}
    for name, node in zip(names, outputs):
        aliases.setdefault(node.alias_or_name, name)
    sort_keys = []
    by_text = {e.sql(): n for n, e in zip(names, exprs)}
    for item in ordered:
        target = item.this
        if _is_alias(target, aliases):
            column = aliases[target.name]
        elif target.sql() in by_text:
            column = by_text[target.sql()]
        elif isinstance(target, exp.Literal) and not target.is_string:
            index = int(target.this)
            if not 1 <= index <= len(names):
                raise SqlError(f"ORDER BY position {index} is not in the select list (1 to {len(names)})", *position(target))
            column = names[index - 1]
        else:  # an expression; the select list's aliases in it read as their expressions (ORDER BY -k)
            column = f"_o{len(sort_keys)}"
            names.append(column)
            exprs.append(target.transform(
                lambda n: exprs[names.index(aliases[n.name])].copy() if _is_alias(n, aliases) else n, copy=False))
        desc = bool(item.args.get("desc"))
        nulls_first = item.args.get("nulls_first")
        sort_keys.append(SortKey(column, desc, bool(nulls_first)))
    plan = Project(plan, tuple(names), tuple(exprs))
    visible = names[: len(outputs)]
    if select.args.get("distinct") is not None:
        if select.args["distinct"].args.get("on"):
            raise UnsupportedSql("DISTINCT ON is not supported yet; use row_number() OVER (PARTITION BY ...) "
                                 "in a subquery", *position(select.args["distinct"].args["on"]))
        if len(names) > len(visible):
            raise SqlError("with SELECT DISTINCT, ORDER BY expressions must appear in the select list")
        plan = Aggregate(plan, tuple(visible), ())
    if sort_keys:
        plan = Sort(plan, tuple(sort_keys))
    limit, offset = _limit(select)
    if limit is not None or offset:
        plan = Limit(plan, limit, offset)
    return Project(plan, tuple(output_names), tuple(exp.column(n, quoted=True) for n in visible))


def _aggregate(plan: Plan, keys: list[exp.Expression], found: list[exp.Expression]):
    """Group keys and aggregate inputs computed, then aggregated; and the rewrite above it."""
    pre_names, pre_exprs = [], []
    by_text: dict[str, str] = {}

    def column_for(node: exp.Expression, prefix: str) -> str:
        text = node.sql()
        if text not in by_text:
            name = f"{prefix}{len(pre_names)}"
            by_text[text] = name
            pre_names.append(name)
            pre_exprs.append(node)
        return by_text[text]

    key_columns = [column_for(k, "_g") for k in keys]
    key_by_text = {k.sql(): n for k, n in zip(keys, key_columns)}
    key_names = list(dict.fromkeys(key_columns))  # GROUP BY a, a groups by a once
    calls: list[AggCall] = []
    call_by_text: dict[str, str] = {}
    for node in found:
        text = node.sql()
        if text in call_by_text:
            continue
        try:
            spec = aggregates.describe(node)
        except SqlError as error:  # placed at the aggregate call
            raise error.located(*position(node)) from None
        if spec.arg is not None:
            _no_aggregates(spec.arg, "an aggregate's argument")
        arg = spec.arg
        if spec.condition is not None:  # COUNT_IF(c): the sum of c's truths (a boolean sums as 1 and 0)
            arg = exp.cast(exp.paren(spec.condition.copy()), exp.DataType.build("BOOLEAN"))
        arg_name = column_for(arg, "_p") if arg is not None else None
        for key in spec.by:
            _no_aggregates(key, "an aggregate's argument")
        by_names = tuple(column_for(key, "_p") for key in spec.by)
        name = f"_a{len(calls)}"
        calls.append(AggCall(name, spec.func, arg_name, spec.params, spec.approximate, spec.distinct, by_names))
        call_by_text[text] = name
    if pre_names:
        plan = Project(plan, tuple(pre_names), tuple(pre_exprs))
    plan = Aggregate(plan, tuple(key_names), tuple(calls))

    def rewrite(node: exp.Expression) -> exp.Expression:
        def replace(n: exp.Expression) -> exp.Expression:
            text = n.sql()
            if text in key_by_text and not isinstance(n, exp.Literal):
                return exp.column(key_by_text[text], quoted=True)
            if text in call_by_text and aggregates.is_aggregate(n):
                return exp.column(call_by_text[text], quoted=True)
            return n

        result = node.copy().transform(replace, copy=False)
        for column in result.find_all(exp.Column):
            if "." in column.name:  # an input column (``alias.column``) neither grouped nor aggregated
                raise SqlError(
                    f"column {column.name.split('.', 1)[1]!r} must appear in GROUP BY or be inside an aggregate function",
                    *position(column),
                )
        return result

    return plan, rewrite


def _is_alias(node: exp.Expression, aliases) -> bool:
    return isinstance(node, exp.Column) and not node.table and node.name in aliases


def _no_aggregates(node: exp.Expression, where: str) -> None:
    for found in node.find_all(exp.AggFunc):
        raise SqlError(f"aggregate {found.sql()} is not allowed in {where}", *position(found))


def _limit(select: exp.Select) -> tuple[int | None, int]:
    def value(node: exp.Expression | None, what: str) -> int | None:
        if node is None:
            return None
        given = node
        if isinstance(node, exp.Fetch):  # FETCH FIRST n ROWS ONLY
            if node.args.get("percent") or node.args.get("with_ties"):
                raise UnsupportedSql(f"{node.sql()} is not supported; use LIMIT n", *position(node))
            node = node.args.get("count") or exp.Literal.number(1)
        node = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
        if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
            return int(node.this)
        raise UnsupportedSql(f"{what} must be a whole number literal, not {node.sql()}", *position(given))

    return value(select.args.get("limit"), "LIMIT"), value(select.args.get("offset"), "OFFSET") or 0
