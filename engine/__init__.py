"""Petrel's runtime on Ray, and every way in: ``engine.connect(root)``.

Every error Petrel raises derives from :class:`PetrelError` and can be
imported from here: ``from engine import PetrelError, TableNotFound, SqlError``.

The session is imported when first used, not with the package: a process
that runs only a part (an ingest owner unpickling ``engine.ingest.actor``, a
query worker) then starts without the planner, the executor and their
dependencies — about a second of imports on every actor start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.errors import (
    AccessDenied,
    BodyTooLarge,
    ColumnNotFound,
    CommitConflict,
    DedupExpired,
    Fenced,
    FlushFailed,
    IngestError,
    IngestTimeout,
    InvalidArgument,
    InvalidMonitor,
    InvalidName,
    MonitorError,
    MonitorExists,
    MonitorNotFound,
    LimitExceeded,
    PetrelError,
    QueryFailed,
    QueryTimeout,
    QueryTooLarge,
    RejectedRows,
    SchemaConflict,
    SegmentMissing,
    SharedRowsMissing,
    SqlError,
    StoreUnavailable,
    TableExists,
    TableNotFound,
    TooManyQueries,
    Unauthorized,
    UnsafeStore,
    UnsupportedSql,
    WriteRace,
)

if TYPE_CHECKING:
    from engine.session import Session, connect

_SESSION = ("Session", "connect")

__all__ = [
    *_SESSION,
    "AccessDenied", "BodyTooLarge", "LimitExceeded", "QueryTooLarge", "TooManyQueries", "Unauthorized",
    "ColumnNotFound", "CommitConflict", "DedupExpired", "Fenced", "FlushFailed", "IngestError", "IngestTimeout", "InvalidArgument",
    "InvalidMonitor", "InvalidName", "MonitorError", "MonitorExists", "MonitorNotFound", "PetrelError", "QueryFailed", "QueryTimeout", "RejectedRows", "SchemaConflict", "SegmentMissing",
    "SharedRowsMissing", "SqlError", "StoreUnavailable", "TableExists", "TableNotFound", "UnsafeStore", "UnsupportedSql", "WriteRace",
]


def __getattr__(name: str) -> Any:
    if name in _SESSION:
        from engine import session

        return getattr(session, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
