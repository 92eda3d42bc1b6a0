"""Fixtures of the monitor tests: a session over a warehouse with a small event table."""

from __future__ import annotations

import pytest

from tests.engine.ingest.ingest_fixtures import FAST
from tests.engine.monitors.monitor_fixtures import BASE, EVENTS_SCHEMA, Receiver, minute_of_events


@pytest.fixture(scope="module")
def db(ray_session, tmp_path_factory):
    """A session on a fresh warehouse with table ``ev``: 10 minutes of events from BASE, an incident in minutes 3-5."""
    import engine

    session = engine.connect(str(tmp_path_factory.mktemp("monitors") / "warehouse"), maintenance=False)
    session.ingestion.options = FAST  # tests ingest many small batches one by one: each commits within 50 ms
    session.create_table("ev", schema=EVENTS_SCHEMA, partitions=2)
    rows = []
    for minute in range(10):
        payments_errors = 30 if 3 <= minute <= 5 else 1
        rows += minute_of_events(BASE + minute * 60, {"payments": (100, payments_errors, 50.0),
                                                      "search": (50, 0, 20.0 + minute)})
    session.ingest("ev", rows)
    yield session
    session.close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()
