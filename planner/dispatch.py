"""The one registry through which every pass over a plan picks its code for an operator.

A pass (compiling expressions, placing exchanges, describing for EXPLAIN,
executing) is an :class:`OperatorTable`: a handler registered per logical
operator class, looked up by the operator's type.  Adding an operator means
registering it in each table; :func:`unhandled` lists the tables that miss
one, and a test holds every table complete.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from planner.logical import Plan

R = TypeVar("R")

TABLES: list[OperatorTable] = []


class OperatorTable(Generic[R]):
    """Handlers of one pass, one per operator class; calling the table runs the operator's handler."""

    def __init__(self, name: str, fallback: Callable[..., R] | None = None) -> None:
        self.name = name
        self.handlers: dict[type, Callable[..., R]] = {}
        self.fallback = fallback
        TABLES.append(self)

    def register(self, *kinds: type) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorator: the function handles operators of ``kinds`` in this pass."""

        def add(function: Callable[..., R]) -> Callable[..., R]:
            for kind in kinds:
                self.handlers[kind] = function
            return function

        return add

    def handler(self, plan: Plan) -> Callable[..., R] | None:
        """The handler for ``plan``'s class (or its nearest registered base class)."""
        found = self.handlers.get(type(plan))
        if found is not None:
            return found
        for kind in type(plan).__mro__[1:]:
            if kind in self.handlers:
                return self.handlers[kind]
        return self.fallback

    def __call__(self, plan: Plan, *args, **kwargs) -> R:
        found = self.handler(plan)
        if found is None:
            from storage.errors import UnsupportedSql

            raise UnsupportedSql(f"{type(plan).__name__} has no handler in {self.name}; it cannot run yet")
        return found(plan, *args, **kwargs)


def operators() -> tuple[type, ...]:
    """Every concrete logical operator class."""
    found: list[type] = []
    pending = list(Plan.__subclasses__())
    while pending:
        kind = pending.pop(0)
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return tuple(found)


def unhandled() -> dict[str, list[str]]:
    """Operator classes a table has no handler (and no fallback) for, per table name."""
    missing: dict[str, list[str]] = {}
    for table in TABLES:
        if table.fallback is not None:
            continue
        names = [kind.__name__ for kind in operators()
                 if not any(base in table.handlers for base in kind.__mro__[:-1] if base is not Plan)]
        if names:
            missing[table.name] = names
    return missing
