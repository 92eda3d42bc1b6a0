"""A query over S3 that fails transiently (500s on its reads) answers, on the workers and in the driver alike."""

from __future__ import annotations

import pytest

from benchmarks.chaos_faults import ChaosStore, plan_of
from engine.query import QueryEngine
from storage.catalog import Catalog
from tests.storage_fixtures import append, events

pytestmark = [pytest.mark.s3, pytest.mark.usefixtures("ray_session")]


@pytest.mark.parametrize("where", ["workers", "driver"])
def test_a_query_reads_every_segment_through_transient_s3_failures(s3_options, tmp_path, where):
    folder = str(tmp_path / "faults")
    plan = plan_of(folder)
    plan.set(0.0)
    store = ChaosStore("s3://petrel-test/wh", s3_options, folder)
    meta = Catalog(store).create_table("acme", "logs")
    for start in (0, 10, 20):
        append(store, meta, events(10, start=start))
    queries = QueryEngine(store, Catalog(store), "acme", timeout=60.0, workers=1)
    queries.local_bytes = 0 if where == "workers" else queries.local_bytes
    try:
        # every HEAD and GET (footers, ranged reads, commits) fails once with a 500 before it goes through;
        # before, the first one failed the query, or was reported as a missing segment
        plan.set(1.0, {"internal_500": 1.0}, methods=("head_object", "get_object"), first_attempts=1)
        answer = queries.sql("SELECT sum(id) AS s, count(DISTINCT service) AS d, max(timestamp) AS t FROM logs")
        assert answer.column("s").to_pylist() == [sum(range(30))] and answer.column("d").to_pylist() == [3]
    finally:
        plan.set(0.0)
        queries.close()
