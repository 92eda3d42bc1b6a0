"""A query over more than its tenant's memory limit is refused alone, within that limit, while others are served."""

from __future__ import annotations

import threading

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import numpy as np
import pyarrow as pa
import pytest
import ray

from engine.service.tenants import Limits
from tests.engine.service.http_clients import tenant_client

LIMIT = 16 << 20  # the bulky tenant's memory per query
ROWS = 1_200_000
BASE_MICROS = 1_793_491_200_000_000


def _wide_rows() -> pa.Table:
    """About 100 MiB of Arrow data (long repeated strings), a few MiB of Parquet."""
    rng = np.random.default_rng(7)
    payloads = np.array([f"{name}-" + "x" * 72 for name in ("checkout", "search", "login", "upload")])
    return pa.table({
        "timestamp": pa.array(BASE_MICROS + np.arange(ROWS, dtype=np.int64) * 1000, pa.timestamp("us", "UTC")),
        "service": pa.array(np.array(["api", "web", "db"])[rng.integers(0, 3, ROWS)]),
        "payload": pa.array(payloads[rng.integers(0, 4, ROWS)]),
        "ms": pa.array(rng.random(ROWS) * 100),
    })


@pytest.fixture(scope="module")
def bulky(served):
    """A tenant limited to LIMIT bytes per query, whose one table holds far more than that."""
    service = served.server.service
    token, tenant = service.tokens.create("bulky", Limits(max_query_memory=LIMIT, max_result_rows=10**8,
                                                          max_result_bytes=1 << 30))
    session = service.session(tenant)
    session.queries.local_bytes = 0  # every stage on the workers, whose memory pools are measured below
    session.create_table("wide", partitions=1, exist_ok=True)
    rows = _wide_rows()
    assert rows.nbytes > 6 * LIMIT
    session.ingest("wide", rows, batch_id="wide-1")
    return token, session


def test_a_query_over_its_memory_limit_is_refused_alone_while_other_tenants_are_served(served, bulky):
    token, session = bulky
    acme_answers: list[int] = []
    with tenant_client(served, served.acme) as acme:
        acme.post("/v1/tables", json={"name": "calm", "exist_ok": True}).raise_for_status()
        acme.post("/v1/tables/calm/events", content=b'{"timestamp": "2026-11-01T00:00:00Z", "n": 1}\n',
                  headers={"Idempotency-Key": "calm-1"}).raise_for_status()
        stop = threading.Event()

        def other_tenant() -> None:  # acme keeps querying while bulky's query runs and fails
            while not stop.is_set():
                reply = acme.post("/v1/sql", content="SELECT count(*) AS n FROM calm")
                acme_answers.append(reply.status_code)

        thread = threading.Thread(target=other_tenant)
        thread.start()
        try:
            with tenant_client(served, token) as client:
                reply = client.post("/v1/sql", content="SELECT * FROM wide")
        finally:
            stop.set()
            thread.join()
        assert reply.status_code == 422, reply.text
        error = reply.json()["error"]
        assert error["type"] == "QueryTooLarge"
        assert error["limit_bytes"] == LIMIT and error["needed_bytes"] > LIMIT
        assert "16.0 MiB" in error["message"] and "LIMIT" in error["message"]
        assert acme_answers and set(acme_answers) == {200}
        assert acme.post("/v1/sql", content="SELECT count(*) AS n FROM calm").json()["rows"] == [[1]]

    # the workers that ran it never held much more than the limit (the table is over six times that)
    pools = ray.get([worker.memory.remote() for worker in session.queries.pool.workers.values()])
    assert LIMIT // 2 < max(pool["max"] for pool in pools) < 2 * LIMIT, pools

    # the same tenant's narrow queries still run: a filter pushed into the scan keeps it small
    with tenant_client(served, token) as client:
        reply = client.post("/v1/sql", content="SELECT count(*) AS n, max(ms) AS top FROM wide WHERE ms < 0.01")
        assert reply.status_code == 200, reply.text
        assert reply.json()["rows"][0][0] > 0
    with tenant_client(served, None) as scraper:
        metrics = scraper.get("/metrics").text
    assert 'petrel_refused_total{limit="query_memory",namespace="bulky"} 1.0' in metrics


def test_flight_sql_refuses_it_with_the_limit_in_the_error(served, bulky):
    token, _ = bulky
    with flight_sql.connect(f"grpc://127.0.0.1:{served.server.flight_port}",
                            db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
                            autocommit=True) as conn, conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error, match="QueryTooLarge.*16.0 MiB"):
            cursor.execute("SELECT payload, service FROM wide ORDER BY ms")
        cursor.execute("SELECT service, count(*) AS n FROM wide WHERE ms < 0.01 GROUP BY service ORDER BY service")
        assert cursor.fetch_arrow_table().column("service").to_pylist() == ["api", "db", "web"]


def test_the_library_api_takes_a_memory_limit(bulky):
    _, session = bulky
    from petrel import QueryTooLarge

    with pytest.raises(QueryTooLarge) as raised:
        session.sql("SELECT payload FROM wide", memory_limit=4 << 20)
    assert raised.value.limit == 4 << 20 and raised.value.needed > 4 << 20
    assert session.sql("SELECT count(*) AS n FROM wide", memory_limit=4 << 20).column("n").to_pylist() == [ROWS]
