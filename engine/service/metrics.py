"""What the service counts, in Prometheus form (served at ``/metrics``).

Each :class:`ServiceMetrics` has its own registry, so two services in one
process (tests) do not share counters.

Monitors are evaluated by the monitor service (``petrel monitors run``), in
other processes; what this server knows of them is what they committed.  At
each scrape it reads the committed state of the monitors of the namespaces
it serves: the lateness of every slot applied since the last scrape (its
evaluation time minus the slot's time; only a monitor's newest slot is seen,
so a scrape interval longer than ``every`` samples) and how long ago the
monitor furthest behind was last evaluated (a stopped monitor service shows
as a growing age).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0)


class ServiceMetrics:
    """Ingest rates, rejected rows, commit conflicts, query latency, cache hits, monitor lateness, refusals by limit."""

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

        self.monitor_lateness = Histogram(
            "petrel_monitor_lateness_seconds", "Evaluation time minus slot time of monitor slots committed "
            "(each monitor's newest slot at each scrape)", ["namespace"], buckets=LATENESS_BUCKETS, registry=r)
        self.monitor_age = Gauge("petrel_monitor_evaluation_age_seconds",
                                 "Seconds since the least recently evaluated monitor of the namespace was evaluated",
                                 ["namespace"], registry=r)
        self.monitors = Gauge("petrel_monitors", "Monitors defined in the namespace", ["namespace"], registry=r)

    def watch_sessions(self, sessions: Callable[[], list[Any]]) -> None:
        """Report the query caches of the sessions ``sessions()`` returns at each scrape."""
        self.registry.register(QueryCacheCollector(sessions))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class QueryCacheCollector(Collector):
    """The query caches (workers' footer cache, the plan cache), summed per namespace over the sessions held."""

    def __init__(self, sessions: Callable[[], list[Any]]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[CounterMetricFamily]:
        scanned = CounterMetricFamily("petrel_query_segments_scanned", "Segments the namespace's queries read "
                                      "(each needs its Parquet footer)", labels=["namespace"])
        hits = CounterMetricFamily("petrel_query_footer_cache_hits", "Segment footers the query workers' cache "
                                   "already held", labels=["namespace"])
        planned = CounterMetricFamily("petrel_query_plan_lookups", "Queries that looked for a kept plan "
                                      "(those reading the clock or a table function never do)", labels=["namespace"])
        plan_hits = CounterMetricFamily("petrel_query_plan_cache_hits", "Queries that reused a kept plan "
                                        "(same SQL, tables unchanged since)", labels=["namespace"])
        totals: dict[str, list[int]] = {}
        for session in self.sessions():
            engine = session.queries
            entry = totals.setdefault(session.namespace, [0, 0, 0, 0])
            entry[0] += engine.footer_lookups
            entry[1] += engine.footer_hits
            entry[2] += engine.plans.hits + engine.plans.misses
            entry[3] += engine.plans.hits
        for namespace, (lookups, footer_hits, plan_lookups, plan_cache_hits) in sorted(totals.items()):
            scanned.add_metric([namespace], lookups)
            hits.add_metric([namespace], footer_hits)
            planned.add_metric([namespace], plan_lookups)
            plan_hits.add_metric([namespace], plan_cache_hits)
        yield scanned
        yield hits
        yield planned
        yield plan_hits
