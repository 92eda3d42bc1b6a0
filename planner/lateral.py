"""LATERAL subqueries in FROM: a subquery run for each row of what precedes it, as a join.

``FROM t, LATERAL (SELECT ... WHERE u.k = t.k) x`` is decorrelated like a
subquery in an expression (see :mod:`planner.decorrelate`): the subquery is
evaluated once per distinct value of the outer columns it reads (its
*domain*), with those values joined into its FROM, and its rows join back
to the outer rows on the domain columns (NULL matching NULL).

- Rows without aggregates join as they are: an inner join for ``,`` /
  ``CROSS JOIN LATERAL`` / ``JOIN LATERAL ... ON c``, a left join for
  ``LEFT JOIN LATERAL ... ON true``.  ``ORDER BY ... LIMIT n [OFFSET m]``
  keeps the first rows of each domain value (a ``row_number()`` per domain
  value, in QUALIFY), which is the top-n-per-group shape LATERAL is
  written for.
- ``GROUP BY`` groups by the domain too.
- Aggregates without GROUP BY give one row per outer row even over no
  rows (COUNT 0, the others NULL), as a scalar subquery does.

An uncorrelated LATERAL subquery is an ordinary derived table.
"""

from __future__ import annotations

from sqlglot import exp

from planner.build import flatten_columns
from planner.decorrelate import aggregates_of, outer_references, over_groups, qualified, unsupported
from planner.joins import column
from planner.logical import Filter, Join, Plan, Project
from storage.errors import UnsupportedSql

__all__ = ["lateral_join"]


def lateral_join(builder, plan: Plan, node: exp.Lateral, ctes, side: str, on: list[exp.Expression]) -> Plan:
    """``plan`` joined with the LATERAL subquery ``node`` (``side`` '' or 'LEFT'; ``on`` its ON conditions)."""
    alias = node.alias
    query = node.this.this
    if side not in ("", "LEFT"):
        raise unsupported(f"{side} JOIN LATERAL is not supported; use JOIN LATERAL or LEFT JOIN LATERAL", node)
    conditions = [flatten_columns(c) for c in on if not (isinstance(c, exp.Boolean) and c.this)]
    if side == "LEFT" and conditions:
        raise unsupported("LEFT JOIN LATERAL takes ON true; move the condition into the subquery", node)
    if not isinstance(query, exp.Select):
        raise unsupported("a LATERAL set operation is not supported; write each side as its own LATERAL", node)
    names = [item.alias_or_name for item in query.expressions]
    if not outer_references(query):
        right = builder.query(query, ctes)
        right = Project(right, tuple(f"{alias}.{c}" for c in right.columns), tuple(column(c) for c in right.columns))
        joined = Join(plan, right, "left" if side else "cross")
        return Filter(joined, _and(conditions)) if conditions else joined
    if query.args.get("qualify") or any(True for item in query.expressions for _ in item.find_all(exp.Window)):
        raise unsupported("a window function or QUALIFY in a correlated LATERAL subquery is not supported", node)
    if query.args.get("distinct") is not None and query.args["distinct"].args.get("on"):
        raise unsupported("DISTINCT ON in a correlated LATERAL subquery is not supported", node)
    grouped = query.args.get("group") is not None
    aggregates = [a for item in query.expressions for a in aggregates_of(item.unalias())]
    if aggregates and not grouped:
        result = _aggregated(builder, plan, query, ctes, alias, names)
    else:
        result = _rows(builder, plan, query, ctes, alias, names, side)
    return Filter(result, _and(conditions)) if conditions else result


def _aggregated(builder, plan: Plan, query: exp.Select, ctes, alias: str, names: list[str]) -> Plan:
    """Aggregates without GROUP BY: one row per outer row, the empty set's values where nothing matched."""
    if query.args.get("having") is not None or query.args.get("offset") is not None:
        raise unsupported("HAVING or OFFSET over an aggregate without GROUP BY in LATERAL is not supported", query)
    if any(True for item in query.expressions for _ in _outside_aggregates(item.unalias()).find_all(
            exp.Subquery, exp.Exists)):
        raise unsupported("a subquery outside the aggregates of a LATERAL subquery is not supported", query)
    selected = [item.unalias() for item in query.expressions]
    per_item = [aggregates_of(item) for item in selected]
    domain, outer, inner = builder.domain_of(plan, query)
    inner_items = [item.unalias() for item in inner.expressions]
    keys = [builder.fresh("_x") for _ in outer]
    agg_names = [[builder.fresh("_s") for _ in found] for found in per_item]
    inner_aggregates = [aggregates_of(item) for item in inner_items]
    inner.set("expressions", [qualified(f"k{i}", domain).as_(k, quoted=True) for i, k in enumerate(keys)]
              + [a.copy().as_(n, quoted=True) for found, ns in zip(inner_aggregates, agg_names) for a, n in zip(found, ns)])
    inner.set("group", exp.Group(expressions=[qualified(f"k{i}", domain) for i in range(len(keys))]))
    for part in ("order", "limit"):
        inner.set(part, None)
    flat = [n for ns in agg_names for n in ns]
    right = builder.query(inner, ctes, (*keys, *flat))
    joined = builder.join_back(plan, outer, right, keys)
    values = [flatten_columns(over_groups(item, found, ns)) for item, found, ns in zip(selected, per_item, agg_names)]
    return Project(joined, (*plan.columns, *(f"{alias}.{n}" for n in names)),
                   (*(column(c) for c in plan.columns), *values))


def _rows(builder, plan: Plan, query: exp.Select, ctes, alias: str, names: list[str], side: str) -> Plan:
    """Rows (grouped or not) per domain value, joined back on the domain columns."""
    domain, outer, inner = builder.domain_of(plan, query)
    keys = [builder.fresh("_x") for _ in outer]
    values = [builder.fresh("_l") for _ in names]
    marker = builder.fresh("_m")
    domain_columns = [qualified(f"k{i}", domain) for i in range(len(keys))]
    by_alias = {name: item.unalias() for name, item in zip(names, inner.expressions)}
    inner.set("expressions", [d.copy().as_(k, quoted=True) for d, k in zip(domain_columns, keys)]
              + [item.unalias().copy().as_(v, quoted=True) for item, v in zip(inner.expressions, values)]
              + [exp.true().as_(marker, quoted=True)])
    if inner.args.get("group") is not None:
        inner.set("group", exp.Group(expressions=list(inner.args["group"].expressions) + [d.copy() for d in domain_columns]))
    limit, offset = inner.args.get("limit"), inner.args.get("offset")
    order = inner.args.get("order")
    if limit is not None or offset is not None:  # the first rows of each domain value
        first = _count(offset) if offset is not None else 0
        count = _count(limit) if limit is not None else None
        if order is not None:  # an ORDER BY naming a select item orders by its expression
            order = order.copy().transform(lambda n: by_alias[n.name].copy() if isinstance(n, exp.Column)
                                           and not n.table and n.name in by_alias else n)
        over = exp.Window(this=exp.RowNumber(), partition_by=[d.copy() for d in domain_columns], order=order)
        test = exp.GT(this=over, expression=exp.Literal.number(first))
        if count is not None:
            test = exp.and_(test, exp.LTE(this=over.copy(), expression=exp.Literal.number(first + count)))
        inner.set("qualify", exp.Qualify(this=test))
    for part in ("order", "limit", "offset"):
        inner.set(part, None)
    right = builder.query(inner, ctes, (*keys, *values, marker))
    # a left join on the domain (NULL matching NULL); an inner LATERAL keeps the outer rows that found rows
    joined: Plan = Join(plan, right, "left", tuple(outer), tuple(keys), null_equal=True)
    if side != "LEFT":
        joined = Filter(joined, exp.Not(this=exp.Is(this=column(marker), expression=exp.Null())))
    return Project(joined, (*plan.columns, *(f"{alias}.{n}" for n in names)),
                   (*(column(c) for c in plan.columns), *(column(v) for v in values)))


def _count(node: exp.Expression) -> int:
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    raise UnsupportedSql(f"LIMIT and OFFSET in LATERAL must be whole number literals, not {value.sql()}")


def _outside_aggregates(node: exp.Expression) -> exp.Expression:
    outside = node.copy()
    for found in aggregates_of(outside):
        found.replace(exp.Null())
    return outside


def _and(conditions: list[exp.Expression]) -> exp.Expression:
    return exp.and_(*conditions) if len(conditions) > 1 else conditions[0]
