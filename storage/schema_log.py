"""The table-wide schema that ingestion evolves, shared by all partitions.

Partitions commit independently, so two of them could meet a new field with
different types at the same moment and leave segments whose schemas cannot
be unified.  Before a batch that adds or widens a column is written, the
change is recorded here as version N+1 of ``<table>/_schema/`` with
put-if-absent; the loser of a race reloads and fits its batch again, so the
types every partition writes always unify.  The schema only ever grows.
"""

from __future__ import annotations

import json

import pyarrow as pa

from storage.catalog import TableMeta
from storage.objectstore import ObjectStore
from storage.schema import schema_from_json, schema_to_json


class TableSchemaLog:
    """Versions of one table's ingestion schema."""

    def __init__(self, store: ObjectStore, meta: TableMeta) -> None:
        self.store = store
        self.meta = meta
        self.prefix = f"{meta.path}/_schema"

    def load(self) -> tuple[int, pa.Schema | None]:
        """(version, schema) of the latest version; (-1, declared schema) before the first."""
        versions = [info.path for info in self.store.list(self.prefix) if info.path.endswith(".json")]
        if not versions:
            return -1, self.meta.schema
        latest = versions[-1]
        record = json.loads(self.store.get(latest))
        return int(latest.rsplit("/", 1)[-1].split(".")[0]), schema_from_json(record["schema"])

    def propose(self, version: int, schema: pa.Schema) -> int:
        """Record ``schema`` as the version after ``version``; CommitConflict if another came first."""
        self.store.put_if_absent(
            f"{self.prefix}/{version + 1:020d}.json", json.dumps({"schema": schema_to_json(schema)}).encode()
        )
        return version + 1
