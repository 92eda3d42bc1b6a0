"""The session: the one API every way into Petrel calls.

``engine.connect(root)`` opens a warehouse (a local folder, ``s3://...``) in
one namespace and attaches to Ray.  Ingestion, queries and maintenance each
live in their own module; the session holds what they share and delegates.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray

from engine.ingest.client import Ingestion, Receipt
from engine.maintenance import Maintenance
from engine.query import QueryEngine
from engine.runtime import ensure_ray
from storage.catalog import Catalog, TableMeta, validate_name
from storage.objectstore import ObjectStore
from storage.vacuum import DEFAULT_GRACE_SECONDS


class Session:
    """An open warehouse in one namespace, attached to Ray."""

    def __init__(
        self,
        root: str,
        storage_options: dict[str, Any] | None = None,
        namespace: str = "default",
        ray_address: str | None = None,
        num_cpus: int | None = None,
        timeout: float | None = None,
        maintenance: bool | dict[str, Any] | None = None,
    ) -> None:
        self.store = ObjectStore(root, storage_options)
        self.catalog = Catalog(self.store)
        self.namespace = validate_name(namespace, "namespace")
        self._started_ray = ensure_ray(ray_address, num_cpus=num_cpus)
        self._closed = False
        self._ingestion: Ingestion | None = None
        self.queries = QueryEngine(self.store, self.catalog, self.namespace, timeout=timeout)
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
        retention: Any = None,
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
        return self.catalog.tables(self.namespace)

    def table(self, name: str) -> TableMeta:
        return self.catalog.table(self.namespace, name)

    def drop_table(self, name: str) -> None:
        self.catalog.drop_table(self.namespace, name)
        self.queries.forget(name)

    # -- queries (engine/query.py) ------------------------------------------------------
    def sql(self, query: str, dialect: str | None = None, timeout: float | None = None) -> pa.Table:
        """Run a SELECT (or EXPLAIN [ANALYZE] SELECT) and return its rows as Arrow."""
        return self.queries.sql(query, dialect=dialect, timeout=timeout)

    def explain(self, query: str, analyze: bool = False, dialect: str | None = None, timeout: float | None = None) -> str:
        """The logical and distributed plans; with ``analyze``, run it and add what each stage did."""
        return self.queries.explain(query, analyze=analyze, dialect=dialect, timeout=timeout)

    def register(self, name: str, data: Any) -> None:
        """Query a pyarrow Table or pandas DataFrame as table ``name`` (joins with warehouse tables)."""
        self.queries.register(name, data)

    # -- ingestion ------------------------------------------------------------------
    @property
    def ingestion(self) -> Ingestion:
        if self._ingestion is None:
            self._ingestion = Ingestion(self.store, self.catalog, self.namespace)
        return self._ingestion

    def ingest(self, table: str, data: Any, batch_id: str | None = None) -> Receipt:
        """Store events (Arrow, list of dicts, DataFrame, JSON lines); returns once committed."""
        return self.ingestion.ingest(table, data, batch_id)

    def ingest_files(self, table: str, paths: Any, progress: bool = True, storage_options: dict | None = None):
        """Ingest JSON-lines, CSV and Parquet files (a path, glob or list) exactly once each."""
        from engine.ingest.files import ingest_files

        return ingest_files(self.ingestion, table, paths, progress=progress, storage_options=storage_options)

    def ingest_stream(self, table: str, url: str, *, subject: str, stream: str, durable: str, **options: Any):
        """Consume a NATS JetStream stream into ``table`` exactly once; returns a handle (stop, lag, status).

        See ``engine/streams``: the stream's sequence numbers are committed with
        the segments, the broker is acknowledged after that commit, and a
        restart resumes from the committed sequence.
        """
        from engine.streams.handle import start_stream

        return start_stream(self, table, url, subject=subject, stream=stream, durable=durable, **options)

    # -- maintenance ----------------------------------------------------------------
    def compact(self, table: str, progress: bool = True, full: bool = True) -> Any:
        """Merge the table's small segments now (a progress bar on stderr); returns a report."""
        return self.maintenance.compact(table, progress=progress, full=full)

    def alter_table(self, table: str, *, retention: Any = ..., transform: Any = ...) -> TableMeta:
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
            self._ingestion.writer(table).current_meta(refresh=True)
        return meta

    def vacuum(self, table: str | None = None, older_than: Any = DEFAULT_GRACE_SECONDS,
               orphans_older_than: Any = None) -> Any:
        """Delete files no snapshot younger than ``older_than`` can read; returns a report.

        Uploads no commit refers to wait at least ten minutes (their commit may
        be on its way) unless ``orphans_older_than`` says otherwise.
        """
        return self.maintenance.vacuum(table, older_than=older_than, orphans_older_than=orphans_older_than)

    def table_stats(self, table: str) -> Any:
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
    **kwargs: Any,
) -> Session:
    """Open the warehouse at ``root`` (local folder or ``s3://bucket/prefix``)."""
    return Session(root, storage_options, namespace=namespace, ray_address=ray_address, **kwargs)
