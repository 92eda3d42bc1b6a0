"""The tables the expression compiler dispatches on.

A handler module registers each function it compiles, by sqlglot node
type (``@handles(exp.Lower)``) or, for functions sqlglot parses as
anonymous calls, by name (``@named("strlen")``; such a handler receives the
compiled arguments).  Adding a function is adding one registered handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from sqlglot import exp

from planner.expressions.typed import Typed

if TYPE_CHECKING:
    from planner.expressions.compiler import ExpressionCompiler

Handler = Callable[["ExpressionCompiler", exp.Expression], Typed]
NamedHandler = Callable[["ExpressionCompiler", list[Typed], exp.Expression], Typed]

#: sqlglot node type -> the handler that compiles it
HANDLERS: dict[type, Handler] = {}
#: lower-case function name -> the handler of an anonymous call with that name
NAMED: dict[str, NamedHandler] = {}


def handles(*node_types: type) -> Callable[[Handler], Handler]:
    """Register the decorated function as the compiler of ``node_types``."""
    def register(handler: Handler) -> Handler:
        for node_type in node_types:
            if node_type in HANDLERS:
                raise TypeError(f"{node_type.__name__} already has a handler: {HANDLERS[node_type].__qualname__}")
            HANDLERS[node_type] = handler
        return handler
    return register


def named(*names: str) -> Callable[[NamedHandler], NamedHandler]:
    """Register the decorated function as the compiler of calls to the functions ``names``."""
    def register(handler: NamedHandler) -> NamedHandler:
        for name in names:
            if name in NAMED:
                raise TypeError(f"function {name}() already has a handler: {NAMED[name].__qualname__}")
            NAMED[name] = handler
        return handler
    return register
