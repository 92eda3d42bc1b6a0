"""Queries over several relations: joins, subqueries, CTEs, set operations, VALUES.

sqlglot's ``qualify`` first resolves every column to ``alias.column``.  A
SELECT then becomes a plan in three steps: its FROM clause (tables, CTEs,
derived tables, VALUES, joins in the order written), its WHERE subqueries
(EXISTS, IN and their negations become semi and anti joins, scalar
subqueries become joins to one row per correlation key), and the rest by
:func:`planner.build.build`.  Inside a SELECT every column is named
``alias.column``, so the same column name from two tables never clashes.

The plan is built plainly: every table is scanned whole and the WHERE
clause is one Filter.  Moving conditions into the scans, ordering inner
joins and reading only the columns used are rules (``pushdown_predicates``,
``reorder_joins``, ``pushdown_projections`` in :mod:`planner.rules`).
"""

from __future__ import annotations

import itertools

from sqlglot import exp
from sqlglot.optimizer.scope import build_scope

from planner.build import build, flatten_columns
from planner.joins import make_join, referenced
from planner.parse import position
from planner.logical import Filter, Join, Memory, Plan, Project, Scan, SetOp, TableSource, Values
from planner.constructs import grouping_sets_as_union, has_grouping_sets, qualify_as_where
from planner.predicates import conjuncts
from planner.decorrelate import outer_references
from planner.lateral import lateral_join
from planner.subqueries import SubqueryMixin, column
from storage.errors import SqlError, UnsupportedSql

Source = TableSource | Memory
_SUBQUERIES = (exp.Subquery, exp.Exists, exp.Any, exp.All)  # what a condition holds when it reads a subquery


def _and(conditions: list[exp.Expression]) -> exp.Expression | None:
    """The conditions joined by AND; None for none."""
    return exp.and_(*conditions) if conditions else None


def factor_or(node: exp.Expression) -> list[exp.Expression]:
    """``(a AND b) OR (a AND c)`` as ``[a, b OR c]``: conditions every branch shares become join keys.

    (sqlglot's ``normalize`` would reach the same through the full
    conjunctive normal form, whose size grows exponentially with the branches.)
    """
    if not isinstance(node, exp.Or):
        return [node]
    branches = [list(conjuncts(branch)) for branch in _disjuncts(node)]
    texts = [{c.sql() for c in b} for b in branches]
    shared = set.intersection(*texts)
    if not shared:
        return [node]
    common = [c for c in branches[0] if c.sql() in shared]
    rest = [_and([c for c in b if c.sql() not in shared]) for b in branches]
    if any(r is None for r in rest):
        return common
    return common + [exp.Paren(this=exp.or_(*rest))]


def _disjuncts(node: exp.Expression):
    """The parts of an OR chain (parentheses looked through), in order."""
    node = node.unnest()
    if not isinstance(node, exp.Or):
        yield node
        return
    for part in node.flatten():
        yield from _disjuncts(part)


class QueryBuilder(SubqueryMixin):
    """Builds the plan of a qualified query; ``sources`` maps table names to tables."""

    def __init__(self, sources: dict[str, Source]) -> None:
        self.sources = sources
        self._ids = itertools.count()

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- queries -------------------------------------------------------------------
    def query(self, node: exp.Expression, ctes: dict[str, exp.Expression], names: tuple[str, ...] | None = None) -> Plan:
        """The plan of ``node``; its columns are the query's output names."""
        ctes = dict(ctes)
        with_ = node.args.get("with_") or node.args.get("with")
        if with_ is not None:
            if with_.args.get("recursive"):
                raise UnsupportedSql("WITH RECURSIVE is not supported", *position(with_))
            for cte in with_.expressions:
                ctes[cte.alias] = cte.this
        if isinstance(node, exp.Subquery):
            return self.query(node.this, ctes, names)
        if isinstance(node, (exp.Union, exp.Intersect, exp.Except)):
            return self._set_operation(node, ctes, names)
        if isinstance(node, exp.Values):
            return self._values(node, None)
        if isinstance(node, exp.Select):
            return self._select(node, ctes, names)
        raise UnsupportedSql(f"{node.key.upper()} is not supported as a query", *position(node))

    def _set_operation(self, node: exp.Expression, ctes, names) -> Plan:
        kind = {exp.Union: "union", exp.Intersect: "intersect", exp.Except: "except"}[type(node)]
        left = self.query(node.this, ctes, names)
        right = self.query(node.expression, ctes)
        if len(left.columns) != len(right.columns):
            raise SqlError(f"{kind.upper()} needs the same number of columns on both sides "
                           f"({len(left.columns)} and {len(right.columns)})")
        right = Project(right, left.columns, tuple(column(c) for c in right.columns))
        distinct = bool(node.args.get("distinct", True))
        plan: Plan = SetOp((left, right), kind, distinct)
        order = node.args.get("order")
        limit = node.args.get("limit")
        offset = node.args.get("offset")
        if order is not None or limit is not None or offset is not None:
            wrapper = exp.select(*[exp.column(c, table="_set", quoted=True) for c in left.columns])
            wrapper.set("order", order)
            wrapper.set("limit", limit)
            wrapper.set("offset", offset)
            renamed = Project(plan, tuple(f"_set.{c}" for c in left.columns), tuple(column(c) for c in left.columns))
            if order is not None:
                fixed = []
                for item in order.expressions:
                    target = item.this
                    if isinstance(target, exp.Column) and not target.table:
                        target = exp.column(target.name, table="_set", quoted=True)
                    fixed.append(exp.Ordered(this=target, desc=item.args.get("desc"), nulls_first=item.args.get("nulls_first")))
                wrapper.set("order", exp.Order(expressions=fixed))
            plan = self._finish(wrapper, renamed, left.columns, {})
        return plan

    def _values(self, node: exp.Values, alias: str | None) -> Plan:
        rows = [tuple(t.expressions) if isinstance(t, exp.Tuple) else (t,) for t in node.expressions]
        width = len(rows[0])
        if any(len(r) != width for r in rows):
            raise SqlError("every VALUES row needs the same number of values")
        table_alias = node.args.get("alias")
        given = [c.name for c in table_alias.columns] if table_alias is not None and table_alias.columns else []
        names = tuple(given + [f"col{i}" for i in range(len(given), width)])
        if alias:
            names = tuple(f"{alias}.{n}" for n in names)
        return Values(names, tuple(rows))

    # -- SELECT --------------------------------------------------------------------------
    def _select(self, select: exp.Select, ctes, names: tuple[str, ...] | None) -> Plan:
        if select.args.get("qualify"):
            select = qualify_as_where(select)
        if has_grouping_sets(select):
            return self.query(grouping_sets_as_union(select), ctes, names)
        where = select.args.get("where")
        conditions = [f for c in (conjuncts(where.this) if where is not None else []) for f in factor_or(c)]
        plan, remaining = self._from(select, ctes, conditions)
        plan, remaining = self._subquery_conditions(plan, remaining, ctes)
        out_names = names or tuple(e.alias_or_name for e in select.expressions)
        body = select.copy()
        body.set("where", exp.Where(this=_and(remaining)) if remaining else None)
        for key in ("from_", "from", "joins", "with_", "with"):
            body.set(key, None)
        plan, body = self._select_subqueries(plan, body, ctes)
        return self._finish(body, plan, out_names, ctes)

    def _finish(self, body: exp.Select, plan: Plan, names, ctes) -> Plan:
        """The select list, aggregates, windows, ORDER BY and LIMIT of ``body`` over ``plan``."""
        scalars: dict[str, Plan] = {}

        def lift(node: exp.Expression) -> exp.Expression:
            in_query = isinstance(node.parent, exp.In) and node.parent.args.get("query") is node
            if isinstance(node, exp.Subquery) and not in_query and not isinstance(node.parent, exp.Exists):
                if build_scope(node.this).external_columns:
                    raise UnsupportedSql(f"this correlated subquery is not supported here: {node.sql()[:80]}")
                name = self.fresh("_s")
                inner = self.query(node.this, ctes)
                if len(inner.columns) != 1:
                    raise SqlError(f"a scalar subquery must return one column, not {len(inner.columns)}")
                scalars[name] = Project(inner, (name,), (column(inner.columns[0]),))
                return column(name)
            if isinstance(node, (exp.Exists, exp.In)) and (isinstance(node, exp.Exists) or node.args.get("query")):
                raise UnsupportedSql(f"EXISTS and IN subqueries are supported in WHERE conditions joined by AND: {node.sql()[:80]}")
            return node

        body = body.transform(lift, copy=False) if any(body.find_all(exp.Subquery, exp.Exists)) else body
        body = flatten_columns(body)
        return build(body, tuple(names), plan, scalars)

    # -- FROM ------------------------------------------------------------------------------
    def _from(self, select: exp.Select, ctes, conditions: list[exp.Expression]) -> tuple[Plan, list[exp.Expression]]:
        """The FROM clause as joins in the order written; rules order the inner joins and push conditions down."""
        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is None:
            return Values((), ((),)), conditions
        plan = self._relation(from_.this, ctes)
        outer = any((j.args.get("side") or "").upper() in ("LEFT", "RIGHT", "FULL") for j in select.args.get("joins") or [])
        for join in select.args.get("joins") or []:
            side = (join.args.get("side") or "").upper()
            if isinstance(join.this, exp.Lateral):
                plan = lateral_join(self, plan, join.this, ctes, side, list(conjuncts(join.args.get("on"))))
                continue
            right = self._relation(join.this, ctes)
            kind = (join.args.get("kind") or "").upper()
            if kind in ("SEMI", "ANTI"):
                raise UnsupportedSql("SEMI and ANTI join syntax is not supported; use EXISTS / NOT EXISTS",
                                     *position(join))
            if join.args.get("using"):
                raise UnsupportedSql("JOIN ... USING is not supported; write ON a.x = b.x", *position(join))
            on = list(conjuncts(join.args.get("on")))
            with_subquery = [c for c in on if any(c.find_all(*_SUBQUERIES))]
            if with_subquery and outer:
                raise UnsupportedSql(f"a subquery in an ON condition beside an outer join is not supported; "
                                     f"compute it in a derived table: {with_subquery[0].sql()[:80]}",
                                     *position(with_subquery[0]))
            conditions = conditions + with_subquery  # an inner join's: joined like WHERE's, over the joined rows
            on = [flatten_columns(c) for c in on if not any(c is w for w in with_subquery)]
            if side == "LEFT" and on:  # conditions on the inner side alone filter it before the join
                inner = [c for c in on if referenced(c) <= set(right.columns)]
                right = Filter(right, _and(inner)) if inner else right
                on = [c for c in on if not any(c is i for i in inner)]
            if side == "RIGHT" and on:
                inner = [c for c in on if referenced(c) <= set(plan.columns)]
                plan = Filter(plan, _and(inner)) if inner else plan
                on = [c for c in on if not any(c is i for i in inner)]
            if side in ("LEFT", "RIGHT", "FULL"):
                plan = self.join(plan, right, side.lower(), on)
            else:  # inner and cross joins: the reorder_joins rule orders them and finds their keys
                plan = Join(plan, right, "inner" if on else "cross", condition=_and(on))
        return plan, conditions

    def _relation(self, node: exp.Expression, ctes) -> Plan:
        """One FROM item, its columns named ``alias.column``."""
        alias = node.alias_or_name
        if isinstance(node, exp.Values):
            return self._values(node, node.alias)
        if isinstance(node, exp.Subquery):
            if any(t not in ctes for t, _ in outer_references(node.this)):  # LATERAL in all but name
                raise UnsupportedSql("a derived table that reads a column of an enclosing query (a correlated "
                                     f"derived table) is not supported; move the correlation outside it: "
                                     f"{node.sql()[:80]}", *position(node))
            return _renamed(self.query(node.this, ctes), alias)
        if isinstance(node, exp.Table):
            name = node.name
            if name in ctes and not node.db:
                return _renamed(self.query(ctes[name], ctes), alias)
            source = self.sources.get(name)
            if source is None:
                raise SqlError(f"table {name!r} is not available in this query")
            if isinstance(source, Plan):  # a Memory table, or a correlated subquery's domain of outer values
                return _renamed(source, alias)
            return _renamed(Scan(source), alias)
        raise UnsupportedSql(f"FROM {node.sql()[:60]} is not supported", *position(node))

    def join(self, left: Plan, right: Plan, kind: str, conditions: list[exp.Expression]) -> Plan:
        """A Join of ``left`` and ``right`` (columns already flattened or alias-qualified)."""
        return make_join(left, right, kind, [flatten_columns(c) for c in conditions])


def _renamed(plan: Plan, alias: str) -> Plan:
    return Project(plan, tuple(f"{alias}.{c}" for c in plan.columns), tuple(column(c) for c in plan.columns))


