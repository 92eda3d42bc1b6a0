"""The session: the one API every way into Petrel calls.

``engine.connect(root)`` opens a warehouse (a local folder, ``s3://...``) in
one namespace and attaches to Ray.  Ingestion, queries and maintenance each
live in their own module; the session holds what they share and delegates.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import ray

from engine.display import PlanText
from engine.external import read_paths, schema_only
from engine.file_access import FileAccess
from engine.ingest.client import Ingestion, Receipt
from engine.maintenance import Maintenance
from engine.monitors.api import MonitorMethods
from engine.query import QueryEngine
from engine.runtime import ensure_ray
from storage.catalog import Catalog, TableMeta, validate_name
from storage.objectstore import ObjectStore
from storage.vacuum import DEFAULT_GRACE_SECONDS

if TYPE_CHECKING:
    from engine.ingest.files import FilesReceipt
    from storage.compaction import CompactionReport, TableStats
    from storage.vacuum import VacuumReport

#: a period: seconds, a timedelta, or text like '30d', '12h', '90m'
Duration = float | int | str | dt.timedelta


_COMMENTS = r"(?:\s|--[^\n]*\n|/\*.*?\*/)*"
_PLAIN_EXPLAIN = re.compile(_COMMENTS + r"explain\b(?!" + _COMMENTS + r"analyze\b)", re.IGNORECASE | re.DOTALL)
_ANALYZE = re.compile(_COMMENTS + r"explain" + _COMMENTS + r"analyze\b", re.IGNORECASE | re.DOTALL)


class Session(MonitorMethods):
    """An open warehouse in one namespace, attached to Ray (monitor methods: engine/monitors/api.py)."""

    def __init__(
        self,
        root: str,
        storage_options: dict[str, Any] | None = None,
        namespace: str = "default",
        ray_address: str | None = None,
        num_cpus: int | None = None,
        timeout: float | None = None,
        maintenance: bool | dict[str, Any] | None = None,
        table_functions: str | list[str] | dict[str, dict[str, Any]] = "local",
    ) -> None:
        self.store = ObjectStore(root, storage_options)
        self.file_access = FileAccess(table_functions, self.store)
        self.catalog = Catalog(self.store)
        self.namespace = validate_name(namespace, "namespace")
        self._started_ray = ensure_ray(ray_address, num_cpus=num_cpus)
        self._closed = False
        self._ingestion: Ingestion | None = None
        self.queries = QueryEngine(self.store, self.catalog, self.namespace, timeout=timeout,
                                   table_function=self.read_table_function)
        if maintenance is None:  # in the background by default for a local warehouse
            maintenance = self.store.protocol == "file"
        options = maintenance if isinstance(maintenance, dict) else {}
        background = maintenance is True or isinstance(maintenance, dict)
        self.maintenance = Maintenance(self.store, self.namespace, background=background, **options)

    # -- tables ----------------------------------------------------------------
    def create_table(
        self,
        name: str,
        schema: pa.Schema | None = None,
        time_column: str = "timestamp",
        sort_key: list[str] | None = None,
        partitions: int = 1,
        retention: Duration | None = None,
        routing_key: str | None = None,
        exist_ok: bool = False,
        transform: str | None = None,
    ) -> TableMeta:
        """Create a table in this session's namespace; the schema may be left to inference.

        ``transform``: a SELECT over ``input`` run on every batch before routing
        (see ``planner/transform.py``); checked now.
        """
        if transform is not None:
            from planner.transform import check_transform

            check_transform(transform)
        return self.catalog.create_table(
            self.namespace,
            name,
            schema=schema,
            time_column=time_column,
            sort_key=sort_key,
            partitions=partitions,
            retention=retention,
            routing_key=routing_key,
            exist_ok=exist_ok,
            transform=transform,
        )

    def tables(self) -> list[str]:
        """Names of the tables in this session's namespace."""
        return self.catalog.tables(self.namespace)

    def table(self, name: str) -> TableMeta:
        """The metadata of table ``name`` (TableNotFound, with suggestions, if there is none)."""
        return self.catalog.table(self.namespace, name)

    def drop_table(self, name: str) -> None:
        self.catalog.drop_table(self.namespace, name)
        self.queries.forget(name)

    # -- queries (engine/query/api.py) ------------------------------------------------------
    def sql(self, query: str, dialect: str | None = None, timeout: float | None = None,
            memory_limit: int | None = None) -> pa.Table:
        """Run a SELECT (or EXPLAIN [ANALYZE] SELECT) and return its rows as Arrow.

        ``memory_limit`` bounds the bytes of Arrow data the query holds in any
        one process (each worker, and this one); a query that needs more stops
        with :class:`QueryTooLarge`.
        """
        if _PLAIN_EXPLAIN.match(query):
            with schema_only():
                return self.queries.sql(query, dialect=dialect, timeout=timeout)
        return self.queries.sql(query, dialect=dialect, timeout=timeout, memory_limit=memory_limit)

    def explain(self, query: str, analyze: bool = False, dialect: str | None = None, timeout: float | None = None,
                memory_limit: int | None = None) -> str:
        """The logical and distributed plans; with ``analyze``, run it (within ``memory_limit``) and add what each stage did."""
        if analyze or _ANALYZE.match(query):
            return PlanText(self.queries.explain(query, analyze=analyze, dialect=dialect, timeout=timeout,
                                                 memory_limit=memory_limit))
        with schema_only():  # a plan needs the files' columns, not their rows
            return PlanText(self.queries.explain(query, analyze=analyze, dialect=dialect, timeout=timeout))

    def read_table_function(self, function: str, path: str, options: dict) -> pa.Table:
        """What ``read_parquet(path)`` and its kin return, if this session may read ``path``."""
        location = self.file_access.resolve(path)
        what = f"{function}({path!r})"
        self.file_access.guard_size(location, what)
        return read_paths(function, path, location.fs, location.paths, options)

    def register(self, name: str, data: Any) -> None:
        """Query a pyarrow Table or pandas DataFrame as table ``name`` (joins with warehouse tables)."""
        self.queries.register(name, data)

    # -- ingestion ------------------------------------------------------------------
    @property
    def ingestion(self) -> Ingestion:
        if self._ingestion is None:
            self._ingestion = Ingestion(self.store, self.catalog, self.namespace)
        return self._ingestion

    def ingest(self, table: str, data: Any, batch_id: str | None = None, first_sent: float | None = None) -> Receipt:
        """Store events (Arrow, list of dicts, DataFrame, JSON lines); returns once committed."""
        return self.ingestion.ingest(table, data, batch_id, first_sent)

    def ingest_files(self, table: str, paths: str | list[str], progress: bool = True,
                     storage_options: dict[str, Any] | None = None) -> FilesReceipt:
        """Ingest JSON-lines, CSV and Parquet files (a path, glob or list) exactly once each."""
        from engine.ingest.files import ingest_files

        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        files: list[str] = []
        for item in items:  # the same confinement as table functions, globs expanded and checked
            location = self.file_access.resolve(str(item))
            files.extend(location.urls())
            if storage_options is None and not location.local:
                storage_options = location.storage_options()  # the prefix's own, never the warehouse's
        return ingest_files(self.ingestion, table, files, progress=progress, storage_options=storage_options or {})

    # -- Ray Data (engine/raydata.py) ------------------------------------------------
    def read_dataset(self, table: str, columns: list[str] | None = None, start: Any = None, end: Any = None,
                     **options: Any) -> Any:
        """The table in ``[start, end)`` as a ``ray.data.Dataset``: columns and time range pushed down,
        one read task per group of segments."""
        from engine.raydata import read_dataset

        return read_dataset(self, table, columns, start, end, **options)

    def write_dataset(self, table: str, dataset: Any, batch_id: str, **options: Any) -> Receipt:
        """Ingest a ``ray.data.Dataset`` through the table's owners; the same ``batch_id`` stores it once."""
        from engine.raydata import write_dataset

        return write_dataset(self, table, dataset, batch_id, **options)

    def ingest_stream(self, table: str, url: str, *, subject: str, stream: str, durable: str, **options: Any):
        """Consume a NATS JetStream stream into ``table`` exactly once; returns a handle (stop, lag, status).

        See ``engine/streams``: the stream's sequence numbers are committed with
        the segments, the broker is acknowledged after that commit, and a
        restart resumes from the committed sequence.
        """
        from engine.streams.handle import start_stream

        return start_stream(self, table, url, subject=subject, stream=stream, durable=durable, **options)

    # -- maintenance ----------------------------------------------------------------
    def compact(self, table: str, progress: bool = True, full: bool = True) -> CompactionReport:
        """Merge the table's small segments now (a progress bar on stderr); returns a report."""
        return self.maintenance.compact(table, progress=progress, full=full)

    def alter_table(self, table: str, *, retention: Duration | None = ...,  # type: ignore[assignment]
                    transform: str | None = ...) -> TableMeta:  # type: ignore[assignment]
        """Change a table's retention ('30d', seconds, None to keep forever) or its ingest transform.

        A new transform (checked now; None removes it) applies to data ingested from now on.
        """
        if transform is not ...:
            if transform is not None:
                from planner.transform import check_transform

                check_transform(transform)
            meta = self.catalog.alter_table(self.namespace, table, transform=transform)
        if retention is not ... or transform is ...:
            meta = self.maintenance.alter_table(table, retention=retention)
        if self._ingestion is not None:  # this session's ingestion applies the new period at once
            self._ingestion.client(table).current_meta(refresh=True)
        return meta

    def vacuum(self, table: str | None = None, older_than: Duration = DEFAULT_GRACE_SECONDS,
               orphans_older_than: Duration | None = None) -> VacuumReport:
        """Delete files no snapshot younger than ``older_than`` can read; returns a report.

        Uploads no commit refers to wait at least ten minutes (their commit may
        be on its way) unless ``orphans_older_than`` says otherwise.
        """
        return self.maintenance.vacuum(table, older_than=older_than, orphans_older_than=orphans_older_than)

    def table_stats(self, table: str) -> TableStats:
        """Segments, rows, bytes, small segments, event time range and last compaction."""
        return self.maintenance.table_stats(table)

    # -- lifetime -----------------------------------------------------------------
    def close(self) -> None:
        """Release this session's actors; stop Ray only if this session started it."""
        if self._closed:
            return
        self._closed = True
        if self._ingestion is not None:
            self._ingestion.close()
        self.queries.close()
        self.maintenance.stop()
        if self._started_ray and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    root: str = "./warehouse",
    storage_options: dict[str, Any] | None = None,
    namespace: str = "default",
    ray_address: str | None = None,
    num_cpus: int | None = None,
    timeout: float | None = None,
    maintenance: bool | dict[str, Any] | None = None,
    table_functions: str | list[str] | dict[str, dict[str, Any]] = "local",
) -> Session:
    """Open the warehouse at ``root`` (local folder or ``s3://bucket/prefix``) in ``namespace``.

    ``storage_options`` go to fsspec (an S3 endpoint, credentials);
    ``ray_address`` names a Ray cluster to attach to (else a local Ray is
    started, with ``num_cpus``); ``timeout`` is the default query time limit
    in seconds; ``maintenance`` runs compaction, retention and vacuum in the
    background (True, or a dict of options; default: on for a local folder);
    ``table_functions`` says what ``read_parquet``/``read_csv``/``read_json``
    and ``ingest_files`` may read: ``"local"`` files, ``"off"``, or a list of
    URL prefixes (or a mapping from prefix to its own storage options).
    """
    return Session(root, storage_options, namespace=namespace, ray_address=ray_address, num_cpus=num_cpus,
                   timeout=timeout, maintenance=maintenance, table_functions=table_functions)
