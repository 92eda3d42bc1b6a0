"""The monitors part of ``petrel demo``: two monitors over the demo day, backtested."""

from __future__ import annotations

import time
from typing import Any, Callable

DEMO_MONITORS: tuple[dict[str, Any], ...] = (
    dict(name="payments-errors",
         query='SELECT service, count(*) FILTER (WHERE "http.status_code" >= 500) * 100.0 / count(*) AS error_pct '
               "FROM web_events GROUP BY service",
         window="5m", every="1m", delay="30s", critical=10.0, warning=4.0, critical_recovery=8.0,
         warning_recovery=3.0, pending="2m", notify=["file:petrel-demo-alerts.jsonl"]),
    dict(name="slow-endpoints",
         query="SELECT endpoint, approx_quantile(latency_ms, 0.99) AS p99_ms FROM web_events "
               "WHERE endpoint <> '/health' GROUP BY endpoint",
         window="10m", every="5m", delay="1m", critical=600.0, warning=450.0, critical_recovery=500.0,
         renotify="1h", notify=["file:petrel-demo-alerts.jsonl"]),
)
BACKTEST_RANGE = ("2026-11-02T13:30:00", "2026-11-02T15:30:00")


def run_monitor_demo(session: Any, out: Callable[[str], None], render: Callable[[Any], str]) -> None:
    """Create the demo monitors (once) and print the transitions each would have made around the incident."""
    existing = {spec.name for spec in session.monitors()}
    for definition in DEMO_MONITORS:
        arguments = dict(definition)
        name, query = arguments.pop("name"), arguments.pop("query")
        if name not in existing:
            session.create_monitor(name, query, **arguments)
        out(f"\n== Monitor {name}: backtest {BACKTEST_RANGE[0]} .. {BACKTEST_RANGE[1]} UTC")
        started = time.monotonic()
        result = session.backtest_monitor(name, *BACKTEST_RANGE)
        out(f"({result.num_rows} transitions in {time.monotonic() - started:.1f} s)")
        out(render(result.select(["group", "seq", "slot", "from_state", "to_state", "value"])))
    out("\nRun them live with: petrel monitors run   (history: SELECT * FROM _monitor_transitions)")
