"""Scalar SQL expressions compiled to ``pyarrow.compute`` expressions.

Where a SQL function is compiled: in the handler module of its kind,
registered with the one compiler (:mod:`.compiler`) through the tables in
:mod:`.registry` (``@handles(exp.Lower)``, or ``@named("strlen")`` for a
function sqlglot does not know):

- :mod:`.values` -- columns, struct fields, literals
- :mod:`.arithmetic` -- ``+ - * / // %`` and math functions
- :mod:`.comparisons` -- comparisons, IS, BETWEEN, IN, LIKE, AND/OR/NOT
- :mod:`.conditionals` -- CASE, IF, COALESCE, NULLIF, GREATEST, LEAST
- :mod:`.casts` -- CAST and TRY_CAST
- :mod:`.strings` -- string and regular expression functions
- :mod:`.temporal` -- time functions and INTERVAL arithmetic
- :mod:`.json` -- JSON paths: ``json_extract_string`` (``->>``), ``json_extract``
- :mod:`.kv` -- ``parse_kv`` over ``key=value`` text

Imports point one way: handler modules import the compiler, never the
reverse; this package imports the handler modules so that they register.
"""

from __future__ import annotations

from planner.expressions import (  # noqa: F401 - imported so that they register their handlers
    arithmetic,
    casts,
    comparisons,
    conditionals,
    json,
    kv,
    strings,
    temporal,
    values,
)
from planner.expressions.compiler import ExpressionCompiler
from planner.expressions.typed import Typed, constant

__all__ = ["ExpressionCompiler", "Typed", "constant"]
