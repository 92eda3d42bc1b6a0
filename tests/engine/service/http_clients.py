"""What the HTTP tests share: a client for a tenant's token, and an Arrow IPC stream body."""

from __future__ import annotations

import httpx
import pyarrow as pa

ARROW = "application/vnd.apache.arrow.stream"


def tenant_client(served, token: str | None) -> httpx.Client:
    """An httpx client of the served API, with ``token`` as its bearer token (None: none)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=served.url, headers=headers, timeout=60)


def arrow_stream(table: pa.Table) -> bytes:
    """``table`` as the bytes of one Arrow IPC stream, the body the ingest route takes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
