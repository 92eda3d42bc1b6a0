"""WITH RECURSIVE: a recursive CTE computed by iteration before the query that reads it is planned.

``WITH RECURSIVE r(n) AS (base UNION [ALL] step) SELECT ... FROM r`` runs
``base``, then ``step`` again and again with ``r`` standing for the rows the
previous round added, until a round adds none; with UNION (not ALL) a round
keeps only rows not seen before (NULLs equal, as in set operations).  Each
round is an ordinary query, planned and run by the caller's ``execute``
(in-process or on the workers), with ``r`` a table in memory; the query
itself then reads all of ``r``'s rows as a table in memory.  A round's rows
take the types of the base's columns.  A recursion that has not ended
after :data:`MAX_ROUNDS` rounds fails with :class:`QueryFailed`.  The rounds
run while the query is planned, so even a plain EXPLAIN of such a query
runs them; the plan shows the CTE as a table in memory.
"""

from __future__ import annotations

from typing import Callable

import pyarrow as pa
from sqlglot import exp

from planner.logical import Memory
from planner.parse import position
from storage.errors import QueryFailed, SqlError, UnsupportedSql

MAX_ROUNDS = 10_000

#: plans and runs one SQL query, the given tables in memory readable by name
Execute = Callable[[str, dict[str, Memory]], pa.Table]


def is_recursive(tree: exp.Expression) -> bool:
    """Whether ``tree`` starts with WITH RECURSIVE."""
    with_ = tree.args.get("with_") or tree.args.get("with")
    return bool(with_ is not None and with_.args.get("recursive"))


def materialize(tree: exp.Expression, execute: Execute) -> tuple[exp.Expression, dict[str, Memory]]:
    """``tree`` without its recursive CTEs, and their rows as tables in memory, by name."""
    tree = tree.copy()
    with_ = tree.args.get("with_") or tree.args.get("with")
    memories: dict[str, Memory] = {}
    kept: list[exp.CTE] = []
    for cte in list(with_.expressions):
        name = cte.alias
        if not _reads(cte.this, name):
            kept.append(cte)
            continue
        memories[name] = Memory(name, _iterate(cte, kept, memories, execute))
    if kept:
        with_.set("expressions", kept)
        with_.set("recursive", False)
    else:
        tree.set("with_", None)
        tree.set("with", None)
    return tree, memories


def _reads(node: exp.Expression, name: str) -> bool:
    return any(t.name == name and not t.db for t in node.find_all(exp.Table))


def _iterate(cte: exp.CTE, kept: list[exp.CTE], memories: dict[str, Memory], execute: Execute) -> pa.Table:
    name = cte.alias
    body = cte.this
    if not isinstance(body, exp.Union) or _reads(body.this, name):
        raise UnsupportedSql(f"recursive CTE {name} must be a base query UNION [ALL] a step that reads {name}",
                             *position(cte))
    distinct = bool(body.args.get("distinct"))
    alias = cte.args.get("alias")
    names = [c.name for c in alias.columns] if alias is not None and alias.columns else None

    def run(query: exp.Expression, delta: pa.Table | None) -> pa.Table:
        query = query.copy()
        if kept:
            query.set("with_", exp.With(expressions=[c.copy() for c in kept]))
        tables = dict(memories)
        if delta is not None:
            tables[name] = Memory(name, delta)
        return execute(query.sql(dialect="duckdb"), tables)

    first = run(body.this, None)
    if names is not None:
        if len(names) != first.num_columns:
            raise SqlError(f"recursive CTE {name} names {len(names)} columns but its base query gives "
                           f"{first.num_columns}")
        first = first.rename_columns(names)
    schema = first.schema
    seen: set[tuple] = set()
    if distinct:
        first = _unseen(first, seen)
    parts, delta = [first], first
    for _ in range(MAX_ROUNDS):
        if delta.num_rows == 0:
            return pa.concat_tables(parts)
        found = run(body.expression, delta)
        if found.num_columns != len(schema):
            raise SqlError(f"the step of recursive CTE {name} gives {found.num_columns} columns, its base "
                           f"{len(schema)}")
        try:
            found = found.rename_columns(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise SqlError(f"the step of recursive CTE {name} gives values that do not fit its base's types "
                           f"({schema}): {error}; CAST the base's columns") from None
        delta = _unseen(found, seen) if distinct else found
        parts.append(delta)
    raise QueryFailed(f"recursive CTE {name} still added rows after {MAX_ROUNDS} rounds; make its step stop "
                      "(a WHERE that ends the recursion)")


def _unseen(table: pa.Table, seen: set[tuple]) -> pa.Table:
    """The rows of ``table`` not in ``seen`` (each once), which are added to ``seen``."""
    keep = []
    for index, row in enumerate(zip(*(column.to_pylist() for column in table.columns)) if table.num_columns else ()):
        key = tuple(_key(v) for v in row)
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return table.take(pa.array(keep, pa.int64()))


def _key(value):
    if isinstance(value, float) and value == 0.0:
        return 0.0  # -0.0 and 0.0 are one value
    return value
