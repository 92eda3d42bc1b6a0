"""The monitor routes of the HTTP API: definitions, mutes, state and history under ``/v1/monitors``.

=======  ================================  ==============================================
method   path                              what
=======  ================================  ==============================================
GET      /v1/monitors                      the namespace's monitors
POST     /v1/monitors                      create one (the arguments of ``create_monitor``)
GET      /v1/monitors/{name}               one definition
PATCH    /v1/monitors/{name}               change some arguments (``update_monitor``)
DELETE   /v1/monitors/{name}               drop it (its transitions stay queryable)
POST     /v1/monitors/{name}/mute          ``{"until": "2h", "groups": {...}}``, both optional
POST     /v1/monitors/{name}/unmute        ``{"groups": {...}}`` optional
GET      /v1/monitors/{name}/state         each group's state; JSON, CSV or Arrow IPC by ``Accept``
GET      /v1/monitors/{name}/history       its transitions, oldest first; same formats
=======  ================================  ==============================================

Every route works through the tenant's session, so a tenant sees and
changes only its own namespace's monitors.  A refused definition is a 400
whose message names the clause; an unknown monitor is a 404, a taken name
a 409.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.monitors.definition import MonitorSpec
from engine.monitors.history import TRANSITIONS_SCHEMA, TRANSITIONS_TABLE
from engine.service.core import Service
from engine.service.tenants import Tenant
from storage.errors import InvalidMonitor, TableNotFound

Endpoint = Callable[[str, Callable[[Request, Tenant], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]
BodyReader = Callable[[Request, Tenant], Awaitable[dict[str, Any]]]
Renderer = Callable[[Any, str], Response]


def monitor_json(spec: MonitorSpec) -> dict[str, Any]:
    """A definition as JSON (durations in seconds, times as epoch seconds)."""
    return spec.to_record()


def monitor_routes(service: Service, endpoint: Endpoint, json_body: BodyReader, render: Renderer) -> list[Route]:
    """The ``/v1/monitors`` routes over ``service``; ``endpoint`` adds authentication, errors and metrics."""

    async def session_of(tenant: Tenant) -> Any:
        return await run_in_threadpool(service.session, tenant)

    async def list_monitors(request: Request, tenant: Tenant) -> Response:
        specs = await run_in_threadpool((await session_of(tenant)).monitors)
        return JSONResponse({"namespace": tenant.namespace, "monitors": [monitor_json(s) for s in specs]})

    async def create_monitor(request: Request, tenant: Tenant) -> Response:
        spec = await json_body(request, tenant)
        name, query = spec.pop("name", None), spec.pop("query", None)
        if not isinstance(name, str) or not isinstance(query, str):
            raise InvalidMonitor('a monitor needs "name" and "query"; send {"name": "errors", "query": '
                                 '"SELECT service, count(*) FROM events GROUP BY service", "window": "5m", '
                                 '"every": "1m", "critical": 10}')
        session = await session_of(tenant)
        try:
            created = await run_in_threadpool(lambda: session.create_monitor(name, query, **spec))
        except TypeError as error:  # an argument create_monitor does not take, or a missing window/every
            raise InvalidMonitor(f"the monitor definition is not accepted: {error}; the fields are those of "
                                 "create_monitor (query, window, every, delay, critical, warning, ...)") from None
        return JSONResponse(monitor_json(created), status_code=201)

    async def describe_monitor(request: Request, tenant: Tenant) -> Response:
        spec = await run_in_threadpool((await session_of(tenant)).monitor, request.path_params["name"])
        return JSONResponse(monitor_json(spec))

    async def update_monitor(request: Request, tenant: Tenant) -> Response:
        changes = await json_body(request, tenant)
        session = await session_of(tenant)
        spec = await run_in_threadpool(lambda: session.update_monitor(request.path_params["name"], **changes))
        return JSONResponse(monitor_json(spec))

    async def drop_monitor(request: Request, tenant: Tenant) -> Response:
        await run_in_threadpool((await session_of(tenant)).drop_monitor, request.path_params["name"])
        return Response(status_code=204)

    async def mute(request: Request, tenant: Tenant) -> Response:
        body = await json_body(request, tenant)
        session = await session_of(tenant)
        spec = await run_in_threadpool(lambda: session.mute_monitor(
            request.path_params["name"], until=body.get("until"), groups=body.get("groups")))
        return JSONResponse(monitor_json(spec))

    async def unmute(request: Request, tenant: Tenant) -> Response:
        body = await json_body(request, tenant)
        session = await session_of(tenant)
        spec = await run_in_threadpool(lambda: session.unmute_monitor(
            request.path_params["name"], groups=body.get("groups")))
        return JSONResponse(monitor_json(spec))

    async def state(request: Request, tenant: Tenant) -> Response:
        table = await run_in_threadpool((await session_of(tenant)).monitor_state, request.path_params["name"])
        return render(table, request.headers.get("accept", ""))

    async def history(request: Request, tenant: Tenant) -> Response:
        name = request.path_params["name"]
        session = await session_of(tenant)
        await run_in_threadpool(session.monitor, name)  # 404 for a monitor that does not exist
        literal = name.replace("'", "''")
        query = (f"SELECT * FROM {TRANSITIONS_TABLE} WHERE monitor = '{literal}' "
                 'ORDER BY slot, "group", seq')
        try:
            table = await run_in_threadpool(service.query, tenant, query)
        except TableNotFound:  # no monitor of the namespace has transitioned yet
            table = TRANSITIONS_SCHEMA.empty_table()
        return render(table, request.headers.get("accept", ""))

    path = "/v1/monitors/{name}"
    return [
        Route("/v1/monitors", endpoint("/v1/monitors", list_monitors), methods=["GET"]),
        Route("/v1/monitors", endpoint("/v1/monitors", create_monitor), methods=["POST"]),
        Route(path, endpoint(path, describe_monitor), methods=["GET"]),
        Route(path, endpoint(path, update_monitor), methods=["PATCH"]),
        Route(path, endpoint(path, drop_monitor), methods=["DELETE"]),
        Route(f"{path}/mute", endpoint(f"{path}/mute", mute), methods=["POST"]),
        Route(f"{path}/unmute", endpoint(f"{path}/unmute", unmute), methods=["POST"]),
        Route(f"{path}/state", endpoint(f"{path}/state", state), methods=["GET"]),
        Route(f"{path}/history", endpoint(f"{path}/history", history), methods=["GET"]),
    ]
