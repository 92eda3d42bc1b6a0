"""Petrel: an event store and distributed SQL engine on Arrow, Parquet and Ray.

``import petrel`` is the small public face of the project::

    import petrel

    db = petrel.connect("./warehouse")
    db.ingest("logs", rows)
    db.sql("SELECT service, count(*) FROM logs GROUP BY service")

It re-exports :func:`connect` (see :func:`engine.session.connect`), the
:class:`Session` it returns, and every error Petrel raises on purpose, all
rooted at :class:`PetrelError`.  The distribution on the package index is
``petrel-events`` (the name ``petrel`` there is an unrelated project).
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

from storage.errors import (
    AccessDenied, BodyTooLarge, ColumnNotFound, CommitConflict, Fenced, FlushFailed, IngestError, IngestTimeout,
    InvalidName, LimitExceeded, PetrelError, QueryFailed, QueryTimeout, RejectedRows, SchemaConflict,
    SegmentMissing, SharedRowsMissing, SqlError, TableExists, TableNotFound, TooManyQueries, Unauthorized,
    UnsupportedSql,
)

if TYPE_CHECKING:
    from engine.session import Session

DISTRIBUTION = "petrel-events"
try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # running from a source checkout that was not installed
    __version__ = "0.1.0"

__all__ = [
    "AccessDenied", "BodyTooLarge", "ColumnNotFound", "CommitConflict", "Fenced", "FlushFailed", "IngestError",
    "IngestTimeout", "InvalidName", "LimitExceeded", "PetrelError", "QueryFailed", "QueryTimeout", "RejectedRows",
    "SchemaConflict", "SegmentMissing", "Session", "SharedRowsMissing", "SqlError", "TableExists", "TableNotFound",
    "TooManyQueries", "Unauthorized", "UnsupportedSql", "__version__", "connect",
]


def connect(root: str = "./warehouse", storage_options: dict[str, Any] | None = None, namespace: str = "default",
            ray_address: str | None = None, **kwargs: Any) -> Session:
    """Open the warehouse at ``root`` (a folder or ``s3://bucket/prefix``) in ``namespace``.

    Keyword arguments are those of :class:`engine.session.Session`:
    ``table_functions="off" | "local" | [prefixes]`` says which files
    ``read_parquet``/``read_csv``/``read_json`` and ``ingest_files`` may
    read (``"local"`` by default), ``timeout`` bounds queries, ``maintenance``
    runs compaction in the background.
    """
    from engine.session import connect as open_session

    return open_session(root, storage_options, namespace=namespace, ray_address=ray_address, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Session":
        from engine.session import Session

        return Session
    raise AttributeError(f"module 'petrel' has no attribute {name!r}")
