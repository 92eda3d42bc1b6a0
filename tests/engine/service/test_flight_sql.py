"""The Flight SQL endpoint through the real ADBC Flight SQL driver: bearer tokens, queries, metadata, prepared statements."""

from __future__ import annotations

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pytest

ROWS = pa.table({
    "timestamp": pa.array([1_772_323_200_000_000 + i * 1_000_000 for i in range(30)], pa.timestamp("us", "UTC")),
    "service": ["api", "db", "search"] * 10,
    "ms": [float(i) for i in range(30)],
})


def _connect(served, token: str):
    return flight_sql.connect(f"grpc://127.0.0.1:{served.server.flight_port}",
                              db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
                              autocommit=True)


@pytest.fixture(scope="module")
def flight_tables(served):
    service = served.server.service
    tenant = service.authenticate(served.acme)
    session = service.session(tenant)
    session.create_table("spans", exist_ok=True)
    session.ingest("spans", ROWS, batch_id="flight-rows")
    return served


def test_queries_return_arrow(flight_tables):
    with _connect(flight_tables, flight_tables.acme) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT service, count(*) AS n, sum(ms) AS total FROM spans GROUP BY service ORDER BY service")
        table = cursor.fetch_arrow_table()
    assert table.column_names == ["service", "n", "total"]
    assert table.column("service").to_pylist() == ["api", "db", "search"]
    assert table.column("n").to_pylist() == [10, 10, 10]
    assert sum(table.column("total").to_pylist()) == sum(range(30))


def test_tables_and_schemas_are_listed_for_the_tokens_namespace_only(flight_tables):
    with _connect(flight_tables, flight_tables.acme) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        schemas = [s for catalog in objects for s in catalog["catalog_db_schemas"]]
        assert [s["db_schema_name"] for s in schemas] == ["acme"]
        tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
        assert "spans" in tables
        assert {c["column_name"] for c in tables["spans"]["table_columns"]} >= {"timestamp", "service", "ms"}
        schema = conn.adbc_get_table_schema("spans", db_schema_filter="acme")
        assert {"timestamp", "service", "ms"} <= set(schema.names)
        assert "TABLE" in conn.adbc_get_table_types()
    with _connect(flight_tables, flight_tables.globex) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        schemas = [s for catalog in objects for s in catalog["catalog_db_schemas"]]
        assert [s["db_schema_name"] for s in schemas] == ["globex"]
        assert not schemas[0]["db_schema_tables"]


def test_prepared_statements_run_again_and_again(flight_tables):
    with _connect(flight_tables, flight_tables.acme) as conn, conn.cursor() as cursor:
        query = "SELECT count(*) AS n FROM spans WHERE service = 'db'"
        cursor.adbc_prepare(query)
        assert list(flight_tables.server.flight._prepared.values())[-1][1] == query  # held by the server
        for _ in range(2):
            cursor.execute(query)
            assert cursor.fetch_arrow_table().column("n").to_pylist() == [10]


def test_bad_tokens_and_bad_sql_are_refused_with_reasons(flight_tables):
    with pytest.raises(adbc_driver_manager.Error):
        with _connect(flight_tables, "ptl_wrong") as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    with _connect(flight_tables, flight_tables.acme) as conn, conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error, match="line 2"):
            cursor.execute("SELECT service\nFROM spans WHERE nope = 1")
        with pytest.raises(adbc_driver_manager.Error, match="AccessDenied"):
            cursor.execute("SELECT * FROM read_csv('/etc/passwd')")
    with _connect(flight_tables, flight_tables.globex) as conn, conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error, match="TableNotFound|does not exist"):
            cursor.execute("SELECT count(*) FROM acme.spans")
