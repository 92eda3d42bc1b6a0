"""The HTTP API, versioned under ``/v1``, on Starlette (served by uvicorn or Ray Serve).

=======  ================================  ==============================================
method   path                              what
=======  ================================  ==============================================
GET      /healthz                          liveness (no token)
GET      /metrics                          Prometheus text (no token)
POST     /v1/sql                           a query; JSON, CSV or Arrow IPC by ``Accept``
GET      /v1/tables                        the namespace's tables
POST     /v1/tables                        create a table
GET      /v1/tables/{table}                one table's definition
GET      /v1/tables/{table}/stats          segments, rows, bytes, time range
POST     /v1/tables/{table}/events         ingest JSON lines (optionally gzip) or Arrow IPC
=======  ================================  ==============================================

The monitor routes (CRUD, mute, state and history under ``/v1/monitors``)
are listed in :mod:`engine.service.monitor_routes`.

Every ``/v1`` request carries ``Authorization: Bearer <token>``; the token
decides the namespace.  ``Idempotency-Key`` on an ingest becomes its batch
id, so a retried request is stored once.  Errors are JSON
``{"error": {"type", "message", ...}}`` with a status a client can act on.
"""

from __future__ import annotations

import functools
import io
import json
import math
import zlib
from typing import Any, Awaitable, Callable

import pyarrow as pa
import pyarrow.csv as pacsv
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.service.core import Service
from engine.service.monitor_routes import monitor_routes
from engine.service.tenants import Tenant
from storage.errors import (
    AccessDenied, BodyTooLarge, CommitConflict, InvalidName, LimitExceeded, MonitorExists, MonitorNotFound,
    PetrelError, QueryTimeout, QueryTooLarge, RejectedRows, SqlError, TableExists, TableNotFound, TooManyQueries,
    Unauthorized,
)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/json")

_STATUS: list[tuple[type[BaseException], int]] = [
    (Unauthorized, 401), (AccessDenied, 403), (TableNotFound, 404), (MonitorNotFound, 404), (TableExists, 409),
    (MonitorExists, 409), (CommitConflict, 409),
    (BodyTooLarge, 413), (TooManyQueries, 429), (QueryTimeout, 504), (LimitExceeded, 422), (PetrelError, 400),
]
Handler = Callable[[Request, Tenant], Awaitable[Response]]


def error_response(error: PetrelError) -> JSONResponse:
    """The status and JSON body of a refused request."""
    status = next(code for kind, code in _STATUS if isinstance(error, kind))
    body: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, SqlError):
        body.update(line=error.line, column=error.column)
    if isinstance(error, QueryTooLarge):
        body.update(limit_bytes=error.limit, needed_bytes=error.needed)
    if isinstance(error, RejectedRows):
        body["rejected"] = [{"row": row, "reason": reason} for row, reason in error.rejected[:1000]]
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, TooManyQueries) else None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def build_app(service: Service) -> Starlette:
    """The ASGI app over ``service``."""

    def endpoint(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            try:
                token = _bearer(request)  # a token seen moments ago is resolved here, without a thread hop
                tenant = service.cached_tenant(token) or await run_in_threadpool(service.authenticate, token)
                response = await handler(request, tenant)
            except PetrelError as error:
                response = error_response(error)
            service.metrics.requests.labels("http", route, str(response.status_code)).inc()
            return response
        return wrapped

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        await run_in_threadpool(service.observe_monitors)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    async def sql(request: Request, tenant: Tenant) -> Response:
        body = await read_body(request, tenant.limits.max_body_bytes)
        query, dialect = _query_of(request, body)
        table = await run_in_threadpool(service.query, tenant, query, dialect)
        return render_result(table, request.headers.get("accept", ""))

    async def list_tables(request: Request, tenant: Tenant) -> Response:
        session = await run_in_threadpool(service.session, tenant)
        names = await run_in_threadpool(session.tables)
        return JSONResponse({"namespace": tenant.namespace, "tables": names})

    async def create_table(request: Request, tenant: Tenant) -> Response:
        spec = _json_object(await read_body(request, tenant.limits.max_body_bytes))
        if "name" not in spec:
            raise PetrelError('the table definition has no "name"; send {"name": "events", "time_column": ...}')
        options = {k: spec[k] for k in ("time_column", "sort_key", "partitions", "retention", "routing_key",
                                        "exist_ok") if k in spec}
        if "schema" in spec:
            options["schema"] = _schema(spec["schema"])
        session = await run_in_threadpool(service.session, tenant)
        meta = await run_in_threadpool(lambda: session.create_table(spec["name"], **options))
        return JSONResponse(table_json(meta), status_code=201)

    async def describe_table(request: Request, tenant: Tenant) -> Response:
        session = await run_in_threadpool(service.session, tenant)
        meta = await run_in_threadpool(session.table, request.path_params["table"])
        return JSONResponse(table_json(meta))

    async def table_stats(request: Request, tenant: Tenant) -> Response:
        session = await run_in_threadpool(service.session, tenant)
        stats = await run_in_threadpool(session.table_stats, request.path_params["table"])
        return Response(json.dumps(stats.to_json(), default=str), media_type="application/json")

    async def ingest(request: Request, tenant: Tenant) -> Response:
        body = await read_body(request, tenant.limits.max_body_bytes)
        data, fmt = decode_events(request, body, tenant.limits.max_body_bytes)
        batch_id = request.headers.get("idempotency-key") or None
        receipt = await run_in_threadpool(service.ingest, tenant, request.path_params["table"], data, batch_id,
                                          fmt, len(body))
        return JSONResponse({
            "accepted": receipt.accepted, "rejected": len(receipt.rejected), "batch_id": receipt.batch_id,
            "reasons": [{"row": row, "reason": reason} for row, reason in receipt.rejected[:1000]],
        })

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/sql", endpoint("/v1/sql", sql), methods=["POST"]),
        Route("/v1/tables", endpoint("/v1/tables", list_tables), methods=["GET"]),
        Route("/v1/tables", endpoint("/v1/tables", create_table), methods=["POST"]),
        Route("/v1/tables/{table}", endpoint("/v1/tables/{table}", describe_table), methods=["GET"]),
        Route("/v1/tables/{table}/stats", endpoint("/v1/tables/{table}/stats", table_stats), methods=["GET"]),
        Route("/v1/tables/{table}/events", endpoint("/v1/tables/{table}/events", ingest), methods=["POST"]),
    ]

    async def json_body(request: Request, tenant: Tenant) -> dict[str, Any]:
        return _json_object(await read_body(request, tenant.limits.max_body_bytes))

    routes += monitor_routes(service, endpoint, json_body, render_result)
    app = Starlette(routes=routes)
    app.state.service = service
    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with :class:`BodyTooLarge` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is {declared} bytes, over this tenant's limit of {limit}; "
                           "send smaller batches")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is over this tenant's limit of {limit} bytes; send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_events(request: Request, body: bytes, limit: int) -> tuple[Any, str]:
    """(events, format name) of an ingest body: JSON lines, gzip JSON lines, or an Arrow IPC stream."""
    content_type = request.headers.get("content-type", "application/x-ndjson").split(";")[0].strip().lower()
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding == "gzip" or content_type in ("application/gzip", "application/x-gzip"):
        body = _gunzip(body, limit)
        content_type = "application/x-ndjson" if content_type in ("application/gzip", "application/x-gzip") \
            else content_type
    elif encoding not in ("", "identity"):
        raise PetrelError(f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding")
    if content_type == ARROW_STREAM:
        try:
            return pa.ipc.open_stream(body).read_all(), "arrow"
        except pa.ArrowInvalid as error:
            raise PetrelError(f"the body is not an Arrow IPC stream ({error}); "
                              "write it with pyarrow.ipc.new_stream") from None
    if content_type in JSON_LINES or content_type.startswith("text/"):
        return body, "jsonl"
    raise PetrelError(f"Content-Type {content_type!r} cannot be ingested; use application/x-ndjson "
                      f"(JSON lines, optionally with Content-Encoding: gzip) or {ARROW_STREAM}")


def _gunzip(body: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflate.decompress(body, limit + 1)
    except zlib.error as error:
        raise PetrelError(f"the body is not valid gzip ({error})") from None
    if len(data) > limit or inflate.unconsumed_tail:
        raise BodyTooLarge(f"the body inflates to more than this tenant's limit of {limit} bytes; "
                           "send smaller batches")
    return data


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except json.JSONDecodeError as error:
        raise PetrelError(f"the body is not JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    if not isinstance(value, dict):
        raise PetrelError(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _query_of(request: Request, body: bytes) -> tuple[str, str | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        spec = _json_object(body)
        if not isinstance(spec.get("sql"), str):
            raise PetrelError('send {"sql": "SELECT ..."} (and optionally "dialect")')
        return spec["sql"], spec.get("dialect")
    return body.decode("utf-8", errors="replace"), request.query_params.get("dialect")


def _schema(spec: Any) -> pa.Schema:
    if not isinstance(spec, dict):
        raise PetrelError('"schema" must map column names to types, e.g. {"service": "string", "ms": "float64"}')
    fields = []
    for name, type_name in spec.items():
        try:
            fields.append(pa.field(name, pa.type_for_alias(str(type_name))))
        except (ValueError, KeyError):
            raise InvalidName(f"column {name!r} has type {type_name!r}, which is not an Arrow type name; "
                              "use int64, float64, string, bool, timestamp[us], ...") from None
    return pa.schema(fields)


def table_json(meta: Any) -> dict[str, Any]:
    return {
        "namespace": meta.namespace, "name": meta.name, "time_column": meta.time_column,
        "sort_key": list(meta.sort_key), "partitions": meta.partitions, "retention": meta.retention,
        "routing_key": meta.routing_key, "created_at": meta.created_at,
        "schema": [{"name": f.name, "type": str(f.type)} for f in meta.schema] if meta.schema is not None else None,
    }


def render_result(table: pa.Table, accept: str) -> Response:
    """``table`` as Arrow IPC, CSV or JSON, whichever ``Accept`` prefers (JSON by default)."""
    accept = accept.lower()
    if ARROW_STREAM in accept:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)
    if "text/csv" in accept:
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        return Response(buffer.getvalue(), media_type="text/csv")
    body = {
        "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
        "rows": [[_finite(v) for v in row] for row in zip(*(column.to_pylist() for column in table.columns))],
        "row_count": table.num_rows,
    }
    return Response(json.dumps(body, default=_json_value), media_type="application/json")


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no spelling for them."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
