"""The per-namespace table of rejected rows: nothing a client sends silently disappears.

Every refused row is stored, through the same ingest path as good rows, in
``<namespace>._rejected`` with the table it was meant for, the batch id, its
row number in the batch, the reason, the row as the client sent it, and the
time it was received.  Of the row itself only its first ``RAW_PREFIX_BYTES``
are kept (``raw``), with its full length (``raw_bytes``) and a SHA-256 of it
(``raw_sha256``), so a huge refused row cannot get around the row-size
limit, and the client can still recognise it.  It is written under the batch id plus
``/rejected/<table>`` (one batch id may be sent to several tables of a
namespace), so a retried batch does not store its rejections twice either.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from engine.ingest.normalize import Normalized
from storage.catalog import Catalog

REJECTED_TABLE = "_rejected"
RAW_PREFIX_BYTES = 4096
REJECTED_SCHEMA = pa.schema(
    [
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("table", pa.string()),
        ("batch_id", pa.string()),
        ("row", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        ("raw_bytes", pa.int64()),
        ("raw_sha256", pa.string()),
    ]
)


def ensure_rejected_table(catalog: Catalog, namespace: str) -> None:
    catalog.create_table(
        namespace, REJECTED_TABLE, schema=REJECTED_SCHEMA, time_column="received_at", partitions=1, exist_ok=True,
        reserved=True,
    )


def rejected_batch_id(table: str, batch_id: str) -> str:
    """The batch id the rejected rows of ``batch_id`` for ``table`` are stored under."""
    return f"{batch_id}/rejected/{table}"


def rejected_rows(table: str, batch_id: str, result: Normalized, received_us: int) -> pa.Table:
    """The rejected rows of ``result`` as rows of the rejected-rows table."""
    rows = [row for row, _ in result.rejected]
    return rejected_records(table, batch_id, rows, [reason for _, reason in result.rejected],
                            [result.raw(row) for row in rows], received_us)


def rejected_records(
    table: str, batch_id: str, rows: list[int], reasons: list[str], raws: list[str], received_us: int
) -> pa.Table:
    """Rows of the rejected-rows table: for each refused row its number, reason and raw text (a prefix, its size
    and digest)."""
    encoded = [raw.encode("utf-8", "surrogatepass") for raw in raws]
    return pa.Table.from_arrays(
        [
            pa.array([received_us] * len(rows), pa.int64()).cast(REJECTED_SCHEMA.field("received_at").type),
            pa.array([table] * len(rows), pa.string()),
            pa.array([batch_id] * len(rows), pa.string()),
            pa.array(rows, pa.int64()),
            pa.array(reasons, pa.string()),
            pa.array([raw[:RAW_PREFIX_BYTES].decode("utf-8", "ignore") for raw in encoded], pa.string()),
            pa.array([len(raw) for raw in encoded], pa.int64()),
            pa.array([hashlib.sha256(raw).hexdigest() for raw in encoded], pa.string()),
        ],
        schema=REJECTED_SCHEMA,
    )
