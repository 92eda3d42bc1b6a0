"""/metrics scraped over real HTTP parses as Prometheus text and moves with ingest, rejections, queries and caches."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.engine.service.http_clients import tenant_client


def _scrape(served) -> dict[str, dict]:
    """Every family of one scrape: name -> {"type", "samples": {(sample name, labels): value}}."""
    reply = httpx.get(f"{served.url}/metrics", timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(reply.text):
        families[family.name] = {"type": family.type, "samples": {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}}
    return families


def _value(families: dict, family: str, sample: str, **labels: str) -> float:
    return families[family]["samples"].get((sample, tuple(sorted(labels.items()))), 0.0)


def _lines(first: int, count: int) -> bytes:
    return b"".join(json.dumps({"timestamp": f"2026-05-01T00:00:{i % 60:02d}Z", "host": f"h{i % 3}",
                                "ms": float(i)}).encode() + b"\n" for i in range(first, first + count))


def test_the_metrics_the_issue_names_are_scraped_and_count_what_happened(served):
    with tenant_client(served, served.globex) as globex:
        globex.post("/v1/tables", json={"name": "scraped", "partitions": 1, "exist_ok": True}).raise_for_status()
        before = _scrape(served)
        body = _lines(0, 40) + b'{"timestamp": "not a time", "host": "h9"}\n'
        reply = globex.post("/v1/tables/scraped/events", content=body, headers={"Idempotency-Key": "scrape-1"})
        assert reply.json()["accepted"] == 40 and reply.json()["rejected"] == 1
        query = "SELECT host, count(*) AS n, avg(ms) AS avg_ms FROM scraped GROUP BY host"
        for _ in range(3):  # the same dashboard query: planned once, its segment's footer read once
            assert globex.post("/v1/sql", content=query).status_code == 200
        after = _scrape(served)

    for name, kind in [("petrel_ingested_events", "counter"), ("petrel_ingest_body_bytes", "counter"),
                       ("petrel_rejected_rows", "counter"), ("petrel_commit_conflicts", "counter"),
                       ("petrel_query_seconds", "histogram"), ("petrel_ingest_seconds", "histogram"),
                       ("petrel_query_footer_cache_hits", "counter"), ("petrel_query_plan_cache_hits", "counter"),
                       ("petrel_monitor_lateness_seconds", "histogram"), ("petrel_refused", "counter"),
                       ("petrel_requests", "counter")]:
        assert after[name]["type"] == kind, name

    def grew(family: str, sample: str, **labels: str) -> float:
        return _value(after, family, sample, **labels) - _value(before, family, sample, **labels)

    assert grew("petrel_ingested_events", "petrel_ingested_events_total", namespace="globex", format="jsonl") == 40
    assert grew("petrel_ingest_body_bytes", "petrel_ingest_body_bytes_total", namespace="globex",
                format="jsonl") == len(body)
    assert grew("petrel_rejected_rows", "petrel_rejected_rows_total", namespace="globex") == 1
    assert grew("petrel_query_seconds", "petrel_query_seconds_count", namespace="globex", protocol="http") == 3
    assert grew("petrel_query_seconds", "petrel_query_seconds_bucket", namespace="globex", protocol="http",
                le="+Inf") == 3
    assert grew("petrel_query_footer_cache_hits", "petrel_query_footer_cache_hits_total", namespace="globex") >= 2
    assert grew("petrel_query_segments_scanned", "petrel_query_segments_scanned_total", namespace="globex") >= 3
    assert grew("petrel_query_plan_cache_hits", "petrel_query_plan_cache_hits_total", namespace="globex") == 2
    assert grew("petrel_query_plan_lookups", "petrel_query_plan_lookups_total", namespace="globex") == 3
    assert grew("petrel_requests", "petrel_requests_total", protocol="http", route="/v1/sql", status="200") == 3
