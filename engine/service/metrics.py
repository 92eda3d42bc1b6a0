"""What the service counts, in Prometheus form (served at ``/metrics``).

Each :class:`ServiceMetrics` has its own registry, so two services in one
process (tests) do not share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """Ingest rates, rejected rows, commit conflicts, query latency and refusals by limit."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("petrel_requests", "HTTP and Flight requests by route and status",
                                ["protocol", "route", "status"], registry=r)
        self.ingested = Counter("petrel_ingested_events", "Events accepted and committed",
                                ["namespace", "format"], registry=r)
        self.ingest_bytes = Counter("petrel_ingest_body_bytes", "Bytes of ingest request bodies",
                                    ["namespace", "format"], registry=r)
        self.rejected = Counter("petrel_rejected_rows", "Rows refused with a reason (kept in the rejected table)",
                                ["namespace"], registry=r)
        self.commit_conflicts = Counter("petrel_commit_conflicts", "Requests that ended on a commit conflict",
                                        ["namespace"], registry=r)
        self.query_seconds = Histogram("petrel_query_seconds", "Query latency, planning to last row",
                                       ["namespace", "protocol"], buckets=LATENCY_BUCKETS, registry=r)
        self.ingest_seconds = Histogram("petrel_ingest_seconds", "Ingest request latency, body to commit",
                                        ["namespace", "format"], buckets=LATENCY_BUCKETS, registry=r)
        self.queries_running = Gauge("petrel_queries_running", "Queries running now", ["namespace"], registry=r)
        self.refused = Counter("petrel_refused", "Requests refused by a tenant limit", ["namespace", "limit"],
                               registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
