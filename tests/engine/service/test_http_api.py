"""The HTTP API over a real uvicorn on loopback, through httpx: ingest, SQL, tables, tenants and limits."""

from __future__ import annotations

import gzip
import io
import json

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from engine.service.tenants import Limits
from tests.engine.service.http_clients import ARROW, arrow_stream, tenant_client


def _lines(start: int, count: int, service: str = "api") -> bytes:
    return b"".join(json.dumps({"timestamp": f"2026-03-01T00:00:{(start + i) % 60:02d}Z", "service": service,
                                "ms": float(start + i)}).encode() + b"\n" for i in range(count))


@pytest.fixture(scope="module")
def acme(served):
    with tenant_client(served, served.acme) as client:
        created = client.post("/v1/tables", json={"name": "events", "partitions": 2})
        assert created.status_code == 201, created.text
        yield client


def _count(client: httpx.Client, table: str = "events") -> int:
    reply = client.post("/v1/sql", content=f"SELECT count(*) AS n FROM {table}")
    assert reply.status_code == 200, reply.text
    return reply.json()["rows"][0][0]


def test_health_and_metrics_need_no_token(served, acme):
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
    acme.post("/v1/tables/events/events", content=_lines(0, 3), headers={"Idempotency-Key": "metrics-1"})
    text = httpx.get(f"{served.url}/metrics").text
    assert 'petrel_ingested_events_total{format="jsonl",namespace="acme"}' in text
    assert "petrel_query_seconds_bucket" in text or "petrel_requests_total" in text


def test_requests_without_a_valid_token_are_refused(served):
    for token in (None, "ptl_not-a-token"):
        with tenant_client(served, token) as client:
            reply = client.get("/v1/tables")
            assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
            assert reply.json()["error"]["type"] == "Unauthorized"


def test_a_revoked_token_stops_working(served):
    token, tenant = served.server.service.tokens.create("acme")
    with tenant_client(served, token) as client:
        assert client.get("/v1/tables").status_code == 200
        served.server.service.tokens.revoke(tenant.token_id)
        assert client.get("/v1/tables").status_code == 401


def test_json_lines_with_an_idempotency_key_are_stored_once(acme):
    before = _count(acme)
    for _ in range(3):  # a client retrying the same batch
        reply = acme.post("/v1/tables/events/events", content=_lines(100, 50),
                          headers={"Idempotency-Key": "batch-jsonl-1", "Content-Type": "application/x-ndjson"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["accepted"] == 50 and reply.json()["batch_id"] == "batch-jsonl-1"
    assert _count(acme) == before + 50


def test_gzip_and_arrow_bodies_are_ingested(acme):
    before = _count(acme)
    reply = acme.post("/v1/tables/events/events", content=gzip.compress(_lines(200, 40)),
                      headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson",
                               "Idempotency-Key": "gz-1"})
    assert reply.status_code == 200 and reply.json()["accepted"] == 40
    table = pa.table({"timestamp": pa.array([1_772_323_200_000_000 + i for i in range(25)], pa.timestamp("us", "UTC")),
                      "service": ["db"] * 25, "ms": [float(i) for i in range(25)]})
    reply = acme.post("/v1/tables/events/events", content=arrow_stream(table),
                      headers={"Content-Type": ARROW, "Idempotency-Key": "arrow-1"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 25
    assert _count(acme) == before + 65


def test_rejected_rows_come_back_with_reasons_and_the_rest_lands(acme):
    before = _count(acme)
    body = _lines(300, 2) + b'{"timestamp": "not a time", "service": "api"}\n' + b"{broken json\n"
    reply = acme.post("/v1/tables/events/events", content=body, headers={"Idempotency-Key": "mixed-1"})
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["accepted"] == 2 and result["rejected"] == 2
    assert all(r["reason"] for r in result["reasons"])
    assert _count(acme) == before + 2


def test_sql_answers_in_json_csv_or_arrow_by_accept(acme):
    acme.post("/v1/tables/events/events", content=_lines(400, 5, "search"), headers={"Idempotency-Key": "q-1"})
    query = "SELECT service, count(*) AS n FROM events WHERE service = 'search' GROUP BY service"
    as_json = acme.post("/v1/sql", json={"sql": query})
    assert as_json.json()["columns"][0]["name"] == "service" and as_json.json()["rows"] == [["search", 5]]
    as_csv = acme.post("/v1/sql", content=query, headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert pacsv.read_csv(io.BytesIO(as_csv.content)).to_pylist() == [{"service": "search", "n": 5}]
    as_arrow = acme.post("/v1/sql", content=query, headers={"Accept": ARROW})
    assert pa.ipc.open_stream(as_arrow.content).read_all().to_pylist() == [{"service": "search", "n": 5}]


def test_sql_errors_say_line_and_column(acme):
    reply = acme.post("/v1/sql", content="SELECT service,\n  count(*) AS n\nFROM events WHERE nope = 1")
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "ColumnNotFound" and error["line"] == 3 and error["column"] is not None


def test_tables_list_describe_stats_and_conflicts(acme):
    assert "events" in acme.get("/v1/tables").json()["tables"]
    described = acme.get("/v1/tables/events").json()
    assert described["partitions"] == 2 and described["time_column"] == "timestamp"
    assert acme.get("/v1/tables/events/stats").json()["rows"] > 0
    assert acme.post("/v1/tables", json={"name": "events"}).status_code == 409
    assert acme.get("/v1/tables/missing").status_code == 404
    assert acme.post("/v1/tables/missing/events", content=_lines(0, 1)).status_code == 404
    assert acme.post("/v1/tables", json={"name": "../etc"}).status_code == 400


def test_a_namespace_sees_only_its_own_tables(served, acme):
    with tenant_client(served, served.globex) as globex:
        assert globex.get("/v1/tables").json() == {"namespace": "globex", "tables": []}
        assert globex.get("/v1/tables/events").status_code == 404
        assert globex.post("/v1/sql", content="SELECT count(*) FROM acme.events").status_code == 404
        assert globex.post("/v1/sql", content="SELECT count(*) FROM events").status_code == 404


def test_table_functions_are_off_for_tenants(served, acme):
    for path in ("/etc/passwd", f"{served.root}/acme/events/_table.json", "http://169.254.169.254/latest"):
        reply = acme.post("/v1/sql", content=f"SELECT * FROM read_csv('{path}', delim=':')")
        assert reply.status_code == 403, reply.text
        assert "root:" not in reply.text


def test_limits_give_statuses_a_client_can_act_on(served):
    service = served.server.service
    with tenant_client(served, served.tight) as tight:
        assert tight.post("/v1/tables", json={"name": "events"}).status_code == 201
        too_big = tight.post("/v1/tables/events/events", content=_lines(0, 200))
        assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "BodyTooLarge"
        bomb = gzip.compress(b" " * 100_000)
        assert tight.post("/v1/tables/events/events", content=bomb,
                          headers={"Content-Encoding": "gzip"}).status_code == 413
        assert tight.post("/v1/tables/events/events", content=_lines(0, 10)).status_code == 200
        assert tight.post("/v1/sql", content="SELECT * FROM events").status_code == 422  # 10 rows > 3
        tenant = service.authenticate(served.tight)
        with service.admit(tenant):  # its one query slot is taken
            busy = tight.post("/v1/sql", content="SELECT count(*) FROM events")
        assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
        assert tight.post("/v1/sql", content="SELECT count(*) FROM events").status_code == 200


def test_a_query_over_its_timeout_gets_504(served):
    token, _ = served.server.service.tokens.create("acme", Limits(query_timeout=1e-6))
    with tenant_client(served, token) as hurried:
        reply = hurried.post("/v1/sql", content="SELECT service, count(*) FROM events GROUP BY service")
        assert reply.status_code == 504 and reply.json()["error"]["type"] == "QueryTimeout"


def test_a_tenant_reads_files_only_under_its_allow_listed_prefixes(served, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tiers.csv").write_text("tier,price\nfree,0\npro,20\n")
    (tmp_path / "private.csv").write_text("secret\nhunter2\n")
    token, _ = served.server.service.tokens.create("acme", table_functions=[f"{shared}/"])
    with tenant_client(served, token) as client:
        allowed = client.post("/v1/sql", content=f"SELECT tier FROM read_csv('{shared}/tiers.csv') ORDER BY price")
        assert allowed.status_code == 200 and allowed.json()["rows"] == [["free"], ["pro"]]
        for path in (tmp_path / "private.csv", f"{shared}/../private.csv", "/etc/passwd"):
            denied = client.post("/v1/sql", content=f"SELECT * FROM read_csv('{path}')")
            assert denied.status_code == 403 and "hunter2" not in denied.text
