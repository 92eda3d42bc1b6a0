"""Every error Petrel raises, in one flat module.

All derive from :class:`PetrelError`, so ``except PetrelError`` catches
anything Petrel refuses on purpose.  Each message names the offending value
and says what to do about it.
"""

from __future__ import annotations


class PetrelError(Exception):
    """Root of every error Petrel raises on purpose."""


class InvalidArgument(PetrelError, ValueError):
    """An argument whose value cannot be used (a negative duration, a partition count out of range)."""


class InvalidName(InvalidArgument):
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


class WriteRace(CommitConflict):
    """A conditional write met another one in flight (S3's 409): maybe nothing was written; reload and retry."""


class UnsafeStore(PetrelError):
    """An object store that does not honour conditional writes; commits on it would overwrite each other."""


class Fenced(PetrelError):
    """A newer writer owns the partition; this writer's commit is refused."""


class StoreUnavailable(PetrelError, OSError):
    """The object store kept failing (500s, throttling, timeouts) through every retry; try again later."""


class SegmentMissing(PetrelError):
    """A segment is gone from the object store: an upload vacuum took before its commit (write it again), or one
    a query's snapshot refers to (the query reads the latest snapshot again; still missing there, the table is
    damaged)."""


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
        self.message = message
        self.line = line
        self.column = column

    def located(self, line: int | None, column: int | None) -> SqlError:
        """This error at ``line`` and ``column`` when it has no position yet (else itself)."""
        if self.line is not None or line is None:
            return self
        return type(self)(self.message, line, column)


class UnsupportedSql(SqlError):
    """A SQL construct Petrel understands but does not execute yet."""


class ColumnNotFound(SqlError):
    """A column name that no table in the query has."""


class QueryTimeout(PetrelError, TimeoutError):
    """A query ran over its time limit and was cancelled."""


class QueryFailed(PetrelError):
    """A query failed while executing; the message says at which step."""


class MonitorError(PetrelError):
    """Something about a monitor that Petrel refuses."""


class InvalidMonitor(MonitorError, InvalidArgument):
    """A monitor definition refused at create (or update) time; the message names the clause."""


class MonitorNotFound(MonitorError, KeyError):
    """The named monitor does not exist (or was dropped)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MonitorExists(MonitorError):
    """A monitor with that name already exists in the namespace."""


class AccessDenied(PetrelError, PermissionError):
    """A read or request outside what the session, token or table-function allow-list permits."""


class LimitExceeded(PetrelError):
    """A request or query went over one of its tenant's limits (rows, bytes, memory, body size)."""


class Unauthorized(AccessDenied):
    """A request without a token, or with a token that is unknown or revoked."""


class TooManyQueries(LimitExceeded):
    """The tenant already runs as many queries as it may; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BodyTooLarge(LimitExceeded):
    """A request body over the tenant's size limit; send it in smaller batches."""


class QueryTooLarge(LimitExceeded):
    """A query needed more memory than its limit allows; it was stopped alone (filter, aggregate, LIMIT, or raise the limit)."""

    def __init__(self, message: str, limit: int | None = None, needed: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit  # bytes the query may hold in one process
        self.needed = needed  # bytes it would have held when it was stopped

    def __reduce__(self):  # keeps the numbers when the error crosses from a worker process
        return type(self), (str(self), self.limit, self.needed)
