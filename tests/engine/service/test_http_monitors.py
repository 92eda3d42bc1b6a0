"""The monitor routes over a real uvicorn on loopback: CRUD with 400/404/409, mutes, state, history and metrics."""

from __future__ import annotations

import io
import re

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from engine.monitors.evaluate import Evaluator
from engine.monitors.history import ShardLog, ensure_table
from engine.monitors.queries import LocalQueries
from engine.monitors.state import ALERT, OK
from tests.engine.monitors.monitor_fixtures import BASE, EVENTS_SCHEMA, minute_of_events
from tests.engine.service.http_clients import ARROW, arrow_stream, tenant_client

ERRORS = 'SELECT svc, count(*) FILTER (WHERE status >= 500) * 100.0 / count(*) AS error_pct FROM ev GROUP BY svc'
INCIDENT = range(2, 5)  # the minutes after BASE in which payments fails half its requests


@pytest.fixture(scope="module")
def acme(served):
    """acme's client over a table ``ev`` with an incident on payments in minutes 2 to 4."""
    with tenant_client(served, served.acme) as client:
        assert client.post("/v1/tables", json={"name": "ev"}).status_code == 201
        rows = [row for k in range(8) for row in minute_of_events(
            BASE + 60 * k, {"payments": (20, 10 if k in INCIDENT else 0, 1.0), "search": (20, 0, 1.0)})]
        body = arrow_stream(pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA))
        reply = client.post("/v1/tables/ev/events", content=body, headers={"Content-Type": ARROW})
        assert reply.status_code == 200 and reply.json()["accepted"] == len(rows), reply.text
        yield client


def _definition(name: str = "errors", **changes) -> dict:
    return {"name": name, "query": ERRORS, "window": "1m", "every": "1m", "critical": 10.0, **changes}


def test_monitor_crud_with_statuses_a_client_can_act_on(served, acme):
    created = acme.post("/v1/monitors", json=_definition("crud"))
    assert created.status_code == 201, created.text
    assert created.json()["table"] == "ev" and created.json()["value_column"] == "error_pct"
    assert acme.post("/v1/monitors", json=_definition("crud")).status_code == 409
    assert [m["name"] for m in acme.get("/v1/monitors").json()["monitors"]] == ["crud"]
    assert acme.get("/v1/monitors/crud").json()["critical"] == 10.0
    assert acme.get("/v1/monitors/nothing").status_code == 404
    updated = acme.patch("/v1/monitors/crud", json={"critical": 20.0})
    assert updated.status_code == 200 and updated.json()["critical"] == 20.0
    assert updated.json()["version"] > created.json()["version"]
    assert acme.patch("/v1/monitors/crud", json={"colour": "red"}).status_code == 400
    muted = acme.post("/v1/monitors/crud/mute", json={"until": "2h", "groups": {"svc": "payments"}})
    assert muted.status_code == 200 and muted.json()["mutes"][0]["groups"] == {"svc": "payments"}
    assert acme.post("/v1/monitors/crud/unmute", json={}).json()["mutes"] == []
    assert acme.delete("/v1/monitors/crud").status_code == 204
    assert acme.get("/v1/monitors/crud").status_code == 404
    assert acme.delete("/v1/monitors/crud").status_code == 404


@pytest.mark.parametrize("change, words", [
    ({"query": "SELECT a.svc, count(*) FROM ev a JOIN ev b ON a.svc = b.svc GROUP BY a.svc"}, "JOIN clause"),
    ({"query": "SELECT svc, count(*) FROM nowhere GROUP BY svc"}, "nowhere"),
    ({"critical_recovery": 12.0}, "recovery"),
    ({"notify": ["carrier-pigeon:home"]}, "carrier-pigeon"),
    ({"windo": "1m"}, "windo"),
    ({"query": None}, '"query"'),
])
def test_a_refused_definition_is_a_400_naming_the_clause(acme, change, words):
    reply = acme.post("/v1/monitors", json=_definition("refused", **change))
    assert reply.status_code == 400, reply.text
    assert words in reply.json()["error"]["message"]
    assert acme.get("/v1/monitors/refused").status_code == 404


def test_a_tenant_sees_and_changes_only_its_own_monitors(served, acme):
    assert acme.post("/v1/monitors", json=_definition("private")).status_code == 201
    with tenant_client(served, served.globex) as globex:
        assert globex.get("/v1/monitors").json()["monitors"] == []
        for reply in (globex.get("/v1/monitors/private"), globex.delete("/v1/monitors/private"),
                      globex.get("/v1/monitors/private/state"), globex.get("/v1/monitors/private/history"),
                      globex.post("/v1/monitors/private/mute", json={})):
            assert reply.status_code == 404, reply.text
        assert globex.post("/v1/monitors", json=_definition("private")).status_code == 400  # no table ev there
    assert acme.delete("/v1/monitors/private").status_code == 204


def test_state_and_history_answer_in_json_csv_orarrow_stream(served, acme):
    assert acme.post("/v1/monitors", json=_definition("watched")).status_code == 201
    assert acme.get("/v1/monitors/watched/state").json()["row_count"] == 0  # not evaluated yet
    assert acme.get("/v1/monitors/watched/history").json()["row_count"] == 0
    db = served.server.service.session(served.server.service.authenticate(served.acme))
    spec = db.monitor("watched")
    log = ShardLog(db.store, ensure_table(db.catalog, db.namespace), 0)
    log.claim()
    slots = [BASE + 60 * k + spec.offset for k in range(1, 9)]
    log.apply({"watched": spec}, Evaluator(LocalQueries(db.store, db.namespace).sql).evaluate(
        [(spec, slot) for slot in slots]))
    state = acme.get("/v1/monitors/watched/state").json()
    names = [c["name"] for c in state["columns"]]
    assert {(row[names.index("group")], row[names.index("state")]) for row in state["rows"]} == {
        ('{"svc":"payments"}', OK), ('{"svc":"search"}', OK)}
    history = acme.get("/v1/monitors/watched/history", headers={"Accept": ARROW})
    assert history.headers["content-type"].startswith(ARROW)
    table = pa.ipc.open_stream(history.content).read_all()
    assert table.column("to_state").to_pylist() == [ALERT, OK] and table.column("seq").to_pylist() == [1, 2]
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'petrel_monitor_lateness_seconds_count{namespace="acme"} 1.0' in metrics  # the newest slot, once
    assert 'petrel_monitor_evaluation_age_seconds{namespace="acme"}' in metrics
    assert 'petrel_monitors{namespace="acme"} 1.0' in metrics
    assert 'petrel_query_footer_cache_hits_total{namespace="acme"}' in metrics
    scanned = re.search(r'petrel_query_segments_scanned_total\{namespace="acme"\} (\S+)', metrics)
    assert scanned and float(scanned.group(1)) >= 1  # the history query read a segment of transitions
    assert 'petrel_monitor_lateness_seconds_count{namespace="acme"} 1.0' in httpx.get(f"{served.url}/metrics").text
    csv = acme.get("/v1/monitors/watched/state", headers={"Accept": "text/csv"})
    assert pacsv.read_csv(io.BytesIO(csv.content)).num_rows == 2
    assert acme.delete("/v1/monitors/watched").status_code == 204
    kept = acme.post("/v1/sql", content="SELECT count(*) AS n FROM _monitor_transitions WHERE monitor = 'watched'")
    assert kept.json()["rows"] == [[2]]  # dropping a monitor keeps its transitions
