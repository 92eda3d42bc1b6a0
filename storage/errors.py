"""Every error Petrel raises, in one flat module.

All derive from :class:`PetrelError`, so ``except PetrelError`` catches
anything Petrel refuses on purpose.  Each message names the offending value
and says what to do about it.
"""

from __future__ import annotations


class PetrelError(Exception):
    """Root of every error Petrel raises on purpose."""


class InvalidName(PetrelError, ValueError):
    """A namespace, table or column name that cannot be used."""


class TableNotFound(PetrelError, KeyError):
    """The named table (or namespace) does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TableExists(PetrelError):
    """A table with that name already exists in the namespace."""


class SchemaConflict(PetrelError, TypeError):
    """A column's type changed in a way that cannot be reconciled."""


class CommitConflict(PetrelError):
    """Another writer committed first; reload and retry (or give up)."""


class Fenced(PetrelError):
    """A newer writer owns the partition; this writer's commit is refused."""


class SegmentMissing(PetrelError):
    """A segment a snapshot refers to is gone from the object store."""


class IngestError(PetrelError):
    """An ingest call that could not be carried out as a whole."""


class IngestTimeout(IngestError, TimeoutError):
    """An ingest call waited too long for buffer space or for its commit."""


class FlushFailed(IngestError):
    """A buffered batch could not be written or committed; retry it with the same batch id (stored once either way)."""


class DedupExpired(IngestError):
    """A retried batch is older than its partition can check for duplicates; it is refused, never stored twice."""


class SharedRowsMissing(IngestError):
    """An owner could not read rows handed over in shared memory (another machine); send them another way."""


class RejectedRows(IngestError):
    """Every row of an ingest call was refused; see ``.rejected``."""

    def __init__(self, message: str, rejected: list | None = None) -> None:
        super().__init__(message)
        self.rejected = list(rejected or [])


class SqlError(PetrelError, ValueError):
    """A query that cannot be parsed or planned; carries line and column."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.line = line
        self.column = column


class UnsupportedSql(SqlError):
    """A SQL construct Petrel understands but does not execute yet."""


class ColumnNotFound(SqlError):
    """A column name that no table in the query has."""


class QueryTimeout(PetrelError, TimeoutError):
    """A query ran over its time limit and was cancelled."""


class QueryFailed(PetrelError):
    """A query failed while executing; the message says at which step."""
