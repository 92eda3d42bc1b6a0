"""Subqueries as joins: the cheap shapes directly, every other one through :mod:`planner.decorrelate`.

A WHERE conjunct ``EXISTS (q)`` becomes a semi join and ``NOT EXISTS`` an
anti join of the query so far with ``q``, whose conditions on outer
columns (correlation) become the join's conditions; ``x IN (q)`` adds
``x = q's column`` to those, and ``NOT IN`` is an anti join with SQL's NULL
rules.  A correlated scalar subquery whose outer references are
equalities has its aggregates computed once per correlation key (GROUP BY
those keys), LEFT-joined on them, and its expression evaluated over them
in the outer query, so a key with no rows sees COUNT = 0 and the other
aggregates NULL.

Every other subquery (under OR or NOT, in the select list, a CASE, HAVING
or ORDER BY; with non-equality or nested correlation; with aggregates in
EXISTS) is unnested over its domain of outer values by
:mod:`planner.decorrelate` into a joined column or mark.  An aggregating
select whose select list, HAVING or ORDER BY holds one is split first, so
the subquery reads the group keys and aggregates as columns.
"""

from __future__ import annotations

from sqlglot import exp

from planner import predicates
from planner.build import build, flatten_columns
from planner.decorrelate import (
    SubqueryColumns, column, defined_aliases, is_correlated, over_groups, subquery_nodes, unsupported,
)
from planner.logical import Filter, Plan
from storage.errors import SqlError, UnsupportedSql


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    return list(predicates.conjuncts(node))


def and_all(nodes: list[exp.Expression]) -> exp.Expression | None:
    result = None
    for node in nodes:
        result = node if result is None else exp.And(this=result, expression=node)
    return result


def outer_columns(node: exp.Expression) -> list[exp.Column]:
    """Columns inside ``node`` that belong to an enclosing query (correlation)."""
    inner = defined_aliases(node)
    return [c for c in node.find_all(exp.Column) if c.table and c.table not in inner]


def _lifted(node: exp.Expression) -> bool:
    """Whether ``node`` is an uncorrelated scalar subquery, which the select's lift joins as one row."""
    return isinstance(node, exp.Subquery) and not is_correlated(node)


def _aggregated(select: exp.Select) -> bool:
    """Whether ``select`` groups its rows (GROUP BY, or an aggregate of its own outside window functions)."""
    if select.args.get("group") is not None:
        return True
    parts = list(select.expressions) + ([select.args["having"]] if select.args.get("having") else [])
    order = select.args.get("order")
    parts += [o.this for o in order.expressions] if order is not None else []
    for part in parts:
        for found in part.find_all(exp.AggFunc):
            if found.find_ancestor(exp.Select) is select and found.find_ancestor(exp.Window) is None:
                return True
    return False


class SubqueryMixin(SubqueryColumns):
    """The subquery half of :class:`planner.relational.QueryBuilder`.

    WHERE conditions joined by AND that are EXISTS / IN (or their
    negations) become semi and anti joins, and scalar subqueries with
    equality correlation joins to their aggregates per correlation key;
    every other subquery (under OR or NOT, in the select list, CASE,
    HAVING or ORDER BY, with any correlation) is unnested by
    :mod:`planner.decorrelate` into a joined column.
    """

    def _subquery_conditions(self, plan: Plan, conditions: list[exp.Expression], ctes) -> tuple[Plan, list[exp.Expression]]:
        remaining = []
        for condition in conditions:
            negated = isinstance(condition, exp.Not)
            inner = condition.this if negated else condition
            if isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Exists) or (isinstance(inner, exp.In) and inner.args.get("query") is not None):
                try:
                    if isinstance(inner, exp.Exists):
                        plan = self._semi(plan, inner.this, [], "anti" if negated else "semi", ctes)
                    else:
                        query = inner.args["query"]
                        query = query.this if isinstance(query, exp.Subquery) else query
                        plan = self._semi(plan, query, [inner.this], "anti_in" if negated else "semi", ctes)
                    continue
                except UnsupportedSql:  # a shape the semi join cannot take: a mark join can
                    pass
            found = subquery_nodes(condition)
            if not found:
                remaining.append(condition)
                continue
            if all(isinstance(n, exp.Subquery) for n in found):  # scalar subqueries only
                try:
                    plan, changed = self._correlated_scalars(plan, condition.copy(), ctes)
                    remaining.append(changed)
                    continue
                except UnsupportedSql:  # not an equality correlation: unnest over the outer values
                    pass
            plan, condition = self.attach_subqueries(plan, condition, ctes, keep=_lifted)
            remaining.append(condition)
        return plan, remaining

    def _select_subqueries(self, plan: Plan, body: exp.Select, ctes) -> tuple[Plan, exp.Select]:
        """Subqueries of the select list, HAVING and ORDER BY that a one-row lift cannot take, as joined columns.

        An aggregating select is split in two first: its grouping becomes a
        derived plan, and the subqueries read its keys and aggregates.
        """
        order = body.args.get("order")
        having = body.args.get("having")
        parts = list(body.expressions) + ([o for o in order.expressions] if order is not None else []) \
            + ([having] if having is not None else [])
        if all(_lifted(n) for part in parts for n in subquery_nodes(part)):
            return plan, body
        plan = self._filter_where(plan, body, ctes)
        if _aggregated(body):
            group = body.args.get("group")
            for key in group.expressions if group is not None else []:
                if subquery_nodes(key):
                    raise unsupported("GROUP BY a subquery is not supported; group in an outer query", key)
            for part in parts:  # a subquery inside an aggregate's argument is joined to the rows it aggregates
                for call in list(part.find_all(exp.AggFunc)):
                    if call.find_ancestor(exp.Select) is body and subquery_nodes(call):
                        plan, _ = self.attach_subqueries(plan, call, ctes)
            plan, body = self._split_grouping(plan, body, ctes)
            plan = self._filter_where(plan, body, ctes)  # what was HAVING
        for item in list(body.expressions) + (list(body.args["order"].expressions) if body.args.get("order") else []):
            plan, _ = self.attach_subqueries(plan, item, ctes)
        return plan, body

    def _filter_where(self, plan: Plan, body: exp.Select, ctes) -> Plan:
        """``body``'s WHERE applied to ``plan`` (its subqueries joined first), and taken off ``body``."""
        where = body.args.get("where")
        if where is None:
            return plan
        plan, condition = self.attach_subqueries(plan, where.this, ctes)
        body.set("where", None)
        return Filter(plan, flatten_columns(condition))

    def _split_grouping(self, plan: Plan, body: exp.Select, ctes) -> tuple[Plan, exp.Select]:
        """``body``'s WHERE, GROUP BY and aggregates as a plan of their own, and ``body`` reading its columns."""
        group = body.args.get("group")
        if group is not None and (group.args.get("all") or any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets"))):
            raise unsupported("GROUP BY ALL, ROLLUP, CUBE or GROUPING SETS beside a correlated subquery is not supported", group)
        if any(body.find_all(exp.Window)):
            raise unsupported("window functions beside a correlated subquery in an aggregating select are not supported",
                              next(body.find_all(exp.Window)))
        alias = self.fresh("_g")
        keys = list(group.expressions) if group is not None else []
        key_names = {}
        for key in keys:
            key_names.setdefault(key.sql(), f"k{len(key_names)}")
        calls: dict[str, tuple[str, exp.Expression]] = {}  # the select's aggregates by their SQL
        having = body.args.get("having")
        order = body.args.get("order")
        parts = list(body.expressions) + ([having.this] if having is not None else []) \
            + ([o.this for o in order.expressions] if order is not None else [])
        for part in parts:
            for found in part.find_all(exp.AggFunc):
                if found.find_ancestor(exp.AggFunc) is None and found.find_ancestor(exp.Select) is body:
                    calls.setdefault(found.sql(), (f"a{len(calls)}", found))
        first_key = {}
        for key in keys:
            first_key.setdefault(key.sql(), key)
        inner = exp.Select(expressions=[first_key[t].copy().as_(n, quoted=True) for t, n in key_names.items()]
                           + [call.copy().as_(n, quoted=True) for n, call in calls.values()])
        if not inner.expressions:
            inner.set("expressions", [exp.Literal.number(1).as_("k", quoted=True)])
        inner.set("where", body.args.get("where"))
        inner.set("group", group)
        names = tuple(f"{alias}.{e.alias}" for e in inner.expressions)
        grouped = build(flatten_columns(inner), names, plan)

        def read(node: exp.Expression) -> exp.Expression:
            """A group key (also inside a subquery: its correlation) or an aggregate of the select, as a column."""
            text = node.sql()
            if text in key_names and not isinstance(node, exp.Literal):
                return exp.column(key_names[text], table=alias, quoted=True)
            if text in calls and isinstance(node, exp.AggFunc) and node.find_ancestor(exp.Select) is None:
                return exp.column(calls[text][0], table=alias, quoted=True)
            return node

        outer = body.copy()
        outer.set("where", None)
        outer.set("group", None)
        outer.set("having", None)
        outer.set("expressions", [e.transform(read) for e in body.expressions])
        if order is not None:
            outer.set("order", order.transform(read))
        if having is not None:
            outer.set("where", exp.Where(this=having.this.transform(read)))
        return grouped, outer

    def _semi(self, plan: Plan, query: exp.Expression, probes: list[exp.Expression], kind: str, ctes) -> Plan:
        """EXISTS / IN (and negations) as a semi or anti join; correlated conditions become join conditions."""
        if not isinstance(query, exp.Select) and outer_columns(query):
            raise UnsupportedSql(f"a correlated set operation as a semi join: {query.sql()[:80]}")
        if probes and isinstance(probes[0], exp.Tuple):
            raise UnsupportedSql("a row of values IN a subquery as a semi join")
        if probes and not any(probes[0].find_all(exp.Column)):  # a constant probe is no join key: a mark join takes it
            raise UnsupportedSql(f"IN with a constant on its left as a semi join: {probes[0].sql()}")
        inner = query.copy()
        conditions: list[exp.Expression] = []
        if isinstance(inner, exp.Select) and outer_columns(inner):
            where = inner.args.get("where")
            local = []
            for condition in conjuncts(where.this) if where is not None else []:
                (conditions if outer_columns_of(condition, inner) else local).append(condition)
            if any(subquery_nodes(c) for c in conditions):  # a join condition cannot hold a subquery: a mark join can
                raise UnsupportedSql(f"a correlated condition with a subquery in a semi join: {query.sql()[:80]}")
            inner.set("where", exp.Where(this=and_all(local)) if local else None)
        aliases = defined_aliases(inner)
        renames: dict[tuple[str, str], str] = {}

        def to_inner(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and node.table in aliases:
                key = (node.table, node.name)
                if key not in renames:
                    renames[key] = self.fresh("_x")
                return column(renames[key])
            return node

        conditions = [c.transform(to_inner) for c in conditions]
        if not isinstance(inner, exp.Select):
            if renames:
                raise UnsupportedSql("correlated set operations in subqueries are not supported")
            right = self.query(inner, ctes)
            if probes:
                conditions.append(exp.EQ(this=probes[0].copy(), expression=column(right.columns[0])))
            return self.join(plan, right, kind, conditions)
        outputs = []
        if probes:
            if len(inner.expressions) != 1:
                raise SqlError("an IN subquery must return exactly one column")
            value = self.fresh("_x")
            conditions.append(exp.EQ(this=probes[0].copy(), expression=column(value)))
            outputs.append(inner.expressions[0].unalias().as_(value, quoted=True))
        if renames:
            if inner.args.get("group") or inner.args.get("distinct") or any(e.find(exp.AggFunc) for e in inner.expressions):
                raise UnsupportedSql(f"a correlated subquery with aggregates in EXISTS/IN is not supported: {query.sql()[:80]}")
            for (table, name), fresh in renames.items():
                outputs.append(exp.column(name, table=table, quoted=True).as_(fresh, quoted=True))
        if outputs:
            inner.set("expressions", outputs)
            right = self.query(inner, ctes, tuple(e.alias for e in outputs))
        else:
            right = self.query(inner, ctes)
        return self.join(plan, right, kind, conditions)

    def _correlated_scalars(self, plan: Plan, condition: exp.Expression, ctes) -> tuple[Plan, exp.Expression]:
        """Correlated scalar subqueries: the aggregate per correlation key, LEFT-joined on that key."""
        for sub in subquery_nodes(condition):  # not those nested in another subquery: that one reads them
            query = sub.this
            if not outer_columns(query):
                continue  # uncorrelated: lifted by _finish
            if not isinstance(query, exp.Select) or query.args.get("group") or len(query.expressions) != 1:
                raise UnsupportedSql(f"this correlated subquery is not supported: {query.sql()[:80]}")
            inner = query.copy()
            where = inner.args.get("where")
            local, keys = [], []
            for part in conjuncts(where.this) if where is not None else []:
                if not outer_columns_of(part, inner):
                    local.append(part)
                    continue
                sides = _correlation_sides(part, inner)
                if sides is None:
                    raise UnsupportedSql(f"a correlated subquery's outer reference must be an equality: {part.sql()[:80]}")
                keys.append(sides)
            inner.set("where", exp.Where(this=and_all(local)) if local else None)
            selected = inner.expressions[0].unalias()
            aggregates = [a for a in selected.find_all(exp.AggFunc) if a.find_ancestor(exp.AggFunc) is None]
            if not aggregates:  # a lookup, not an aggregate: the single join of planner.decorrelate
                raise UnsupportedSql(f"a correlated scalar subquery without an aggregate: {query.sql()[:80]}")
            if selected in aggregates:
                aggregates = [selected]
            names = [self.fresh("_s") for _ in aggregates]
            key_names = [self.fresh("_x") for _ in keys]
            inner.set("expressions", [a.copy().as_(n, quoted=True) for a, n in zip(aggregates, names)]
                      + [k[0].copy().as_(n, quoted=True) for k, n in zip(keys, key_names)])
            inner.set("group", exp.Group(expressions=[k[0].copy() for k in keys]))
            right = self.query(inner, ctes, (*names, *key_names))
            plan = self.join(plan, right, "left", [exp.EQ(this=k[1].copy(), expression=column(n)) for k, n in zip(keys, key_names)])
            sub.replace(exp.Paren(this=over_groups(selected, aggregates, names)))
        return plan, condition



def outer_columns_of(node: exp.Expression, scope: exp.Expression) -> bool:
    inner = defined_aliases(scope)
    return any(c.table and c.table not in inner for c in node.find_all(exp.Column))


def _correlation_sides(node: exp.Expression, scope: exp.Expression):
    """(inner expression, outer expression) of an equality between the two scopes."""
    if not isinstance(node, exp.EQ):
        return None
    inner = defined_aliases(scope)
    left, right = node.this, node.expression

    def side(e: exp.Expression) -> str | None:
        tables = {c.table for c in e.find_all(exp.Column)}
        if not tables:
            return None
        if tables <= inner:
            return "inner"
        if not tables & inner:
            return "outer"
        return "both"

    a, b = side(left), side(right)
    if a == "inner" and b == "outer":
        return left, right
    if a == "outer" and b == "inner":
        return right, left
    return None



