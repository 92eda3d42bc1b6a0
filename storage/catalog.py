"""Namespaces and tables under a warehouse root.

Layout: ``<root>/<namespace>/<table>/_table.json`` is written once, with
put-if-absent, when the table is created.  Later changes to its properties
(retention, the ingest transform) are versioned files ``_props/<20-digit n>.json`` written
the same way, so nothing is overwritten in place.  Dropping a table writes a
``_dropped.json`` tombstone; its files go when vacuum runs after the grace
period.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from storage.errors import CommitConflict, InvalidArgument, InvalidName, TableExists, TableNotFound, WriteRace
from storage.objectstore import ObjectStore
from storage.schema import schema_from_json, schema_to_json

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # whole names only: always used with fullmatch
# tables Petrel itself writes in every namespace, and how long they keep rows
REJECTED_TABLE = "_rejected"
RESERVED_TABLES: dict[str, float] = {REJECTED_TABLE: 30 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def validate_name(name: Any, kind: str = "table") -> str:
    """Return ``name`` if it is a usable namespace or table name, else raise InvalidName."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{kind} name {name!r} is empty or not a string; use letters, digits, '_' or '-'")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not _NAME.fullmatch(name):
        raise InvalidName(
            f"{kind} name {name!r} is not allowed: it must start with a letter or '_' and contain only "
            "letters, digits, '_' or '-' (no '/', '..', spaces or dots)"
        )
    return name


def parse_duration(value: Any) -> float | None:
    """Seconds in a retention or grace period given as seconds, a timedelta or '30d'/'12h'/'90m'."""
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidArgument(f"duration {value!r} is negative; give a positive number of seconds")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise InvalidArgument(f"duration {value!r} is not understood; write it like '30d', '12h', '90m' or '45s'")
    return float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]


@dataclass(frozen=True)
class TableMeta:
    """What a table is: its place, declared schema, time column and layout."""

    namespace: str
    name: str
    time_column: str = "timestamp"
    sort_key: tuple[str, ...] = ()
    partitions: int = 1
    retention: float | None = None
    routing_key: str | None = None
    schema: pa.Schema | None = None
    created_at: float = field(default_factory=time.time)
    properties_version: int = 0
    transform: str | None = None  # SQL over `input` applied to each batch before routing (planner/transform.py)

    @property
    def path(self) -> str:
        """The table's folder, relative to the warehouse root."""
        return f"{self.namespace}/{self.name}"

    @property
    def full_sort_key(self) -> tuple[str, ...]:
        """The sort key of its segments: the declared key, then the time column."""
        keys = tuple(k for k in self.sort_key if k != self.time_column)
        return keys + (self.time_column,)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "time_column": self.time_column,
            "sort_key": list(self.sort_key),
            "partitions": self.partitions,
            "retention": self.retention,
            "routing_key": self.routing_key,
            "schema": schema_to_json(self.schema) if self.schema is not None else None,
            "created_at": self.created_at,
            "transform": self.transform,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TableMeta:
        return cls(
            namespace=record["namespace"],
            name=record["name"],
            time_column=record["time_column"],
            sort_key=tuple(record.get("sort_key") or ()),
            partitions=int(record["partitions"]),
            retention=record.get("retention"),
            routing_key=record.get("routing_key"),
            schema=schema_from_json(record["schema"]) if record.get("schema") else None,
            created_at=float(record.get("created_at") or 0.0),
            transform=record.get("transform"),
        )


class Catalog:
    """Creates, finds, alters and drops tables under one warehouse root."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def create_table(
        self,
        namespace: str,
        name: str,
        schema: pa.Schema | None = None,
        time_column: str = "timestamp",
        sort_key: list[str] | tuple[str, ...] | None = None,
        partitions: int = 1,
        retention: Any = None,
        routing_key: str | None = None,
        exist_ok: bool = False,
        transform: str | None = None,
        reserved: bool = False,
    ) -> TableMeta:
        """Create a table; TableExists if the name is taken (unless ``exist_ok``).

        ``reserved``: Petrel creating one of its own tables (``RESERVED_TABLES``,
        such as ``_rejected``), which users cannot create; it gets its default
        retention unless one is given.
        """
        validate_name(namespace, "namespace")
        validate_name(name, "table")
        if name in RESERVED_TABLES and not reserved:
            raise InvalidName(
                f"table name {name!r} is reserved: Petrel keeps the rows it refuses there; pick another name"
            )
        if not isinstance(time_column, str) or not time_column:
            raise InvalidArgument(
                f"time_column={time_column!r}: every Petrel table needs a time column (segments are cut, pruned "
                "and expired by it); name the column holding each row's time, or add one such as the time "
                "the row was loaded"
            )
        if name in RESERVED_TABLES and retention is None:
            retention = RESERVED_TABLES[name]
        if not isinstance(partitions, int) or not 1 <= partitions <= 1024:
            raise InvalidArgument(f"partitions={partitions!r} must be a whole number from 1 to 1024")
        if schema is not None and time_column not in schema.names:
            raise InvalidArgument(
                f"time column {time_column!r} is not in the schema ({', '.join(schema.names)}); "
                "add it or pass time_column=<one of them>"
            )
        meta = TableMeta(
            namespace=namespace,
            name=name,
            time_column=time_column,
            sort_key=tuple(sort_key or ()),
            partitions=partitions,
            retention=parse_duration(retention),
            routing_key=routing_key,
            schema=schema,
            transform=transform,
        )
        if self.store.exists(f"{meta.path}/_dropped.json"):
            raise TableExists(
                f"table {namespace}.{name} was dropped and its files await vacuum; "
                "run vacuum on it or choose another name"
            )
        path, record = f"{meta.path}/_table.json", json.dumps(meta.to_json()).encode()
        try:
            _put_retrying_races(self.store, path, record)
        except CommitConflict:
            if self._written(path, record):  # our put landed, its reply was lost and the retry refused
                return meta
            if exist_ok:
                return self.table(namespace, name)
            raise TableExists(f"table {namespace}.{name} already exists; drop it first or pick another name") from None
        return meta

    def _written(self, path: str, record: bytes) -> bool:
        """Whether ``path`` holds ``record`` itself (its creation time makes it this call's own)."""
        try:
            return self.store.get(path) == record
        except FileNotFoundError:
            return False

    def table(self, namespace: str, name: str) -> TableMeta:
        """The table's metadata, with its latest properties; TableNotFound if absent."""
        validate_name(namespace, "namespace")
        validate_name(name, "table")
        path = f"{namespace}/{name}"
        try:
            record = json.loads(self.store.get(f"{path}/_table.json"))
        except FileNotFoundError:
            raise TableNotFound(self._not_found_message(namespace, name)) from None
        if self.store.exists(f"{path}/_dropped.json"):
            raise TableNotFound(f"table {namespace}.{name} was dropped")
        meta = TableMeta.from_json(record)
        if meta.retention is None and name in RESERVED_TABLES:  # created before it had a default
            meta = replace(meta, retention=RESERVED_TABLES[name])
        props = self.store.list(f"{path}/_props")
        if props:
            latest = props[-1]
            changes = json.loads(self.store.get(latest.path))
            meta = replace(
                meta,
                retention=changes.get("retention", meta.retention),
                transform=changes.get("transform", meta.transform),
                properties_version=int(latest.path.rsplit("/", 1)[-1].split(".")[0]),
            )
        return meta

    def alter_table(self, namespace: str, name: str, *, retention: Any = ..., transform: Any = ...) -> TableMeta:
        """Change a table's properties (retention, transform); versioned, compare-and-swap."""
        while True:
            meta = self.table(namespace, name)
            changes: dict[str, Any] = {"retention": meta.retention, "transform": meta.transform}
            if retention is not ...:
                changes["retention"] = parse_duration(retention)
            if transform is not ...:
                changes["transform"] = transform
            version = meta.properties_version + 1
            try:
                self.store.put_if_absent(f"{meta.path}/_props/{version:020d}.json", json.dumps(changes).encode())
            except CommitConflict:
                continue
            return replace(meta, retention=changes["retention"], transform=changes["transform"],
                           properties_version=version)

    def tables(self, namespace: str) -> list[str]:
        """Names of the live tables in ``namespace`` (empty if it has none)."""
        validate_name(namespace, "namespace")
        names = []
        for name in self.store.list_dirs(namespace):
            if not _NAME.fullmatch(name):
                continue
            if self.store.exists(f"{namespace}/{name}/_table.json") and not self.store.exists(
                f"{namespace}/{name}/_dropped.json"
            ):
                names.append(name)
        return names

    def drop_table(self, namespace: str, name: str) -> None:
        """Drop a table: a tombstone now, its files removed by vacuum after the grace period."""
        meta = self.table(namespace, name)
        try:
            _put_retrying_races(self.store, f"{meta.path}/_dropped.json",
                                json.dumps({"dropped_at": time.time()}).encode())
        except CommitConflict:
            raise TableNotFound(f"table {namespace}.{name} was dropped") from None

    def dropped_tables(self, namespace: str) -> list[tuple[str, float]]:
        """(name, dropped_at) of the tombstoned tables in ``namespace``."""
        dropped = []
        for name in self.store.list_dirs(namespace):
            try:
                record = json.loads(self.store.get(f"{namespace}/{name}/_dropped.json"))
            except FileNotFoundError:
                continue
            dropped.append((name, float(record["dropped_at"])))
        return dropped

    def _not_found_message(self, namespace: str, name: str) -> str:
        known = self.tables(namespace)
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; tables in {namespace}: {', '.join(known)}" if known else f"; namespace {namespace} has no tables"
        )
        return f"table {namespace}.{name} does not exist{hint}"


def _put_retrying_races(store: ObjectStore, path: str, data: bytes, attempts: int = 10) -> None:
    """put_if_absent, again after a WriteRace (a concurrent put in flight, maybe neither landed)."""
    for attempt in range(attempts):
        try:
            store.put_if_absent(path, data)
            return
        except WriteRace:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
