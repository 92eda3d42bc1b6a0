"""Random SQL queries over small tables, for comparing Petrel with DuckDB.

:class:`QueryGenerator` draws a query from a seed: the same seed always
gives the same text.  Queries read the tables of :data:`TABLES` (NULLs,
duplicate rows, negative numbers, an integer and a float column side by
side, and an empty table; fractional literals are written both as DOUBLEs,
1.25e0, and as DECIMALs, 1.25, which DuckDB types DECIMAL(3,2)), and are
built from the constructs a conformance corpus exercises: CASE, COALESCE,
NULLIF, BETWEEN, IN lists, arithmetic with division and modulo, casts (to
DECIMAL(p,s) too); aggregates with and without
DISTINCT, GROUP BY and HAVING; subqueries in the select list, WHERE, CASE,
HAVING, ORDER BY and FROM, correlated (equality and not, nested) or not;
inner, cross and outer joins with non-equality conditions; set operations
and their chains; ORDER BY with LIMIT and OFFSET.

Every case carries the names of the constructs it uses, so a run can count
mismatches and errors by construct.  The generator avoids what would make
DuckDB's answer ambiguous or an error: divisors are never zero, a scalar
subquery returns at most one row, and a query with LIMIT orders by every
output column.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pyarrow as pa

INT, FLOAT, STR, BOOL = "int", "float", "str", "bool"
NUMERIC = (INT, FLOAT)

COLUMNS = (("a", INT), ("b", INT), ("c", FLOAT), ("s", STR))


def _table(rows: list[tuple]) -> pa.Table:
    names = [n for n, _ in COLUMNS]
    types = {INT: pa.int64(), FLOAT: pa.float64(), STR: pa.string()}
    return pa.table({n: pa.array([r[i] for r in rows], types[t]) for i, (n, t) in enumerate(COLUMNS)})


TABLES: dict[str, pa.Table] = {
    "ta": _table([
        (1, 2, 1.5, "x"), (1, 2, 1.5, "x"), (2, None, -0.5, "y"), (None, 3, 2.0, None), (-3, -1, None, "z"),
        (4, 0, 4.0, "x"), (2, 5, -2.25, "w"), (None, None, None, None), (0, 2, 0.0, "y"),
    ]),
    "tb": _table([
        (1, 3, 1.5, "x"), (2, 2, 2.0, "y"), (2, None, -0.5, None), (None, 1, 3.0, "v"), (5, -2, -1.0, "z"),
        (1, 3, 1.5, "x"), (-3, 0, None, "w"),
    ]),
    "te": _table([]),
}
WEIGHTS = {"ta": 5, "tb": 4, "te": 1}


@dataclass(frozen=True)
class Case:
    """One generated query, the constructs it uses, and whether its row order is fixed."""

    seed: int
    sql: str
    constructs: frozenset[str]
    ordered: bool


@dataclass
class _Scope:
    """Columns a SELECT can read: its own FROM items, then its enclosing queries' (correlation)."""

    columns: list[tuple[str, str]]  # (reference, type)
    outer: list[tuple[str, str]] = field(default_factory=list)


class QueryGenerator:
    """Draws queries; ``case(seed)`` is a pure function of the seed."""

    def __init__(self, max_depth: int = 2) -> None:
        self.max_depth = max_depth

    def case(self, seed: int) -> Case:
        self.rng = random.Random(seed)
        self.tags: set[str] = set()
        self._aliases = 0
        width = self.rng.choice((1, 1, 2, 2, 3))
        types = [self.rng.choice((INT, INT, FLOAT, STR)) for _ in range(width)]
        ordered = False
        if self.rng.random() < 0.25:
            sql = self._set_chain(types)
        else:
            sql = self._select(_Scope([]), types, self.max_depth)
        if self.rng.random() < 0.35:
            sql, ordered = self._order_limit(sql, types), True
        elif self.rng.random() < 0.05:
            self.tags.add("table_query")
            sql, ordered = f"TABLE {self.rng.choice(list(TABLES))}", False
        return Case(seed, sql, frozenset(self.tags), ordered)

    # -- queries ---------------------------------------------------------------------
    def _alias(self) -> str:
        self._aliases += 1
        return f"q{self._aliases}"

    def _set_chain(self, types: list[str]) -> str:
        parts = [self._select(_Scope([]), types, self.max_depth - 1)]
        for _ in range(self.rng.choice((1, 1, 2))):
            op = self.rng.choice(("UNION", "UNION ALL", "INTERSECT", "EXCEPT", "INTERSECT ALL", "EXCEPT ALL"))
            self.tags.add("set_" + op.split()[0].lower() + ("_all" if "ALL" in op else ""))
            parts.append(op)
            parts.append(self._select(_Scope([]), types, self.max_depth - 1))
        if len(parts) > 3:
            self.tags.add("set_chain")
        if self.rng.random() < 0.3:  # a parenthesised right side changes the chain's grouping
            return f"{parts[0]} {parts[1]} ({' '.join(parts[2:])})" if len(parts) > 3 else " ".join(parts)
        return " ".join(parts)

    def _order_limit(self, sql: str, types: list[str]) -> str:
        """ORDER BY every output column (a total order, so LIMIT is exact), on the query or a wrapper."""
        self.tags.add("order_by")
        width = len(types)
        keys = []
        if self.rng.random() < 0.25:
            self.tags.add("subquery_in_order_by")
            scope = _Scope([(f"r.c{i}", t) for i, t in enumerate(types)])
            keys.append(self._scalar_subquery(self.rng.choice(NUMERIC), scope, 0))
        for i in self.rng.sample(range(1, width + 1), width):
            key = str(i)
            if self.rng.random() < 0.4:
                key += " DESC"
            if self.rng.random() < 0.3:
                key += self.rng.choice((" NULLS FIRST", " NULLS LAST"))
            keys.append(key)
        if not keys and self.rng.random() < 0.4:
            text = f"{sql} ORDER BY {', '.join(keys)}"
        else:
            text = f"SELECT * FROM ({sql}) AS r ORDER BY {', '.join(keys)}"
        if self.rng.random() < 0.7:
            self.tags.add("limit")
            text += f" LIMIT {self.rng.randint(0, 6)}"
            if self.rng.random() < 0.4:
                self.tags.add("offset")
                text += f" OFFSET {self.rng.randint(0, 4)}"
        return text

    def _from(self, depth: int) -> tuple[str, list[tuple[str, str]]]:
        """A FROM clause and the columns it offers."""
        roll = self.rng.random()
        if roll < 0.55 or depth <= 0:
            return self._table()
        if roll < 0.70:
            self.tags.add("derived_table")
            alias = self._alias()
            types = [self.rng.choice((INT, INT, FLOAT, STR)) for _ in range(self.rng.choice((1, 2, 3)))]
            inner = self._select(_Scope([]), types, depth - 1)
            return f"({inner}) AS {alias}", [(f"{alias}.c{i}", t) for i, t in enumerate(types)]
        left, lcols = self._table()
        right, rcols = self._table()
        if roll < 0.78:
            self.tags.add("cross_join")
            return f"{left}, {right}", lcols + rcols
        kind = self.rng.choice(("JOIN", "JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"))
        if kind != "JOIN":
            self.tags.add("outer_join")
        self.tags.add("join")
        conditions = []
        if self.rng.random() < 0.75:
            (l, lt), (r, rt) = self._pair(lcols, rcols)
            conditions.append(f"{l} = {r}")
        if not conditions or self.rng.random() < 0.4:
            self.tags.add("non_equi_join")
            (l, _), (r, _) = self._pair(lcols, rcols)
            conditions.append(f"{l} {self.rng.choice(('<', '<=', '>', '<>'))} {r}")
        if self.rng.random() < 0.2:
            conditions.append(self._bool(_Scope(lcols + rcols), 0))
        if kind == "JOIN" and depth > 0 and self.rng.random() < 0.15:
            self.tags.add("subquery_in_join_on")
            conditions.append(self._exists(_Scope(lcols + rcols), depth - 1))
        return f"{left} {kind} {right} ON {' AND '.join(conditions)}", lcols + rcols

    def _pair(self, lcols, rcols):
        """A column from each side, both numbers or both strings."""
        kinds = [k for k in (INT, INT, FLOAT, STR)
                 if any(self._comparable(c[1], k) for c in lcols) and any(self._comparable(c[1], k) for c in rcols)]
        kind = self.rng.choice(kinds)
        pick = lambda cols: self.rng.choice([c for c in cols if self._comparable(c[1], kind)])
        return pick(lcols), pick(rcols)

    @staticmethod
    def _comparable(have: str, want: str) -> bool:
        return (have in NUMERIC) == (want in NUMERIC) and (have == STR) == (want == STR)

    def _table(self) -> tuple[str, list[tuple[str, str]]]:
        name = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        if name == "te":
            self.tags.add("empty_table")
        alias = self._alias()
        return f"{name} AS {alias}", [(f"{alias}.{c}", t) for c, t in COLUMNS]

    def _select(self, outer: _Scope, types: list[str], depth: int) -> str:
        """A SELECT whose output columns have ``types`` (named c0, c1, ...)."""
        from_sql, columns = self._from(depth)
        scope = _Scope(columns, outer.columns + outer.outer)
        where = ""
        if self.rng.random() < 0.6:
            where = " WHERE " + self._bool(scope, depth)
        if "SELECT" in where:
            self.tags.add("subquery_in_where")
        grouped = self.rng.random() < 0.35
        if grouped:
            return self._grouped(from_sql, where, scope, types, depth)
        distinct = ""
        if self.rng.random() < 0.12:
            self.tags.add("select_distinct")
            distinct = "DISTINCT "
        items = [f"{self._value(t, scope, depth)} AS c{i}" for i, t in enumerate(types)]
        if self.rng.random() < 0.1 and depth > 0:
            i = self.rng.randrange(len(items))
            self.tags.add("predicate_in_select")
            items[i] = f"CASE WHEN {self._bool(scope, depth)} THEN {self._value(types[i], scope, 0)} END AS c{i}"
        if any("SELECT" in item for item in items):
            self.tags.add("subquery_in_select")
        return f"SELECT {distinct}{', '.join(items)} FROM {from_sql}{where}"

    def _grouped(self, from_sql: str, where: str, scope: _Scope, types: list[str], depth: int) -> str:
        keys = []
        if self.rng.random() < 0.8:
            self.tags.add("group_by")
            keys = self.rng.sample(scope.columns, min(len(scope.columns), self.rng.choice((1, 1, 2))))
            if self.rng.random() < 0.12:
                self.tags.add("repeated_group_key")
                keys.append(keys[0])
        items = []
        for i, t in enumerate(types):
            matching = [k for k in keys if k[1] == t or (k[1] in NUMERIC and t in NUMERIC)]
            if matching and self.rng.random() < 0.4:
                items.append(f"{self.rng.choice(matching)[0]} AS c{i}")
            else:
                items.append(f"{self._aggregate(t, scope, depth)} AS c{i}")
        text = f"SELECT {', '.join(items)} FROM {from_sql}{where}"
        if keys:
            text += " GROUP BY " + ", ".join(k[0] for k in keys)
        else:
            self.tags.add("aggregate_no_group")
        if self.rng.random() < 0.3:
            self.tags.add("having")
            text += " HAVING " + self._having(_Scope(keys, scope.outer), scope, depth)
        return text

    def _aggregate(self, type_: str, scope: _Scope, depth: int) -> str:
        self.tags.add("aggregate")
        inner = _Scope(scope.columns, scope.outer)
        if type_ == STR:
            func = self.rng.choice(("min", "max"))
            arg = self._value(STR, _Scope(scope.columns), 0)
        else:
            func = self.rng.choice(("count", "count", "sum", "avg", "min", "max", "count_star"))
            if func == "count_star":
                return "count(*)"
            arg = self._value(self.rng.choice(NUMERIC), _Scope(inner.columns), 0)
        distinct = ""
        if self.rng.random() < 0.3:
            self.tags.add("distinct_aggregate")
            distinct = "DISTINCT "
        call = f"{func}({distinct}{arg})"
        if type_ == FLOAT and func in ("count", "min", "max") and self.rng.random() < 0.3:
            return f"{call} * 1.5e0"
        if type_ == INT and func == "avg":
            return f"CAST({call} AS BIGINT)"
        return call

    def _having(self, keys: _Scope, scope: _Scope, depth: int) -> str:
        """A HAVING condition: an aggregate against a constant or a subquery that reads only group keys."""
        left = self._aggregate(INT, scope, depth)
        roll = self.rng.random()
        if roll < 0.25 and depth > 0:
            self.tags.add("subquery_in_having")
            right = self._scalar_subquery(INT, keys, depth - 1)
        else:
            right = str(self.rng.randint(-1, 3))
        return f"{left} {self.rng.choice(('>', '>=', '<', '=', '<>'))} {right}"

    # -- expressions ---------------------------------------------------------------------
    def _column(self, type_: str, scope: _Scope) -> str | None:
        local = [c for c, t in scope.columns if self._fits(t, type_)]
        outer = [c for c, t in scope.outer if self._fits(t, type_)]
        if outer and self.rng.random() < 0.3:
            self.tags.add("correlated")
            return self.rng.choice(outer)
        return self.rng.choice(local) if local else None

    @staticmethod
    def _fits(have: str, want: str) -> bool:
        return have == want or (want == FLOAT and have == INT)

    def _literal(self, type_: str) -> str:
        if type_ == INT:
            return str(self.rng.choice((-3, -1, 0, 1, 2, 3, 5)))
        if type_ == FLOAT:
            if self.rng.random() < 0.4:  # DECIMAL literals: 1.25 is DECIMAL(3,2), 0.1 + 0.2 is exactly 0.3
                self.tags.add("decimal_literal")
                return self.rng.choice(("1.5", "-0.25", "0.1", "2.50", "0.05", "-3.125", "10.0", "0.2"))
            return self.rng.choice(("1.25e0", "-0.75e0", "2.0e0", "0.25e0", "-2.25e0"))  # DOUBLEs
        if type_ == STR:
            return self.rng.choice(("'x'", "'y'", "'z'", "'w'"))
        return self.rng.choice(("TRUE", "FALSE"))

    def _value(self, type_: str, scope: _Scope, depth: int) -> str:
        if type_ == BOOL:
            return self._bool(scope, depth)
        if type_ == STR:
            return self._string(scope, depth)
        roll = self.rng.random()
        if roll < 0.35 or depth < 0:
            column = self._column(type_, scope)
            return column if column is not None else self._literal(type_)
        if roll < 0.45:
            return self._literal(type_)
        if roll < 0.55:
            self.tags.add("arithmetic")
            op = self.rng.choice(("+", "-", "*"))
            return f"({self._value(type_, scope, depth - 1)} {op} {self._value(INT, scope, depth - 1)})"
        if roll < 0.62:
            if type_ == FLOAT:
                self.tags.add("division")
                return f"({self._value(FLOAT, scope, depth - 1)} / {self._divisor(scope, depth)})"
            self.tags.add("modulo")
            return f"({self._value(INT, scope, depth - 1)} % {self._divisor(scope, depth, INT)})"
        if roll < 0.69:
            self.tags.add("case")
            other = f" ELSE {self._value(type_, scope, depth - 1)}" if self.rng.random() < 0.7 else ""
            return f"CASE WHEN {self._bool(scope, depth - 1)} THEN {self._value(type_, scope, depth - 1)}{other} END"
        if roll < 0.75:
            self.tags.add("coalesce")
            return f"COALESCE({self._value(type_, scope, depth - 1)}, {self._value(type_, scope, depth - 1)})"
        if roll < 0.80:
            self.tags.add("nullif")
            return f"NULLIF({self._value(type_, scope, depth - 1)}, {self._literal(INT)})"
        if roll < 0.86:
            self.tags.add("cast")
            target = "BIGINT" if type_ == INT else "DOUBLE"
            source = self.rng.choice((INT, FLOAT)) if type_ == INT else INT
            if type_ == FLOAT and self.rng.random() < 0.5:
                self.tags.add("decimal_cast")
                target = self.rng.choice(("DECIMAL(18,3)", "DECIMAL(10,2)", "DECIMAL(12,4)", "DECIMAL(9,1)", "DECIMAL"))
                source = self.rng.choice((INT, FLOAT))
            return f"CAST({self._value(source, scope, depth - 1)} AS {target})"
        if roll < 0.89:
            return f"abs({self._value(type_, scope, depth - 1)})"
        if depth > 0:
            return self._scalar_subquery(type_, scope, depth - 1)
        return self._literal(type_)

    def _divisor(self, scope: _Scope, depth: int, type_: str = FLOAT) -> str:
        """A divisor that is never zero (DuckDB refuses division by zero), possibly NULL."""
        roll = self.rng.random()
        if roll < 0.4:
            return self.rng.choice(("2", "-3", "4", "1.25e0", "0.5") if type_ == FLOAT else ("2", "-3", "4"))
        column = self._column(INT, scope) or "1"
        if roll < 0.7:
            self.tags.add("nullif")
            return f"NULLIF({column}, 0)"
        return f"(abs({column}) + 1)"

    def _string(self, scope: _Scope, depth: int) -> str:
        roll = self.rng.random()
        if roll < 0.55 or depth < 0:
            column = self._column(STR, scope)
            return column if column is not None else self._literal(STR)
        if roll < 0.65:
            return self._literal(STR)
        if roll < 0.78:
            self.tags.add("coalesce")
            return f"COALESCE({self._string(scope, depth - 1)}, {self._literal(STR)})"
        if roll < 0.9:
            self.tags.add("case")
            return f"CASE WHEN {self._bool(scope, depth - 1)} THEN {self._string(scope, depth - 1)} ELSE {self._literal(STR)} END"
        if depth > 0:
            return self._scalar_subquery(STR, scope, depth - 1)
        return self._literal(STR)

    def _bool(self, scope: _Scope, depth: int) -> str:
        roll = self.rng.random()
        if roll < 0.3 or depth < 0:
            type_ = self.rng.choice((INT, FLOAT, STR))
            op = self.rng.choice(("=", "<>", "<", "<=", ">", ">="))
            return f"{self._value(type_, scope, depth - 1)} {op} {self._value(type_, scope, depth - 1)}"
        if roll < 0.38:
            self.tags.add("between")
            low = self._value(INT, scope, depth - 1)
            high = self._value(INT, scope, depth - 1)
            negated = "NOT " if self.rng.random() < 0.3 else ""
            return f"{self._value(INT, scope, depth - 1)} {negated}BETWEEN {low} AND {high}"
        if roll < 0.46:
            self.tags.add("in_list")
            type_ = self.rng.choice((INT, STR))
            values = [self._literal(type_) for _ in range(self.rng.randint(1, 4))]
            if self.rng.random() < 0.3:
                values.append("NULL")
            negated = "NOT " if self.rng.random() < 0.3 else ""
            probe = self._value(type_, scope, depth - 1)
            if self.rng.random() < 0.25:  # a row of two values: compared as DuckDB compares rows
                self.tags.add("row_value")
                second = self._value(INT, scope, depth - 1)
                rows = [f"({value}, {self._literal(INT)})" for value in values]
                if self.rng.random() < 0.5:
                    operator = self.rng.choice(("=", "<>", "<", "<=", ">", ">="))
                    return f"({probe}, {second}) {operator} {rows[0]}"
                return f"({probe}, {second}) {negated}IN ({', '.join(rows)})"
            return f"{probe} {negated}IN ({', '.join(values)})"
        if roll < 0.52:
            negated = "NOT " if self.rng.random() < 0.5 else ""
            return f"{self._value(self.rng.choice((INT, FLOAT, STR)), scope, depth - 1)} IS {negated}NULL"
        if roll < 0.64:
            self.tags.add("and_or_not")
            form = self.rng.choice(("AND", "OR", "OR", "NOT"))
            if form == "NOT":
                return f"NOT ({self._bool(scope, depth - 1)})"
            return f"({self._bool(scope, depth - 1)} {form} {self._bool(scope, depth - 1)})"
        if depth <= 0:
            return f"{self._value(INT, scope, -1)} > {self._literal(INT)}"
        if roll < 0.78:
            return self._exists(scope, depth - 1)
        if roll < 0.9:
            return self._in_subquery(scope, depth - 1)
        type_ = self.rng.choice((INT, FLOAT))
        left = self._value(type_, scope, depth - 1)
        return f"{left} {self.rng.choice(('=', '<', '>=', '<>'))} {self._scalar_subquery(type_, scope, depth - 1)}"

    # -- subqueries ------------------------------------------------------------------------
    def _inner_scope(self, scope: _Scope) -> tuple[str, _Scope]:
        from_sql, columns = self._table() if self.rng.random() < 0.85 else self._from(1)
        return from_sql, _Scope(columns, scope.columns + scope.outer)

    def _correlation(self, inner: _Scope) -> str:
        """A WHERE condition of a subquery, often linking it to the enclosing query."""
        linkable = any(self._comparable(o, i) for _, o in inner.outer for _, i in inner.columns)
        if linkable and self.rng.random() < 0.7:
            self.tags.add("correlated")
            (i, it), (o, ot) = self._pair(inner.columns, inner.outer)
            op = "="
            if self.rng.random() < 0.4:
                self.tags.add("correlated_non_equality")
                op = self.rng.choice(("<", ">=", "<>"))
            condition = f"{i} {op} {o}"
            if self.rng.random() < 0.3:
                condition += f" AND {self._bool(_Scope(inner.columns), 0)}"
            return condition
        return self._bool(_Scope(inner.columns), 0)

    def _subquery_context(self, scope: _Scope) -> None:
        if scope.outer:
            self.tags.add("nested_subquery")

    def _scalar_subquery(self, type_: str, scope: _Scope, depth: int) -> str:
        self.tags.add("scalar_subquery")
        self._subquery_context(scope)
        from_sql, inner = self._inner_scope(scope)
        where = f" WHERE {self._correlation(inner)}" if self.rng.random() < 0.85 else ""
        if depth > 0 and self.rng.random() < 0.4:  # depth is left: a subquery inside this one
            where += f" AND {self._bool(inner, depth)}" if where else f" WHERE {self._bool(inner, depth)}"
        if type_ == STR:
            func = self.rng.choice(("min", "max"))
            return f"(SELECT {func}({self._column(STR, _Scope(inner.columns)) or chr(39) + 'x' + chr(39)}) FROM {from_sql}{where})"
        func = self.rng.choice(("count", "sum", "min", "max", "avg", "count_star"))
        column = self._column(INT if type_ == INT else self.rng.choice(NUMERIC), _Scope(inner.columns)) or "1"
        if func == "count_star":
            value = "count(*)"
        elif func == "avg" and type_ == INT:
            value = f"CAST(avg({column}) AS BIGINT)"
        else:
            value = f"{func}({column})"
        if self.rng.random() < 0.2:
            value = f"COALESCE({value}, 0) + 1"
        return f"(SELECT {value} FROM {from_sql}{where})"

    def _exists(self, scope: _Scope, depth: int) -> str:
        self.tags.add("exists")
        self._subquery_context(scope)
        from_sql, inner = self._inner_scope(scope)
        where = f" WHERE {self._correlation(inner)}"
        if depth > 0 and self.rng.random() < 0.4:
            where += f" AND {self._bool(inner, depth)}"
        negated = "NOT " if self.rng.random() < 0.4 else ""
        if negated:
            self.tags.add("not_exists")
        return f"{negated}EXISTS (SELECT 1 FROM {from_sql}{where})"

    def _in_subquery(self, scope: _Scope, depth: int) -> str:
        self.tags.add("in_subquery")
        self._subquery_context(scope)
        type_ = self.rng.choice((INT, INT, STR))
        probe = self._value(type_, scope, -1)
        from_sql, inner = self._inner_scope(scope)
        where = f" WHERE {self._correlation(inner)}" if self.rng.random() < 0.6 else ""
        negated = self.rng.random() < 0.4
        if negated:
            self.tags.add("not_in_subquery")
        value = self._column(type_, _Scope(inner.columns)) or self._literal(type_)
        if self.rng.random() < 0.15:
            self.tags.add("quantified_subquery")
            operator = '<> ALL' if negated else '= ANY'
            if self.rng.random() < 0.5:  # an ordered comparison, or = ALL / <> ANY: a CASE over MIN, MAX and counts
                self.tags.add("ordered_quantified_subquery")
                operator = self.rng.choice(("> ALL", "< ANY", ">= ALL", "<= SOME", "= ALL", "<> ANY", "< ALL", "> ANY"))
                operator = f"NOT {probe} {operator}" if negated else f"{probe} {operator}"
                return f"{operator} (SELECT {value} FROM {from_sql}{where})"
            return f"{probe} {operator} (SELECT {value} FROM {from_sql}{where})"
        return f"{probe} {'NOT ' if negated else ''}IN (SELECT {value} FROM {from_sql}{where})"
