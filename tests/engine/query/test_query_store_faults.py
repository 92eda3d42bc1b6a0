"""A query answers through transient S3 failures, and through a segment vacuumed after its cached snapshot was read."""

from __future__ import annotations

import pytest

from benchmarks.chaos_faults import ChaosStore, plan_of
from engine.query import QueryEngine
from storage.catalog import Catalog
from storage.errors import SegmentMissing
from storage.log import PartitionLog
from storage.segment import write_segment
from storage.vacuum import vacuum
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


def test_a_segment_vacuumed_under_a_stale_cached_snapshot_is_read_again_from_the_latest(tmp_path):
    store = ChaosStore(str(tmp_path / "warehouse"), {}, str(tmp_path / "faults"))
    meta = Catalog(store).create_table("acme", "logs")
    state = append(store, meta, events(10))
    queries = QueryEngine(store, Catalog(store), "acme", timeout=60.0, workers=1)
    query = "SELECT sum(id) AS s FROM logs"
    try:
        assert queries.sql(query).column("s").to_pylist() == [45]  # the engine keeps this snapshot
        log = PartitionLog(store, meta.path, 0)
        old = next(iter(state.segments))
        rewritten = write_segment(store, meta.path, events(10), partition=0, time_column=meta.time_column,
                                  sort_key=meta.full_sort_key)
        log.commit(state, epoch=None, added=[rewritten], removed=[old])  # what compaction commits
        # the commit is folded into a checkpoint and deleted, with the old segment: the engine's
        # snapshot, refreshed by reading the commits after it, does not see that it moved
        vacuum(store, "acme", "logs", older_than=0, orphans_older_than=0)
        assert queries.sql(query).column("s").to_pylist() == [45]
        # a segment the latest snapshot still lists but that is gone is lost: that is an error
        store.delete(f"{meta.path}/{rewritten.path}")
        queries.forget()
        with pytest.raises(SegmentMissing, match="not in the object store"):
            queries.sql(query)
    finally:
        queries.close()
