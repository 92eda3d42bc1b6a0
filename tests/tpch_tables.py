"""TPC-H tables for the tests: the project's generator or the official tiny dbgen files, as Petrel tables.

Each table is written as small segments spread over two partitions, so a
query's fragments run on several workers.  The 22 query texts live in the
repository (``benchmarks/tpch/queries.sql``); only the official dbgen data
comes from the shared folder beside the checkout (or ``PETREL_TPCH_DIR``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.tpch.queries import queries  # noqa: F401  (the tests' one source of query texts)
from storage.catalog import Catalog
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.segment import write_segment

SHARED = Path(os.environ.get("PETREL_TPCH_DIR") or Path(__file__).resolve().parents[2] / "shared" / "tpch")
TABLES = ("region", "nation", "supplier", "part", "partsupp", "customer", "orders", "lineitem")


def dbgen_missing() -> str | None:
    """Why the official dbgen files cannot be read (None when they can)."""
    missing = [name for name in TABLES if not (SHARED / f"{name}.csv.gz").exists()]
    if missing:
        return (f"the official TPC-H dbgen files ({', '.join(missing)}.csv.gz) are not in {SHARED}; "
                "put the shared tpch folder beside the checkout or set PETREL_TPCH_DIR")
    return None


def read_dbgen() -> dict[str, pa.Table]:
    """The official tiny dbgen output ('|'-delimited, with a header; ISO dates become DATE)."""
    tables = {}
    for name in TABLES:
        table = pacsv.read_csv(SHARED / f"{name}.csv.gz", parse_options=pacsv.ParseOptions(delimiter="|"))
        columns = []
        for field, column in zip(table.schema, table.columns):
            if pa.types.is_timestamp(field.type):
                column = column.cast(pa.date32())
            columns.append(column)
        tables[name] = pa.Table.from_arrays(columns, names=table.column_names)
    return tables


def ingest_tables(db, tables: dict[str, pa.Table], batches: int = 1, partitions: int = 2) -> None:
    """Load every table through ``Session.ingest`` in ``batches`` batches (each committed before the next).

    The tables load side by side, so their owner actors start at the same time.
    """
    def load(name: str) -> None:
        table = tables[name]
        db.create_table(name, partitions=partitions)
        size = max(1, -(-table.num_rows // batches))
        for index, start in enumerate(range(0, table.num_rows, size)):
            receipt = db.ingest(name, table.slice(start, size), batch_id=f"{name}-{index}")
            assert not receipt.rejected, receipt.rejected[:3]

    with ThreadPoolExecutor(max_workers=len(tables) or 1) as pool:
        list(pool.map(load, tables))


def load_tables(store: ObjectStore, tables: dict[str, pa.Table], rows_per_segment: int = 2_000,
                partitions: int = 2, namespace: str = "default") -> None:
    """Write every table as segments of ``rows_per_segment`` rows, committed over ``partitions``."""
    catalog = Catalog(store)
    for name, table in tables.items():
        meta = catalog.create_table(namespace, name, partitions=partitions)
        logs = [PartitionLog(store, meta.path, p) for p in range(partitions)]
        states = [log.load() for log in logs]
        added: list[list] = [[] for _ in range(partitions)]
        for index, start in enumerate(range(0, max(table.num_rows, 1), rows_per_segment)):
            part = table.slice(start, rows_per_segment)
            entry = write_segment(store, meta.path, part, partition=index % partitions,
                                  time_column=meta.time_column, sort_key=meta.full_sort_key)
            added[index % partitions].append(entry)
        for p in range(partitions):
            if added[p]:
                states[p] = logs[p].commit(states[p], epoch=None, added=added[p])
