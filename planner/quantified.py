"""Row values and quantified comparisons, rewritten into SQL the planner already runs.

- ``(a, b) = (1, 2)`` and the other comparisons of rows compare them as
  DuckDB compares rows: field by field, left to right, a NULL field equal
  to a NULL field and greater than any value, so the answer is never NULL.
  ``(a, b) IN ((1, 2), (3, 4))`` is an OR of such equalities.
- ``x > ALL (q)``, ``x < ANY (q)`` (and ``>=``, ``<=``, ``= ALL``, ``<> ANY``;
  ``SOME`` is ``ANY``) become a CASE over scalar subqueries of ``q``: its row
  count, its count of non-NULL values, and its MIN or MAX.  That keeps
  SQL's three-valued logic: ``x > ALL (q)`` is TRUE over no rows, FALSE when
  some value is at least ``x``, otherwise NULL when ``x`` or a value is
  NULL, otherwise TRUE; ``ANY`` mirrors it.  ``= ANY`` and ``<> ALL`` are
  IN and NOT IN, which mark joins run directly.
- ``(a, b) IN (q)`` (after qualification, so outer and inner columns are
  told apart) becomes ``CASE WHEN EXISTS (q's rows equal to the row) THEN
  TRUE WHEN EXISTS (q's rows not unequal to it) THEN NULL ELSE FALSE END``,
  IN's three-valued logic over rows.
"""

from __future__ import annotations

from sqlglot import exp

from planner.parse import position
from storage.errors import SqlError, UnsupportedSql

_COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ)


def rewrite_rows_and_quantifiers(tree: exp.Expression) -> exp.Expression:
    """``tree`` with row comparisons, row IN lists and ordered ANY / ALL comparisons spelled out."""
    for node in reversed(list(tree.find_all(*_COMPARISONS))):  # inner ones first: outer ones copy them
        if isinstance(node.this, exp.Tuple) or isinstance(node.expression, exp.Tuple):
            node.replace(_row_comparison(node))
        elif isinstance(node.expression, (exp.Any, exp.All)) and not _membership(node):
            node.replace(_quantified(node))
    for node in reversed(list(tree.find_all(exp.In))):
        if isinstance(node.this, exp.Tuple) and node.args.get("query") is None:
            node.replace(_row_in_list(node))
    return tree


def rewrite_row_in_subquery(tree: exp.Expression) -> exp.Expression:
    """``(a, b) IN (q)`` of a qualified tree as EXISTS tests with IN's NULL logic."""
    for node in reversed(list(tree.find_all(exp.In))):
        if isinstance(node.this, exp.Tuple) and node.args.get("query") is not None:
            node.replace(_row_in_query(node))
    return tree


def _membership(node: exp.Expression) -> bool:
    quantified = node.expression
    return (isinstance(node, exp.EQ) and isinstance(quantified, exp.Any)) or \
        (isinstance(node, exp.NEQ) and isinstance(quantified, exp.All))


def _fields(node: exp.Expression, width: int | None, where: exp.Expression) -> list[exp.Expression]:
    fields = list(node.expressions) if isinstance(node, exp.Tuple) else [node]
    if width is not None and len(fields) != width:
        raise SqlError(f"a row of {width} values cannot be compared with a row of {len(fields)}: {where.sql()}",
                       *position(where))
    return fields


def _equal(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """DuckDB's field equality in a row: NULL equals NULL, and the answer is never NULL."""
    return exp.NullSafeEQ(this=a.copy(), expression=b.copy())


def _less(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """``a`` orders before ``b`` in a row, NULL last: never NULL."""
    nulls = exp.and_(exp.Not(this=exp.Is(this=a.copy(), expression=exp.Null())),
                     exp.Is(this=b.copy(), expression=exp.Null()))
    return exp.Coalesce(this=exp.paren(exp.LT(this=a.copy(), expression=b.copy())), expressions=[exp.paren(nulls)])


def _row_comparison(node: exp.Expression) -> exp.Expression:
    left = _fields(node.this, None, node)
    right = _fields(node.expression, len(left), node)
    equal = exp.and_(*(_equal(a, b) for a, b in zip(left, right)))
    if isinstance(node, (exp.EQ, exp.NullSafeEQ)):
        return exp.paren(equal)
    if isinstance(node, (exp.NEQ, exp.NullSafeNEQ)):
        return exp.paren(exp.Not(this=exp.paren(equal)))
    if isinstance(node, (exp.GT, exp.GTE)):
        left, right = right, left
    # lexicographic: the first field that differs decides; all equal decides for <= and >=
    terms, prefix = [], []
    for a, b in zip(left, right):
        terms.append(exp.and_(*prefix, _less(a, b)) if prefix else _less(a, b))
        prefix.append(_equal(a, b))
    if isinstance(node, (exp.LTE, exp.GTE)):
        terms.append(exp.and_(*prefix))
    return exp.paren(exp.or_(*terms))


def _row_in_list(node: exp.In) -> exp.Expression:
    left = _fields(node.this, None, node)
    options = []
    for option in node.expressions:
        right = _fields(option.this if isinstance(option, exp.Paren) else option, len(left), node)
        options.append(exp.paren(exp.and_(*(_equal(a, b) for a, b in zip(left, right)))))
    return exp.paren(exp.or_(*options)) if options else exp.false()


def _query_of(node: exp.Expression) -> exp.Expression:
    query = node.this
    while isinstance(query, exp.Subquery):
        query = query.this
    return query


def _simple(query: exp.Expression) -> bool:
    """A plain SELECT of one expression, whose value can be aggregated in place."""
    if not isinstance(query, exp.Select) or len(query.expressions) != 1:
        return False
    if any(query.args.get(k) for k in ("group", "having", "distinct", "limit", "offset", "qualify", "with")):
        return False
    item = query.expressions[0]
    item = item.this if isinstance(item, exp.Alias) else item
    if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
        return False
    return not any(True for _ in item.find_all(exp.AggFunc, exp.Window))


def _summary(query: exp.Expression, make) -> exp.Expression:
    """A scalar subquery computing ``make(value)`` over ``query``'s one column."""
    if _simple(query):
        inner = query.copy()
        item = inner.expressions[0]
        item = item.this if isinstance(item, exp.Alias) else item
        inner.set("expressions", [make(item.copy())])
        inner.set("order", None)
        return exp.Subquery(this=inner)
    inner = query.copy()
    first = inner
    while isinstance(first, (exp.SetOperation, exp.Subquery)):  # a set operation's columns are its first side's
        first = first.this
    if not isinstance(first, exp.Select) or len(first.expressions) != 1:
        raise UnsupportedSql(f"the subquery of ANY / ALL must be a SELECT of one column: {query.sql()[:80]}",
                             *position(query))
    item = first.expressions[0]
    if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
        alias = exp.TableAlias(this=exp.to_identifier("_quantified"), columns=[exp.to_identifier("_v")])
        return exp.Subquery(this=exp.select(make(exp.column("_v", table="_quantified"))).from_(
            exp.Subquery(this=inner, alias=alias)))
    first.set("expressions", [exp.alias_(item.unalias() if isinstance(item, exp.Alias) else item, "_v")])
    if isinstance(inner, exp.Select) and inner.args.get("order") is not None and isinstance(item, exp.Alias):
        # ORDER BY may name the item by its alias: order by the expression
        name = item.alias
        inner.set("order", inner.args["order"].transform(
            lambda n: item.this.copy() if isinstance(n, exp.Column) and not n.table and n.name == name else n))
    derived = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("_quantified")))
    value = exp.column("_v", table="_quantified")
    return exp.Subquery(this=exp.select(make(value)).from_(derived))


def _quantified(node: exp.Expression) -> exp.Expression:
    """``x op ALL (q)`` or ``x op ANY (q)`` as a CASE over q's count, non-NULL count and extreme."""
    quantifier = node.expression
    query = _query_of(quantifier)
    if isinstance(query, exp.Select) and len(query.expressions) != 1:
        raise SqlError(f"the subquery of {type(quantifier).__name__.upper()} must return one column: "
                       f"{node.sql()[:80]}", *position(node))
    if isinstance(node, (exp.NullSafeEQ, exp.NullSafeNEQ)):
        raise UnsupportedSql(f"IS [NOT] DISTINCT FROM ANY/ALL is not supported: {node.sql()[:80]}", *position(node))
    every = isinstance(quantifier, exp.All)
    x = node.this
    rows = _summary(query, lambda v: exp.Count(this=exp.Star()))
    values = _summary(query, lambda v: exp.Count(this=v))
    low = _summary(query, lambda v: exp.Min(this=v))
    high = _summary(query, lambda v: exp.Max(this=v))

    def cmp(kind, bound):
        return kind(this=x.copy(), expression=bound.copy())

    # the test that settles the answer: for ALL a value that fails it, for ANY one that passes
    decisive = {
        (True, exp.GT): cmp(exp.LTE, high), (True, exp.GTE): cmp(exp.LT, high),
        (True, exp.LT): cmp(exp.GTE, low), (True, exp.LTE): cmp(exp.GT, low),
        (True, exp.EQ): exp.or_(cmp(exp.NEQ, low), cmp(exp.NEQ, high)),
        (False, exp.GT): cmp(exp.GT, low), (False, exp.GTE): cmp(exp.GTE, low),
        (False, exp.LT): cmp(exp.LT, high), (False, exp.LTE): cmp(exp.LTE, high),
        (False, exp.NEQ): exp.or_(cmp(exp.NEQ, low), cmp(exp.NEQ, high)),
    }[(every, type(node))]
    empty, settled = (exp.true(), exp.false()) if every else (exp.false(), exp.true())
    return exp.paren(exp.Case(ifs=[
        exp.If(this=exp.EQ(this=rows.copy(), expression=exp.Literal.number(0)), true=empty),
        exp.If(this=exp.Is(this=x.copy(), expression=exp.Null()), true=exp.Null()),
        exp.If(this=exp.paren(decisive), true=settled),
        exp.If(this=exp.LT(this=values, expression=rows), true=exp.Null()),
    ], default=empty.copy()))


def _row_in_query(node: exp.In) -> exp.Expression:
    """``(a, b) IN (q)``: TRUE when a row of q equals it, else NULL when one is not unequal to it, else FALSE."""
    left = _fields(node.this, None, node)
    query = _query_of(node.args["query"])
    if not isinstance(query, exp.Select) or any(query.args.get(k) for k in ("limit", "offset", "qualify", "with")) \
            or any(True for item in query.expressions for _ in item.find_all(exp.Window)):
        raise UnsupportedSql("a row IN a subquery with LIMIT, OFFSET, QUALIFY, a window or a set operation is not "
                             f"supported; write EXISTS: {node.sql()[:80]}", *position(node))
    items = [e.this if isinstance(e, exp.Alias) else e for e in query.expressions]
    if len(items) != len(left):
        raise SqlError(f"a row of {len(left)} values IN a subquery of {len(items)} columns: {node.sql()[:80]}",
                       *position(node))
    if any(True for f in left for _ in f.find_all(exp.AggFunc, exp.Subquery)):
        raise UnsupportedSql(f"a row IN a subquery with an aggregate or a subquery in the row is not supported: "
                             f"{node.sql()[:80]}", *position(node))
    grouped = bool(query.args.get("group")) or any(True for e in items for _ in e.find_all(exp.AggFunc))
    matches = exp.and_(*(exp.EQ(this=a.copy(), expression=b.copy()) for a, b in zip(left, items)))

    def exists(condition: exp.Expression) -> exp.Expression:
        inner = query.copy()
        inner.set("expressions", [exp.Literal.number(1)])
        inner.set("order", None)
        inner.set("distinct", None)
        place = "having" if grouped else "where"
        current = inner.args.get(place)
        combined = exp.and_(current.this, condition) if current is not None else condition
        inner.set(place, exp.Having(this=combined) if grouped else exp.Where(this=combined))
        return exp.Exists(this=inner)

    unknown = exp.Is(this=exp.paren(matches.copy()), expression=exp.Null())
    return exp.paren(exp.Case(ifs=[exp.If(this=exists(matches), true=exp.true()),
                                   exp.If(this=exists(unknown), true=exp.Null())], default=exp.false()))
