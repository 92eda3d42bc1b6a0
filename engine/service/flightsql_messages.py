"""The Arrow Flight SQL protocol messages Petrel's endpoint speaks, as protobuf classes.

pyarrow ships the Flight transport but not the Flight SQL messages, and no
maintained package on the index ships them for current protobuf runtimes,
so the messages are declared here with protobuf's own descriptor API (no
code generation step): names, field numbers and types are those of Arrow's
``FlightSql.proto`` (package ``arrow.flight.protocol.sql``), so the bytes on
the wire are the protocol's.  Only the messages the endpoint handles are
declared; proto3 ``optional`` fields are declared as plain fields, which is
the same encoding.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "arrow.flight.protocol.sql"
_F = descriptor_pb2.FieldDescriptorProto
_STRING, _BYTES, _BOOL, _UINT32, _INT64 = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_BOOL, _F.TYPE_UINT32, _F.TYPE_INT64
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# message name -> [(field name, number, type, label)]
MESSAGES: dict[str, list[tuple[str, int, int, int]]] = {
    "CommandGetSqlInfo": [("info", 1, _UINT32, _MANY)],
    "CommandGetCatalogs": [],
    "CommandGetDbSchemas": [("catalog", 1, _STRING, _ONE), ("db_schema_filter_pattern", 2, _STRING, _ONE)],
    "CommandGetTables": [("catalog", 1, _STRING, _ONE), ("db_schema_filter_pattern", 2, _STRING, _ONE),
                         ("table_name_filter_pattern", 3, _STRING, _ONE), ("table_types", 4, _STRING, _MANY),
                         ("include_schema", 5, _BOOL, _ONE)],
    "CommandGetTableTypes": [],
    "CommandGetPrimaryKeys": [("catalog", 1, _STRING, _ONE), ("db_schema", 2, _STRING, _ONE),
                              ("table", 3, _STRING, _ONE)],
    "CommandStatementQuery": [("query", 1, _STRING, _ONE), ("transaction_id", 2, _BYTES, _ONE)],
    "TicketStatementQuery": [("statement_handle", 1, _BYTES, _ONE)],
    "CommandPreparedStatementQuery": [("prepared_statement_handle", 1, _BYTES, _ONE)],
    "CommandStatementUpdate": [("query", 1, _STRING, _ONE), ("transaction_id", 2, _BYTES, _ONE)],
    "ActionCreatePreparedStatementRequest": [("query", 1, _STRING, _ONE), ("transaction_id", 2, _BYTES, _ONE)],
    "ActionCreatePreparedStatementResult": [("prepared_statement_handle", 1, _BYTES, _ONE),
                                            ("dataset_schema", 2, _BYTES, _ONE),
                                            ("parameter_schema", 3, _BYTES, _ONE)],
    "ActionClosePreparedStatementRequest": [("prepared_statement_handle", 1, _BYTES, _ONE)],
    "DoPutUpdateResult": [("record_count", 1, _INT64, _ONE)],
}


def _build() -> dict[str, type]:
    file = descriptor_pb2.FileDescriptorProto(name="petrel/flight_sql.proto", package=PACKAGE, syntax="proto3")
    for name, fields in MESSAGES.items():
        message = file.message_type.add(name=name)
        for field_name, number, kind, label in fields:
            message.field.add(name=field_name, number=number, type=kind, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}


CLASSES = _build()


def message(name: str, **fields: Any) -> Any:
    """A new Flight SQL message ``name`` with ``fields`` set."""
    return CLASSES[name](**fields)


def pack(msg: Any) -> bytes:
    """``msg`` wrapped in ``google.protobuf.Any``, serialized (how commands and tickets travel)."""
    wrapped = any_pb2.Any()
    wrapped.Pack(msg)
    return wrapped.SerializeToString()


def unpack(data: bytes) -> tuple[str, Any]:
    """(message name, message) of a serialized ``Any``; the name is '' for something else."""
    wrapped = any_pb2.Any()
    try:
        wrapped.ParseFromString(data)
    except Exception:
        return "", None
    full = wrapped.type_url.rsplit("/", 1)[-1]
    if not full.startswith(PACKAGE + "."):
        return "", None
    name = full[len(PACKAGE) + 1:]
    if name not in CLASSES:
        return name, None
    msg = CLASSES[name]()
    msg.ParseFromString(wrapped.value)
    return name, msg
