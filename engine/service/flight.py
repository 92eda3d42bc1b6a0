"""The Arrow Flight SQL endpoint: BI tools, ADBC, JDBC and Grafana connect with no Petrel client.

A request carries ``authorization: Bearer <token>``; the token's namespace is
the one database schema the client sees (there are no catalogs).  A query
runs when the client asks for its ``FlightInfo`` (so the schema is exact and
errors come back at once, with line and column); its rows wait under an
opaque handle for the one ``DoGet`` that fetches them, for at most
:data:`RESULT_SECONDS`.  Prepared statements keep their SQL under a handle
and run like queries.  Everything goes through the same
:class:`~engine.service.core.Service` as the HTTP API, under the same limits.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from engine.service.core import Service
from engine.service.flightsql_messages import message, pack, unpack
from engine.service.tenants import Tenant
from storage.errors import (
    AccessDenied, LimitExceeded, PetrelError, QueryTimeout, QueryTooLarge, TableNotFound, TooManyQueries, Unauthorized,
)

RESULT_SECONDS = 300.0
SERVER_NAME = "petrel"

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), False)])
DB_SCHEMAS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), False)])
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), False)])
TABLES_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8()),
                           pa.field("table_name", pa.utf8(), False), pa.field("table_type", pa.utf8(), False)])
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), False))
_SQL_INFO_VALUE = pa.dense_union([
    pa.field("string_value", pa.utf8()), pa.field("bool_value", pa.bool_()), pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()), pa.field("string_list", pa.list_(pa.utf8())),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
])
SQL_INFO_SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), False), pa.field("value", _SQL_INFO_VALUE, False)])


def _flight_error(error: PetrelError) -> Exception:
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, Unauthorized):
        return flight.FlightUnauthenticatedError(text)
    if isinstance(error, AccessDenied):
        return flight.FlightUnauthorizedError(text)
    if isinstance(error, QueryTimeout):
        return flight.FlightTimedOutError(text)
    if isinstance(error, TooManyQueries):
        return flight.FlightUnavailableError(text)
    if isinstance(error, QueryTooLarge):  # not retryable as is: the detail says by how much it is over
        detail = {"type": "QueryTooLarge", "limit_bytes": error.limit, "needed_bytes": error.needed}
        return flight.FlightServerError(text, extra_info=json.dumps(detail).encode())
    return flight.FlightServerError(text)


class _TenantMiddleware(flight.ServerMiddleware):
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant


class _AuthFactory(flight.ServerMiddlewareFactory):
    """Resolves the bearer token of every call to its tenant, or refuses the call."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> _TenantMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or [""]
        scheme, _, token = values[0].partition(" ")
        try:
            tenant = self.service.authenticate(token.strip() if scheme.lower() == "bearer" else None)
        except PetrelError as error:
            raise _flight_error(error) from None
        return _TenantMiddleware(tenant)


def _like(pattern: str | None) -> re.Pattern[str] | None:
    """A SQL LIKE pattern (% and _) as a regular expression; None matches everything."""
    if not pattern:
        return None
    return re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern) + r"\Z",
                      re.DOTALL)


class FlightSqlServer(flight.FlightServerBase):
    """Flight SQL over a :class:`Service`: statements, prepared statements and catalog metadata."""

    def __init__(self, service: Service, location: str = "grpc://127.0.0.1:0") -> None:
        super().__init__(location, middleware={"auth": _AuthFactory(service)})
        self.service = service
        self._results: dict[bytes, tuple[str, pa.Table, float]] = {}
        self._prepared: dict[bytes, tuple[str, str]] = {}
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------
    def _tenant(self, context: Any) -> Tenant:
        return context.get_middleware("auth").tenant

    def _keep(self, tenant: Tenant, table: pa.Table) -> bytes:
        handle = secrets.token_bytes(16)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (_, _, at) in self._results.items() if now - at > RESULT_SECONDS]:
                del self._results[key]
            self._results[handle] = (tenant.token_id, table, now)
        return handle

    def _info(self, descriptor: flight.FlightDescriptor, tenant: Tenant, table: pa.Table) -> flight.FlightInfo:
        ticket = flight.Ticket(pack(message("TicketStatementQuery", statement_handle=self._keep(tenant, table))))
        return flight.FlightInfo(table.schema, descriptor, [flight.FlightEndpoint(ticket, [])],
                                 table.num_rows, table.nbytes)

    # -- Flight RPCs ---------------------------------------------------------------------
    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        tenant = self._tenant(context)
        name, command = unpack(descriptor.command or b"")
        try:
            table = self._run(tenant, name, command)
        except PetrelError as error:
            raise _flight_error(error) from None
        return self._info(descriptor, tenant, table)

    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        return flight.SchemaResult(self.get_flight_info(context, descriptor).schema)

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        tenant = self._tenant(context)
        name, msg = unpack(ticket.ticket)
        if name != "TicketStatementQuery":
            raise flight.FlightServerError("the ticket is not one this server gave out; call GetFlightInfo first")
        with self._lock:
            kept = self._results.get(msg.statement_handle)
            if kept is None or kept[0] != tenant.token_id:
                raise flight.FlightServerError("the result is gone (fetched already, or older than "
                                               f"{RESULT_SECONDS:g} s); run the query again")
            del self._results[msg.statement_handle]
        return flight.RecordBatchStream(kept[1])

    def do_action(self, context: Any, action: flight.Action) -> Any:
        tenant = self._tenant(context)
        kind = action.type
        _, msg = unpack(action.body.to_pybytes() if action.body is not None else b"")
        if kind == "CreatePreparedStatement":
            if msg is None:
                raise flight.FlightServerError("CreatePreparedStatement needs an ActionCreatePreparedStatementRequest")
            handle = secrets.token_bytes(16)
            with self._lock:
                self._prepared[handle] = (tenant.token_id, msg.query)
            result = message("ActionCreatePreparedStatementResult", prepared_statement_handle=handle)
            return [flight.Result(pack(result))]
        if kind == "ClosePreparedStatement":
            with self._lock:
                self._prepared.pop(getattr(msg, "prepared_statement_handle", b""), None)
            return []
        raise flight.FlightServerError(f"action {kind!r} is not supported; Petrel answers queries and metadata")

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [("CreatePreparedStatement", "prepare a query"), ("ClosePreparedStatement", "drop a prepared query")]

    def do_put(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        name, _ = unpack(descriptor.command or b"")
        if name == "CommandPreparedStatementQuery":  # parameters: none are supported, an empty bind is fine
            if reader.read_all().num_rows:
                raise flight.FlightServerError("Petrel's prepared statements take no parameters; put values in the SQL")
            return
        raise flight.FlightServerError(f"{name or 'this command'} is not supported: Petrel's SQL is read-only; "
                                       "ingest through the HTTP API or the Python session")

    # -- commands ---------------------------------------------------------------------
    def _run(self, tenant: Tenant, name: str, command: Any) -> pa.Table:
        if name == "CommandStatementQuery":
            return self.service.query(tenant, command.query, protocol="flight")
        if name == "CommandPreparedStatementQuery":
            with self._lock:
                owner, query = self._prepared.get(command.prepared_statement_handle, (None, ""))
            if owner != tenant.token_id:
                raise PetrelError("the prepared statement is unknown or closed; prepare it again")
            return self.service.query(tenant, query, protocol="flight")
        if name == "CommandGetCatalogs":
            return CATALOGS_SCHEMA.empty_table()
        if name == "CommandGetDbSchemas":
            keep = _like(command.db_schema_filter_pattern)
            names = [tenant.namespace] if keep is None or keep.match(tenant.namespace) else []
            return pa.table([pa.array([None] * len(names), pa.utf8()), pa.array(names, pa.utf8())],
                            schema=DB_SCHEMAS_SCHEMA)
        if name == "CommandGetTableTypes":
            return pa.table([pa.array(["TABLE"])], schema=TABLE_TYPES_SCHEMA)
        if name == "CommandGetTables":
            return self._tables(tenant, command)
        if name == "CommandGetPrimaryKeys":
            return pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8()),
                              pa.field("table_name", pa.utf8(), False), pa.field("column_name", pa.utf8(), False),
                              pa.field("key_name", pa.utf8()), pa.field("key_sequence", pa.int32(), False)]).empty_table()
        if name == "CommandGetSqlInfo":
            return self._sql_info(list(command.info))
        raise PetrelError(f"Flight SQL command {name or '(not a Flight SQL command)'} is not supported")

    def _tables(self, tenant: Tenant, command: Any) -> pa.Table:
        schema_pattern = _like(command.db_schema_filter_pattern)
        table_pattern = _like(command.table_name_filter_pattern)
        types = set(command.table_types)
        session = self.service.session(tenant)
        names: list[str] = []
        if (schema_pattern is None or schema_pattern.match(tenant.namespace)) and (not types or "TABLE" in types) \
                and command.catalog in ("",):
            names = [n for n in session.tables() if table_pattern is None or table_pattern.match(n)]
        columns = [pa.array([None] * len(names), pa.utf8()), pa.array([tenant.namespace] * len(names), pa.utf8()),
                   pa.array(names, pa.utf8()), pa.array(["TABLE"] * len(names), pa.utf8())]
        if not command.include_schema:
            return pa.table(columns, schema=TABLES_SCHEMA)
        schemas = []
        for table_name in names:
            try:
                schema = session.table(table_name).schema
                if schema is None:  # inferred from the data: what a query of it returns
                    schema = self.service.query(tenant, f'SELECT * FROM "{table_name}" LIMIT 0', protocol="flight").schema
            except (TableNotFound, LimitExceeded):
                schema = pa.schema([])
            schemas.append(schema.serialize().to_pybytes())
        return pa.table(columns + [pa.array(schemas, pa.binary())], schema=TABLES_WITH_SCHEMA)

    def _sql_info(self, wanted: list[int]) -> pa.Table:
        import engine

        known: dict[int, tuple[int, Any]] = {  # info id -> (union child, value)
            0: (0, SERVER_NAME), 1: (0, getattr(engine, "__version__", "0")), 2: (0, pa.__version__),
            3: (1, True), 4: (1, True), 5: (1, False), 504: (0, '"'),
        }
        ids = [i for i in (wanted or sorted(known)) if i in known]
        children = [pa.array([known[i][1] for i in ids if known[i][0] == c], child.type)
                    for c, child in enumerate(_SQL_INFO_VALUE)]
        offsets, seen = [], [0] * len(children)
        for i in ids:
            child = known[i][0]
            offsets.append(seen[child])
            seen[child] += 1
        value = pa.UnionArray.from_dense(pa.array([known[i][0] for i in ids], pa.int8()),
                                         pa.array(offsets, pa.int32()), children,
                                         [f.name for f in _SQL_INFO_VALUE], list(range(len(children))))
        return pa.table([pa.array(ids, pa.uint32()), value], schema=SQL_INFO_SCHEMA)
