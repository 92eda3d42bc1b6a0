"""A Join node from join conditions: equalities between the two sides become hash keys.

Both the query builder (outer, semi and anti joins) and the join-ordering
rule (inner joins) make joins the same way: ``a = b`` with ``a`` over one
side and ``b`` over the other becomes a key pair (an expression key is
computed into a column first), and every other condition stays as the
join's residual condition.
"""

from __future__ import annotations

from sqlglot import exp

from planner.logical import Join, Plan, Project


def column(name: str) -> exp.Column:
    """A reference to the column ``name`` (quoted: names like ``alias.column`` are one name)."""
    return exp.Column(this=exp.Identifier(this=name, quoted=True))


def referenced(node: exp.Expression) -> set[str]:
    """Names of the columns an expression reads."""
    return {c.name for c in node.find_all(exp.Column)}


def make_join(left: Plan, right: Plan, kind: str, conditions: list[exp.Expression]) -> Plan:
    """A Join of ``left`` and ``right`` under ``conditions`` (columns named as the inputs name them)."""
    if kind == "right":  # as a LEFT join with the sides swapped, so the preserved side is the probe side
        swapped = make_join(right, left, "left", conditions)
        names = left.columns + right.columns
        return Project(swapped, names, tuple(column(c) for c in names))
    left_names, right_names = set(left.columns), set(right.columns)
    taken = left_names | right_names
    fresh: list[str] = []

    def key_name() -> str:
        index = len(fresh)
        while f"_k{index}" in taken:
            index += 1
        name = f"_k{index}"
        taken.add(name)
        fresh.append(name)
        return name

    left_keys, right_keys, residual = [], [], []
    extra_left: list[tuple[str, exp.Expression]] = []
    extra_right: list[tuple[str, exp.Expression]] = []
    for condition in conditions:
        pair = _equi_sides(condition, left_names, right_names)
        if pair is None:
            residual.append(condition)
            continue
        for expr, names, extra, keys in ((pair[0], left_names, extra_left, left_keys),
                                         (pair[1], right_names, extra_right, right_keys)):
            if isinstance(expr, exp.Column) and expr.name in names:
                keys.append(expr.name)
            else:
                name = key_name()
                extra.append((name, expr))
                keys.append(name)
    if extra_left:
        left = _append(left, extra_left)
    if extra_right:
        right = _append(right, extra_right)
    if kind == "inner" and not left_keys and not residual:
        kind = "cross"
    condition = exp.and_(*residual) if residual else None
    plan: Plan = Join(left, right, kind, tuple(left_keys), tuple(right_keys), condition)
    if fresh:
        keep = [c for c in plan.columns if c not in fresh]
        plan = Project(plan, tuple(keep), tuple(column(c) for c in keep))
    return plan


def _append(plan: Plan, extra: list[tuple[str, exp.Expression]]) -> Plan:
    names = plan.columns + tuple(n for n, _ in extra)
    return Project(plan, names, tuple(column(c) for c in plan.columns) + tuple(e for _, e in extra))


def _equi_sides(condition: exp.Expression, left: set[str], right: set[str]):
    """(left expression, right expression) when ``condition`` equates the two sides."""
    if not isinstance(condition, exp.EQ):
        return None
    a = referenced(condition.this)
    b = referenced(condition.expression)
    if not a or not b:
        return None
    if a <= left and b <= right:
        return condition.this, condition.expression
    if a <= right and b <= left:
        return condition.expression, condition.this
    return None
