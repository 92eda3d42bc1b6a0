"""Queries over several relations: joins, subqueries, CTEs, set operations, VALUES.

sqlglot's ``qualify`` first resolves every column to ``alias.column``.  A
SELECT then becomes a plan in three steps: its FROM clause (tables, CTEs,
derived tables, VALUES, joins, the inner joins ordered by their join graph
and single-table conditions moved into the scans), its WHERE subqueries
(EXISTS, IN and their negations become semi and anti joins, scalar
subqueries become joins to one row per correlation key), and the rest by
:func:`planner.build.build`.  Inside a SELECT every column is named
``alias.column``, so the same column name from two tables never clashes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sqlglot import exp

from planner.build import build, flatten_columns
from planner.logical import Filter, Join, Memory, Plan, Project, Scan, SetOp, TableSource, Values
from planner.parse import position
from planner.qualify import Qualified
from planner.subqueries import SubqueryMixin, and_all, column, conjuncts, defined_aliases, outer_columns
from storage.errors import SqlError, UnsupportedSql

Source = TableSource | Memory
_SUBQUERIES = (exp.Subquery, exp.Exists, exp.Any, exp.All)  # what a condition holds when it reads a subquery


def factor_or(node: exp.Expression) -> list[exp.Expression]:
    """``(a AND b) OR (a AND c)`` as ``[a, b OR c]``: conditions every branch shares become join keys."""
    if not isinstance(node, exp.Or):
        return [node]
    branches = []
    stack = [node]
    while stack:
        current = stack.pop()
        current = current.this if isinstance(current, exp.Paren) else current
        if isinstance(current, exp.Or):
            stack += [current.expression, current.this]
        else:
            branches.append(conjuncts(current))
    texts = [{c.sql() for c in b} for b in branches]
    shared = set.intersection(*texts)
    if not shared:
        return [node]
    common = [c for c in branches[0] if c.sql() in shared]
    rest = [and_all([c for c in b if c.sql() not in shared]) for b in branches]
    if any(r is None for r in rest):
        return common
    disjunction = rest[0]
    for other in rest[1:]:
        disjunction = exp.Or(this=disjunction, expression=other)
    return common + [exp.Paren(this=disjunction)]


def tables_of(node: exp.Expression) -> set[str]:
    """Aliases whose columns ``node`` reads (not looking into subqueries)."""
    found = set()
    for col in _columns(node):
        if col.table:
            found.add(col.table)
    return found


def _columns(node: exp.Expression):
    """Columns of ``node`` outside nested subqueries."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Column):
            yield current
            continue
        for child in current.iter_expressions():
            if isinstance(child, (exp.Subquery, exp.Exists)) or (isinstance(child, exp.Query) and current is not node):
                continue
            stack.append(child)


@dataclass
class Relation:
    """One FROM item: its alias, its plan (columns named ``alias.column``), and pending filters."""

    alias: str
    plan: Plan
    scan_names: dict[str, str] = field(default_factory=dict)  # alias.column -> column, for base tables


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
                raise UnsupportedSql("WITH RECURSIVE is not supported")
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
        raise UnsupportedSql(f"{node.key.upper()} is not supported as a query")

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
            relations = [Relation("_set", Project(plan, tuple(f"_set.{c}" for c in left.columns),
                                                  tuple(column(c) for c in left.columns)))]
            if order is not None:
                fixed = []
                for item in order.expressions:
                    target = item.this
                    if isinstance(target, exp.Column) and not target.table:
                        target = exp.column(target.name, table="_set", quoted=True)
                    fixed.append(exp.Ordered(this=target, desc=item.args.get("desc"), nulls_first=item.args.get("nulls_first")))
                wrapper.set("order", exp.Order(expressions=fixed))
            plan = self._finish(wrapper, relations[0].plan, left.columns, {})
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
            raise UnsupportedSql("QUALIFY is not supported; filter a window function in an outer query")
        where = select.args.get("where")
        conditions = [f for c in (conjuncts(where.this) if where is not None else []) for f in factor_or(c)]
        plan, remaining = self._from(select, ctes, conditions)
        plan, remaining = self._subquery_conditions(plan, remaining, ctes)
        out_names = names or tuple(e.alias_or_name for e in select.expressions)
        body = select.copy()
        body.set("where", exp.Where(this=and_all(remaining)) if remaining else None)
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
                if outer_columns(node.this):
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
        return build(Qualified(body, None, None, tuple(names)), from_plan=plan, scalars=scalars)

    # -- FROM ------------------------------------------------------------------------------
    def _from(self, select: exp.Select, ctes, conditions: list[exp.Expression]) -> tuple[Plan, list[exp.Expression]]:
        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is None:
            return Values((), ((),)), conditions
        needed = _needed_columns(select)
        items = [(from_.this, None)] + [(j.this, j) for j in select.args.get("joins") or []]
        outer = any((j.args.get("side") or "").upper() in ("LEFT", "RIGHT", "FULL") for _, j in items if j is not None)
        local = [c for c in conditions if not any(c.find_all(*_SUBQUERIES))]
        later = [c for c in conditions if any(c.find_all(*_SUBQUERIES))]
        if not outer:
            relations = [self._relation(node, ctes, needed) for node, _ in items]
            for node, join in items:
                if join is not None:
                    kind = (join.args.get("kind") or "").upper()
                    if kind in ("SEMI", "ANTI"):
                        raise UnsupportedSql("SEMI and ANTI join syntax is not supported; use EXISTS / NOT EXISTS")
                    if join.args.get("using"):
                        raise UnsupportedSql("JOIN ... USING is not supported; write ON a.x = b.x")
                    if join.args.get("on") is not None:
                        for condition in conjuncts(join.args["on"]):  # with a subquery: joined like WHERE's
                            (later if any(condition.find_all(*_SUBQUERIES)) else local).append(condition)
            plan, leftover = self._inner_joins(relations, local)
            return plan, leftover + later
        plan_rel = self._relation(items[0][0], ctes, needed)
        plan, aliases = plan_rel.plan, {plan_rel.alias}
        for node, join in items[1:]:
            right = self._relation(node, ctes, needed)
            side = (join.args.get("side") or "").upper()
            kind = {"LEFT": "left", "RIGHT": "right", "FULL": "full"}.get(side, "inner")
            if join.args.get("using"):
                raise UnsupportedSql("JOIN ... USING is not supported; write ON a.x = b.x")
            on = conjuncts(join.args["on"]) if join.args.get("on") is not None else []
            if not on and kind == "inner":
                kind = "cross"
            keep = []
            for condition in on:  # conditions on the inner side alone filter it before the join
                if any(condition.find_all(*_SUBQUERIES)):
                    where = position(condition)
                    raise UnsupportedSql(f"a subquery in the ON condition of an outer join is not supported; "
                                         f"compute it in a derived table: {condition.sql()[:80]}",
                                         *(where if where[0] is not None else position(join)))
                used = tables_of(condition)
                if kind == "left" and used <= {right.alias}:
                    right.plan = _filter_relation(right, condition)
                elif kind == "right" and used <= aliases:
                    plan = Filter(plan, flatten_columns(condition))
                else:
                    keep.append(condition)
            plan = self.join(plan, right.plan, kind, keep)
            aliases.add(right.alias)
        return plan, local + later

    def _relation(self, node: exp.Expression, ctes, needed: dict[str, set[str]]) -> Relation:
        alias = node.alias_or_name
        if isinstance(node, exp.Values):
            return Relation(node.alias, self._values(node, node.alias))
        if isinstance(node, exp.Subquery):
            inner = self.query(node.this, ctes)
            return Relation(alias, _renamed(inner, alias))
        if isinstance(node, exp.Table):
            name = node.name
            if name in ctes and not node.db:
                inner = self.query(ctes[name], ctes)
                return Relation(alias, _renamed(inner, alias))
            source = self.sources.get(name)
            if source is None:
                raise SqlError(f"table {name!r} is not available in this query")
            if isinstance(source, Plan) and not isinstance(source, Memory):  # a correlated subquery's domain
                return Relation(alias, _renamed(source, alias))
            if isinstance(source, Memory):
                wanted = [c for c in source.columns if c in needed.get(alias, set())] or list(source.columns[:1])
                plan = Project(source, tuple(f"{alias}.{c}" for c in wanted), tuple(column(c) for c in wanted))
                return Relation(alias, plan)
            wanted = [c for c in source.schema.names if c in needed.get(alias, set())] or source.schema.names[:1]
            scan = Scan(source, fields=tuple(wanted))
            plan = Project(scan, tuple(f"{alias}.{c}" for c in wanted), tuple(column(c) for c in wanted))
            return Relation(alias, plan, {f"{alias}.{c}": c for c in wanted})
        raise UnsupportedSql(f"FROM {node.sql()[:60]} is not supported")

    def _inner_joins(self, relations: list[Relation], conditions: list[exp.Expression]) -> tuple[Plan, list[exp.Expression]]:
        """Inner and cross joins, ordered so each join has an equality with what is joined so far."""
        by_alias = {r.alias: r for r in relations}
        pending: list[exp.Expression] = []
        for condition in conditions:
            used = tables_of(condition)
            if len(used) == 1 and next(iter(used)) in by_alias:
                relation = by_alias[next(iter(used))]
                relation.plan = _filter_relation(relation, condition)
            else:
                pending.append(condition)
        if len(relations) == 1:
            return relations[0].plan, pending
        sizes = {r.alias: _size(r.plan) for r in relations}
        first = max(relations, key=lambda r: sizes[r.alias])  # the largest (fact) table drives the joins
        joined = {first.alias}
        plan = first.plan
        rest = [r for r in relations if r is not first]
        while rest:
            def connected(r: Relation) -> bool:
                return any(_is_equi(c, joined, {r.alias}) for c in pending)
            linked = [r for r in rest if connected(r)]
            # the first connected item in FROM order (an equality with what is joined: no cross product);
            # with none connected, the smallest remaining one
            choice = linked[0] if linked else min(rest, key=lambda r: sizes[r.alias])
            rest.remove(choice)
            now = joined | {choice.alias}
            on = [c for c in pending if tables_of(c) <= now]
            pending = [c for c in pending if not tables_of(c) <= now]
            plan = self.join(plan, choice.plan, "inner" if on else "cross", on)
            joined = now
        return plan, pending

    def join(self, left: Plan, right: Plan, kind: str, conditions: list[exp.Expression]) -> Plan:
        """A Join of ``left`` and ``right`` (columns already flattened or alias-qualified)."""
        if kind == "right":  # as a LEFT join with the sides swapped, so the preserved side is the probe side
            swapped = self.join(right, left, "left", conditions)
            names = left.columns + right.columns
            return Project(swapped, names, tuple(column(c) for c in names))
        left_names, right_names = set(left.columns), set(right.columns)
        left_keys, right_keys, residual = [], [], []
        extra_left: list[tuple[str, exp.Expression]] = []
        extra_right: list[tuple[str, exp.Expression]] = []
        for condition in conditions:
            condition = flatten_columns(condition)
            pair = _equi_sides(condition, left_names, right_names)
            if pair is None:
                residual.append(condition)
                continue
            for side, expr, names, extra, keys in ((0, pair[0], left_names, extra_left, left_keys),
                                                  (1, pair[1], right_names, extra_right, right_keys)):
                if isinstance(expr, exp.Column) and expr.name in names:
                    keys.append(expr.name)
                else:
                    name = self.fresh("_k")
                    extra.append((name, expr))
                    keys.append(name)
        if extra_left:
            left = _append(left, extra_left)
        if extra_right:
            right = _append(right, extra_right)
        if kind == "inner" and not left_keys and not residual:
            kind = "cross"
        plan: Plan = Join(left, right, kind, tuple(left_keys), tuple(right_keys), and_all(residual))
        if extra_left or extra_right:
            keep = [c for c in plan.columns if not c.startswith("_k")]
            plan = Project(plan, tuple(keep), tuple(column(c) for c in keep))
        return plan

def _size(plan: Plan) -> float:
    """A rough size of a FROM item for ordering joins: manifest bytes, less when filtered."""
    from planner.rules.distribute import estimate

    filtered = any(isinstance(n, Filter) or isinstance(n, Scan) and n.filter is not None for n in plan.walk())
    return estimate(plan) / (4 if filtered else 1)


def _renamed(plan: Plan, alias: str) -> Plan:
    return Project(plan, tuple(f"{alias}.{c}" for c in plan.columns), tuple(column(c) for c in plan.columns))


def _append(plan: Plan, extra: list[tuple[str, exp.Expression]]) -> Plan:
    names = plan.columns + tuple(n for n, _ in extra)
    return Project(plan, names, tuple(column(c) for c in plan.columns) + tuple(e for _, e in extra))


def _filter_relation(relation: Relation, condition: exp.Expression) -> Plan:
    """``condition`` on one relation; for a table, pushed into its scan in the table's own column names."""
    plan = relation.plan
    flat = flatten_columns(condition)
    if relation.scan_names and isinstance(plan, Project) and isinstance(plan.input, Scan):
        mapping = relation.scan_names

        def back(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and node.name in mapping:
                return column(mapping[node.name])
            return node

        local = flat.transform(back)
        scan = plan.input
        merged = local if scan.filter is None else exp.And(this=scan.filter, expression=local)
        return Project(Scan(scan.source, scan.fields, merged), plan.names, plan.exprs)
    return Filter(plan, flat)


def _is_equi(condition: exp.Expression, left: set[str], right: set[str]) -> bool:
    if not isinstance(condition, exp.EQ):
        return False
    a, b = tables_of(condition.this), tables_of(condition.expression)
    return bool(a and b) and (a <= left and b <= right or a <= right and b <= left)


def _equi_sides(condition: exp.Expression, left: set[str], right: set[str]):
    """(left expression, right expression) when ``condition`` equates the two sides."""
    if not isinstance(condition, exp.EQ):
        return None
    a = {c.name for c in condition.this.find_all(exp.Column)}
    b = {c.name for c in condition.expression.find_all(exp.Column)}
    if not a or not b:
        return None
    if a <= left and b <= right:
        return condition.this, condition.expression
    if a <= right and b <= left:
        return condition.expression, condition.this
    return None


def _needed_columns(select: exp.Select) -> dict[str, set[str]]:
    """Columns of each alias that the query (with its subqueries) reads."""
    needed: dict[str, set[str]] = {}
    for col in select.find_all(exp.Column):
        if col.table:
            needed.setdefault(col.table, set()).add(col.name)
    return needed
