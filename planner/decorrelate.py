"""Subqueries in any position, as joins that add their value or a mark as a column.

A subquery inside an expression (the select list, a CASE, a WHERE
condition under OR or NOT, ORDER BY) is computed once for the rows it is
evaluated over and joined to them; the expression then reads a column.
Following Neumann and Kemper's "Unnesting Arbitrary Queries", a
correlated subquery is evaluated once per distinct value of its *domain*,
the outer columns it reads: the domain is the outer rows' distinct
values of those columns, the subquery's outer references become columns
of the domain, and the domain joins the subquery's FROM (the dependent
join pushed into it, where equality correlation makes it a hash join and
any other correlation a join condition).  The per-domain result joins
back to the outer rows on the domain columns with IS NOT DISTINCT FROM,
so an outer row with a NULL there finds its own result.

- A scalar subquery over aggregates is grouped by the domain; a domain
  value without rows gets the aggregates of the empty set (COUNT 0, the
  others NULL) and the rest of the select expression over them.  One
  without aggregates (a lookup) is a *single* join on the domain: an outer
  row that finds two rows fails the query, as SQL says.
- ``EXISTS (q)`` is a *mark join*: the domain values for which ``q`` has a
  row, each once, LEFT-joined with a marker column; the expression reads
  whether the marker is there.
- ``x IN (q)`` marks with three-valued logic: TRUE when some value of ``q``
  equals ``x``; otherwise NULL when ``x`` is NULL and ``q`` has rows, or
  ``q`` holds a NULL; otherwise FALSE.  ``NOT IN`` is NOT of that.

What this cannot express (a correlated LIMIT or OFFSET, correlated set
operations, ANY / ALL) raises :class:`UnsupportedSql` with the position.
"""

from __future__ import annotations

from typing import Callable

from sqlglot import exp

from planner.build import flatten_columns
from planner.joins import column
from planner.logical import AggCall, Aggregate, Filter, Join, Plan, Project
from planner.parse import position
from storage.errors import SqlError, UnsupportedSql


def unsupported(message: str, node: exp.Expression) -> UnsupportedSql:
    """UnsupportedSql about ``node``, at its line and column in the query."""
    return UnsupportedSql(f"{message}: {node.sql()[:80]}", *position(node))


def qualified(name: str, table: str) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def defined_aliases(node: exp.Expression) -> set[str]:
    """Every relation alias defined anywhere inside ``node``."""
    names = set()
    for table in node.find_all(exp.Table, exp.Subquery, exp.Values):
        alias = table.alias_or_name if not isinstance(table, exp.Values) else table.alias
        if alias:
            names.add(alias)
    for cte in node.find_all(exp.CTE):
        names.add(cte.alias)
    return names


def outer_references(node: exp.Expression) -> list[tuple[str, str]]:
    """(alias, column) of every column inside ``node`` that an enclosing query defines, once each."""
    inner = defined_aliases(node)
    found = [(c.table, c.name) for c in node.find_all(exp.Column) if c.table and c.table not in inner]
    return list(dict.fromkeys(found))


def _membership(node: exp.Expression) -> bool:
    """``x = ANY (q)`` (which is ``x IN (q)``) or ``x <> ALL (q)`` (``x NOT IN (q)``)."""
    quantified = node.args.get("expression")
    return (isinstance(node, exp.EQ) and isinstance(quantified, exp.Any)) or \
        (isinstance(node, exp.NEQ) and isinstance(quantified, exp.All))


def subquery_nodes(node: exp.Expression) -> list[exp.Expression]:
    """EXISTS, IN (query), = ANY, <> ALL and scalar subqueries in ``node`` that no other subquery contains."""
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        if _membership(current):
            found.append(current)
            continue
        if isinstance(current, exp.Exists) or (isinstance(current, exp.In) and current.args.get("query") is not None):
            found.append(current)
            continue
        if isinstance(current, exp.Subquery):
            found.append(current)
            continue
        if isinstance(current, exp.Query) and current is not node:
            continue
        if isinstance(current, (exp.Any, exp.All)):
            raise unsupported("ANY and ALL subqueries are supported as = ANY and <> ALL only; write EXISTS", current)
        stack.extend(current.iter_expressions())
    return found


def is_correlated(node: exp.Expression) -> bool:
    query = node.this if isinstance(node, (exp.Subquery, exp.Exists)) else node
    return bool(outer_references(query))


def aggregates_of(node: exp.Expression) -> list[exp.Expression]:
    """The aggregate calls of ``node`` that are not inside another aggregate or a subquery of ``node``'s select."""
    scope = node.find_ancestor(exp.Select)
    found = []
    for candidate in node.find_all(exp.AggFunc):
        parent = candidate.parent
        while parent is not None and parent is not scope and not isinstance(parent, (exp.AggFunc, exp.Select)):
            parent = parent.parent
        if parent is scope:
            found.append(candidate)
    return found


def _has_aggregate(select: exp.Select) -> bool:
    return any(aggregates_of(e) for e in select.expressions)


class SubqueryColumns:
    """The part of :class:`planner.relational.QueryBuilder` that unnests subqueries inside expressions.

    Needs the builder's ``query``, ``fresh`` and ``sources``.
    """

    query: Callable[..., Plan]
    fresh: Callable[[str], str]
    sources: dict

    def attach_subqueries(self, plan: Plan, node: exp.Expression, ctes,
                          keep: Callable[[exp.Expression], bool] = lambda n: False) -> tuple[Plan, exp.Expression]:
        """``node`` with each subquery in it (except those ``keep`` says to leave) read from a column joined to ``plan``."""
        for target in subquery_nodes(node):
            if keep(target):
                continue
            if _membership(target):
                query = target.expression.this
                plan, value = self.mark_in(plan, target.this, query.this if isinstance(query, exp.Subquery) else query, ctes)
                value = exp.Not(this=value) if isinstance(target, exp.NEQ) else value
            elif isinstance(target, exp.Exists):
                plan, value = self.mark_exists(plan, target.this, ctes)
            elif isinstance(target, exp.In):
                query = target.args["query"]
                plan, value = self.mark_in(plan, target.this, query.this if isinstance(query, exp.Subquery) else query, ctes)
            else:
                plan, value = self.scalar_value(plan, target.this, ctes)
            if target is node:
                return plan, value
            target.replace(value)
        return plan, node

    # -- the domain ---------------------------------------------------------------------
    def domain_of(self, plan: Plan, query: exp.Expression) -> tuple[str | None, list[str], exp.Expression]:
        """The outer columns ``query`` reads as a domain source, and ``query`` reading them from it.

        Returns the domain's alias (None when ``query`` is not correlated),
        the outer columns' names in ``plan``, and a copy of ``query`` whose
        outer references read ``<alias>.k<i>`` with the domain in its FROM.
        """
        references = outer_references(query)
        if not references:
            return None, [], query.copy()
        outer = [f"{table}.{name}" for table, name in references]
        missing = [name for name in outer if name not in plan.columns]
        if missing:
            raise unsupported(f"a subquery reads {', '.join(missing)} from a query it cannot see here", query)
        if not isinstance(query, exp.Select):
            raise unsupported("correlated set operations in subqueries are not supported", query)
        alias = self.fresh("_d")
        keys = tuple(f"k{i}" for i in range(len(outer)))
        values = Project(plan, keys, tuple(column(name) for name in outer))
        self.sources[alias] = Aggregate(values, keys, ())
        mapping = {reference: key for reference, key in zip(references, keys)}

        def rename(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and (node.table, node.name) in mapping:
                return qualified(mapping[(node.table, node.name)], alias)
            return node

        inner = query.copy().transform(rename)
        table = exp.Table(this=exp.to_identifier(alias, quoted=True), alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        if inner.args.get("from_") is None and inner.args.get("from") is None:
            inner.set("from_", exp.From(this=table))
        else:
            inner.append("joins", exp.Join(this=table))
        return alias, outer, inner

    def join_back(self, plan: Plan, outer: list[str], right: Plan, keys: list[str], probe: tuple[str, str] | None = None) -> Plan:
        """``plan`` LEFT-joined to ``right`` on the domain columns (NULL matching NULL), and the probe if given."""
        left_keys, right_keys = list(outer), list(keys)
        if probe is not None:
            left_keys.append(probe[0])
            right_keys.append(probe[1])
        if not left_keys:  # uncorrelated and no probe: ``right`` is one row
            return Join(plan, right, "single")
        return Join(plan, right, "left", tuple(left_keys), tuple(right_keys), null_equal=True)

    # -- scalar subqueries ----------------------------------------------------------------
    def scalar_value(self, plan: Plan, query: exp.Expression, ctes) -> tuple[Plan, exp.Expression]:
        """A scalar subquery's value as an expression over columns joined to ``plan``."""
        if not outer_references(query):
            name = self.fresh("_s")
            inner = self.query(query, ctes)
            if len(inner.columns) != 1:
                raise SqlError(f"a scalar subquery must return one column, not {len(inner.columns)}")
            return Join(plan, Project(inner, (name,), (column(inner.columns[0]),)), "single"), column(name)
        if not isinstance(query, exp.Select) or len(query.expressions) != 1:
            raise unsupported("this correlated subquery is not supported", query)
        for part in ("group", "having", "limit", "offset", "qualify"):
            if query.args.get(part):
                raise unsupported(f"a correlated scalar subquery with {part.upper()} is not supported", query)
        selected = query.expressions[0].unalias()
        aggregates = aggregates_of(selected)
        if not aggregates:  # a lookup: its rows per domain value, of which an outer row may match one at most
            alias, outer, inner = self.domain_of(plan, query)
            keys = [self.fresh("_x") for _ in outer]
            value = self.fresh("_s")
            inner.set("expressions", [qualified(f"k{i}", alias).as_(k, quoted=True) for i, k in enumerate(keys)]
                      + [inner.expressions[0].unalias().as_(value, quoted=True)])
            inner.set("order", None)
            right = self.query(inner, ctes, (*keys, value))
            return Join(plan, right, "single", tuple(outer), tuple(keys), null_equal=True), column(value)
        if query.args.get("distinct"):
            raise unsupported("a correlated scalar subquery with DISTINCT and an aggregate is not supported", query)
        outside = selected.copy()
        for found in aggregates_of(outside):
            found.replace(exp.Null())
        if any(outside.find_all(exp.Subquery, exp.Exists)):
            raise unsupported("a subquery outside the aggregates of a correlated subquery is not supported", query)
        alias, outer, inner = self.domain_of(plan, query)
        inner_aggregates = aggregates_of(inner.expressions[0].unalias())
        keys = [self.fresh("_x") for _ in outer]
        names = [self.fresh("_s") for _ in aggregates]
        inner.set("expressions", [qualified(f"k{i}", alias).as_(k, quoted=True) for i, k in enumerate(keys)]
                  + [a.copy().as_(n, quoted=True) for a, n in zip(inner_aggregates, names)])
        inner.set("group", exp.Group(expressions=[qualified(f"k{i}", alias) for i in range(len(keys))]))
        inner.set("order", None)
        right = self.query(inner, ctes, (*keys, *names))
        plan = self.join_back(plan, outer, right, keys)
        return plan, exp.Paren(this=over_groups(selected, aggregates, names))

    # -- EXISTS -----------------------------------------------------------------------------
    def mark_exists(self, plan: Plan, query: exp.Expression, ctes) -> tuple[Plan, exp.Expression]:
        """Whether ``query`` has a row, per outer row, as a boolean expression over a joined marker."""
        if isinstance(query, exp.Select):
            limit = query.args.get("limit")
            if query.args.get("offset") is not None:
                raise unsupported("OFFSET in an EXISTS subquery is not supported", query)
            if limit is not None:
                count = limit.expression if isinstance(limit, exp.Limit) else limit
                if isinstance(count, exp.Literal) and count.this == "0":
                    return plan, exp.false()
            if _has_aggregate(query) and not query.args.get("group") and not query.args.get("having"):
                return plan, exp.true()  # an aggregate without GROUP BY always has its one row
            if _has_aggregate(query) and not query.args.get("group"):
                raise unsupported("EXISTS over an aggregate with HAVING and no GROUP BY is not supported", query)
        if not outer_references(query):
            name = self.fresh("_n")
            rows = self.query(query, ctes)
            counted = Aggregate(rows, (), (AggCall(name, "count_star"),))
            return Join(plan, counted, "single"), exp.GT(this=column(name), expression=exp.Literal.number(0))
        alias, outer, inner = self.domain_of(plan, query)
        keys = [self.fresh("_x") for _ in outer]
        marker = self.fresh("_m")
        domain = [qualified(f"k{i}", alias) for i in range(len(keys))]
        inner.set("expressions", [d.copy().as_(k, quoted=True) for d, k in zip(domain, keys)]
                  + [exp.true().as_(marker, quoted=True)])
        if inner.args.get("group"):
            inner.set("group", exp.Group(expressions=list(inner.args["group"].expressions) + [d.copy() for d in domain]))
        inner.set("distinct", exp.Distinct())
        for part in ("order", "limit"):
            inner.set(part, None)
        right = self.query(inner, ctes, (*keys, marker))
        plan = self.join_back(plan, outer, right, keys)
        return plan, exp.Coalesce(this=column(marker), expressions=[exp.false()])

    # -- IN -----------------------------------------------------------------------------------
    def mark_in(self, plan: Plan, probe: exp.Expression, query: exp.Expression, ctes) -> tuple[Plan, exp.Expression]:
        """``probe IN (query)`` per outer row, with SQL's NULL rules, over joined columns."""
        if isinstance(probe, exp.Tuple):
            raise unsupported("IN with a row of several values is not supported; compare each with EXISTS", probe.parent)
        if isinstance(query, exp.Select) and _has_aggregate(query) and not query.args.get("group") \
                and not query.args.get("having") and not query.args.get("offset"):
            plan, value = self.scalar_value(plan, query, ctes)  # exactly one row: IN is =
            return plan, exp.EQ(this=probe.copy(), expression=value)
        if isinstance(query, exp.Select) and outer_references(query):
            if query.args.get("limit") is not None or query.args.get("offset") is not None:
                raise unsupported("LIMIT in a correlated IN subquery is not supported", query)
            if len(query.expressions) != 1:
                raise SqlError("an IN subquery must return exactly one column")
            alias, outer, inner = self.domain_of(plan, query)
            keys = [self.fresh("_x") for _ in outer]
            domain = [qualified(f"k{i}", alias) for i in range(len(keys))]
            value = self.fresh("_v")
            inner.set("expressions", [d.copy().as_(k, quoted=True) for d, k in zip(domain, keys)]
                      + [inner.expressions[0].unalias().as_(value, quoted=True)])
            if inner.args.get("group"):
                inner.set("group", exp.Group(expressions=list(inner.args["group"].expressions) + [d.copy() for d in domain]))
            inner.set("order", None)
            build = lambda: self.query(inner.copy(), ctes, (*keys, value))
        else:
            outer, keys, value = [], [], self.fresh("_v")

            def build() -> Plan:
                rows = self.query(query.copy(), ctes)
                if len(rows.columns) != 1:
                    raise SqlError("an IN subquery must return exactly one column")
                return Project(rows, (value,), (column(rows.columns[0]),))
        probe_name = self.fresh("_p")
        plan = Project(plan, plan.columns + (probe_name,), tuple(column(c) for c in plan.columns) + (flatten_columns(probe.copy()),))
        marker, rows_name, values_name = self.fresh("_m"), self.fresh("_n"), self.fresh("_n")
        # the values per domain key, each once (a NULL value never equals the probe)
        present = Filter(build(), exp.Not(this=exp.Is(this=column(value), expression=exp.Null())))
        distinct = Aggregate(present, (*keys, value), ())
        marked = Project(distinct, (*keys, value, marker), tuple(column(c) for c in (*keys, value)) + (exp.true(),))
        plan = self.join_back(plan, outer, marked, keys, (probe_name, value))
        # how many rows, and how many non-NULL values, each domain key has
        counted = Aggregate(build(), tuple(keys), (AggCall(rows_name, "count_star"), AggCall(values_name, "count", value)))
        count_keys = [self.fresh("_x") for _ in keys]
        counts = Project(counted, (*count_keys, rows_name, values_name),
                         tuple(column(c) for c in (*keys, rows_name, values_name)))
        plan = self.join_back(plan, outer, counts, count_keys)
        null = exp.Null()
        some_null = exp.Or(this=exp.Is(this=column(probe_name), expression=exp.Null()),
                           expression=exp.GT(this=column(rows_name), expression=column(values_name)))
        decided = exp.Case(ifs=[
            exp.If(this=exp.Not(this=exp.Is(this=column(marker), expression=exp.Null())), true=exp.true()),
            exp.If(this=exp.Or(this=exp.Is(this=column(rows_name), expression=exp.Null()),
                               expression=exp.EQ(this=column(rows_name), expression=exp.Literal.number(0))),
                   true=exp.false()),
            exp.If(this=some_null, true=exp.Cast(this=null, to=exp.DataType.build("BOOLEAN"))),
        ], default=exp.false())
        return plan, exp.Paren(this=decided)


def over_groups(selected: exp.Expression, aggregates: list[exp.Expression], names: list[str]) -> exp.Expression:
    """The subquery's value from its per-group aggregate columns.

    A group the outer row has no match in is an empty set: every aggregate
    is NULL there except COUNT, which is 0, and the rest of the expression
    is evaluated over those values (so ``count(*) + 9`` is 9, not NULL).
    """
    def value(aggregate: exp.Expression, name: str) -> exp.Expression:
        if isinstance(aggregate, exp.Count):
            return exp.Coalesce(this=column(name), expressions=[exp.Literal.number(0)])
        return column(name)

    replacements = {id(a): value(a, n) for a, n in zip(aggregates, names)}
    if id(selected) in replacements:
        return replacements[id(selected)]
    copied = selected.copy()
    for original, duplicate in zip(list(selected.walk()), list(copied.walk())):  # the copy has the same shape
        if id(original) in replacements:
            duplicate.replace(replacements[id(original)])
    return copied
