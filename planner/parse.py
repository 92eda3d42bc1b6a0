"""SQL text to a sqlglot tree, with errors that carry line and column.

``EXPLAIN [ANALYZE]`` in front of a query is recognised here (sqlglot would
fall back to an opaque command): the prefix is blanked out so that positions
in error messages still point into the text the user wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from storage.errors import SqlError, UnsupportedSql

DEFAULT_DIALECT = "duckdb"
#: marks a ``//`` (exp.IntDiv) that divides non-integers as ``/`` does: DuckDB's, unlike MySQL's DIV
DIVIDES_AS_SLASH = "divides_as_slash"
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALYZE)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    """A parsed query, and whether it was prefixed by EXPLAIN [ANALYZE]."""

    tree: exp.Expression
    explain: bool = False
    analyze: bool = False
    dialect: str = DEFAULT_DIALECT


def check_dialect(dialect: str | None) -> str:
    """The dialect name if sqlglot knows it; SqlError listing the known ones if not."""
    name = (dialect or DEFAULT_DIALECT).lower()
    try:
        Dialect.get_or_raise(name)
    except (ValueError, KeyError):
        known = ", ".join(sorted(d for d in Dialect.classes if d))
        raise SqlError(f"SQL dialect {dialect!r} is unknown; use one of: {known}") from None
    return name


def parse(sql: str, dialect: str | None = None) -> Statement:
    """Parse one statement of ``sql`` in ``dialect`` (default duckdb)."""
    dialect = check_dialect(dialect)
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("the query is empty; write a SELECT statement", 1, 1)
    explain = analyze = False
    match = _EXPLAIN.match(sql)
    if match:
        explain, analyze = True, bool(match.group(1))
        sql = " " * match.end() + sql[match.end():]
    try:
        trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        description = first.get("description") or str(error).split("\n")[0]
        description = re.sub(r"<Token token_type: [^,]+, text: ([^,]*),[^>]*>", r"'\1'", description)
        highlight = first.get("highlight")
        near = f" near {highlight!r}" if highlight else ""
        column = first.get("col")
        if column is not None and highlight:
            column = max(1, column - len(highlight) + 1)
        raise SqlError(f"syntax error: {description}{near}", first.get("line"), column) from None
    except TokenError as error:
        line, column = _unterminated_quote(sql)
        raise SqlError(f"syntax error: {error}; check for an unterminated quote", line, column) from None
    if not trees:
        raise SqlError("the query is empty; write a SELECT statement", 1, 1)
    _refuse_empty_items(sql, dialect)
    if len(trees) > 1:
        raise UnsupportedSql("several statements were given; run one query at a time")
    tree = trees[0]
    if isinstance(tree, exp.Values) and tree.expressions and not tree.alias:  # VALUES (1, 'a'), ... as a query
        width = len(tree.expressions[0].expressions) if isinstance(tree.expressions[0], exp.Tuple) else 1
        tree.set("alias", exp.TableAlias(this=exp.to_identifier("valueslist"),
                                         columns=[exp.to_identifier(f"col{i}") for i in range(width)]))
        tree = exp.select("*").from_(tree)
    if not isinstance(tree, exp.Query):
        kind = tree.key.upper()
        raise UnsupportedSql(f"{kind} statements are not supported; Petrel runs SELECT queries")
    _mark_safe_division(tree, dialect)
    return Statement(tree, explain, analyze, dialect)


def _mark_safe_division(tree: exp.Expression, dialect: str) -> None:
    """``DIV`` and ``%`` marked ``safe`` where the dialect makes a division by zero NULL.

    sqlglot marks ``/`` itself (``exp.Div``'s ``safe`` and ``typed``); in
    those dialects (mysql, sqlite) integer division and remainder by zero
    are NULL as well.  DuckDB's ``//`` is marked :data:`DIVIDES_AS_SLASH`:
    on anything but two integers it is ``/`` (``7.0e0 // 2`` is 3.5).
    """
    if dialect == "duckdb":
        for node in tree.find_all(exp.IntDiv):
            node.meta[DIVIDES_AS_SLASH] = True
    if not Dialect.get_or_raise(dialect).SAFE_DIVISION:
        return
    for node in tree.find_all(exp.IntDiv, exp.Mod):
        node.set("safe", True)


_OPENS_A_LIST = {TokenType.COMMA, TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.SELECT, TokenType.DISTINCT}


def _refuse_empty_items(sql: str, dialect: str) -> None:
    """SqlError at a comma with nothing before it (``a,, b``, ``f(, x)``): sqlglot drops such items silently."""
    previous = None
    for token in Dialect.get_or_raise(dialect).tokenize(sql):
        if token.token_type is TokenType.COMMA and previous in _OPENS_A_LIST:
            raise SqlError("syntax error: unexpected ',' with no item before it; remove the extra comma",
                           token.line, token.col)
        previous = token.token_type


def _unterminated_quote(sql: str) -> tuple[int | None, int | None]:
    """Line and column of the quote that is never closed, if there is one."""
    quote = None
    start = 0
    for index, char in enumerate(sql):
        if quote is None and char in "'\"`":
            quote, start = char, index
        elif char == quote:
            quote = None
    if quote is None:
        return None, None
    line = sql.count("\n", 0, start) + 1
    return line, start - (sql.rfind("\n", 0, start) + 1) + 1


def position(node: exp.Expression) -> tuple[int | None, int | None]:
    """Line and column where ``node`` starts in the query text, when known.

    The parser keeps positions of names and literals only: a node without
    one inside it (``[1, 2]`` has its literals; ``*`` has nothing) is placed
    at the nearest enclosing node that has one.
    """
    for candidate in (node, node.this if isinstance(node.this, exp.Expression) else None, *node.find_all(exp.Identifier)):
        found = _located(candidate)
        if found is not None:
            return found
    inside = [n for n in node.walk() if _located(n) is not None]
    if inside:
        first = min(inside, key=lambda n: n.meta.get("start", 0))
        return _located(first)
    if node.parent is not None:
        return position(node.parent)
    return None, None


def _located(node: object) -> tuple[int, int | None] | None:
    meta = node.meta if isinstance(node, exp.Expression) and hasattr(node, "meta") else {}
    if meta and "line" in meta:
        start_col = meta.get("col")
        if "start" in meta and "end" in meta and start_col is not None:
            start_col = start_col - (meta["end"] - meta["start"])
        return meta["line"], start_col
    return None
