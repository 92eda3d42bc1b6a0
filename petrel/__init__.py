"""Petrel: an event store and distributed SQL engine on Arrow, Parquet and Ray.

``import petrel`` is the small public face of the project::

    import petrel

    db = petrel.connect("./warehouse")
    db.ingest("logs", rows)
    db.sql("SELECT service, count(*) FROM logs GROUP BY service")

It re-exports :func:`connect` (:func:`engine.session.connect`), the
:class:`Session` it returns, and every error Petrel raises on purpose, all
rooted at :class:`PetrelError`.  The distribution on the package index is
``petrel-events`` (the name ``petrel`` there is an unrelated project).
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

from engine import (
    AccessDenied, BodyTooLarge, ColumnNotFound, CommitConflict, DedupExpired, Fenced, FlushFailed, IngestError, IngestTimeout,
    InvalidArgument, InvalidMonitor, InvalidName, LimitExceeded, MonitorError, MonitorExists, MonitorNotFound,
    PetrelError, QueryFailed, QueryTimeout, QueryTooLarge, RejectedRows,
    SchemaConflict, SegmentMissing, SharedRowsMissing, SqlError, StoreUnavailable, TableExists, TableNotFound,
    TooManyQueries, Unauthorized, UnsafeStore, UnsupportedSql, WriteRace,
)

if TYPE_CHECKING:
    from engine.session import Session, connect

DISTRIBUTION = "petrel-events"
try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # running from a source checkout that was not installed
    __version__ = "0.1.0"

__all__ = [
    "AccessDenied", "BodyTooLarge", "ColumnNotFound", "CommitConflict", "DedupExpired", "Fenced", "FlushFailed", "IngestError",
    "IngestTimeout", "InvalidArgument", "InvalidMonitor", "InvalidName", "LimitExceeded", "MonitorError",
    "MonitorExists", "MonitorNotFound", "PetrelError", "QueryFailed", "QueryTimeout", "QueryTooLarge",
    "RejectedRows", "SchemaConflict", "SegmentMissing", "Session", "SharedRowsMissing", "SqlError", "StoreUnavailable", "TableExists",
    "TableNotFound", "TooManyQueries", "Unauthorized", "UnsafeStore", "UnsupportedSql", "WriteRace", "__version__",
    "connect",
]


def __getattr__(name: str) -> Any:
    if name in ("Session", "connect"):  # the session (and Ray, the planner) are imported on first use
        from engine import session

        return getattr(session, name)
    raise AttributeError(f"module 'petrel' has no attribute {name!r}")
