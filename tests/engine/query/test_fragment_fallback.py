"""A fragment whose workers keep dying (killed faster than they restart) runs in the driver instead of failing."""

from __future__ import annotations

import os

import pytest
import ray

from engine.query import QueryEngine
from engine.query.workers import WorkerPool
from storage.catalog import Catalog
from storage.objectstore import ObjectStore
from tests.storage_fixtures import append, events

pytestmark = pytest.mark.usefixtures("ray_session")


@ray.remote(num_cpus=0, max_restarts=0)
class DyingWorker:
    """A query worker that dies on every fragment it is sent, as one SIGKILLed mid-query does."""

    def ping(self) -> dict:
        return {"pid": os.getpid()}

    def cancel(self, query_id: str) -> None:
        pass

    def run(self, task: object) -> None:
        os._exit(1)


class DyingPool(WorkerPool):
    """A pool whose every worker, replacements included, dies running a fragment."""

    def _start(self, name: str):
        return DyingWorker.remote()


def test_a_fragment_whose_workers_keep_dying_is_run_in_the_driver(tmp_path):
    store = ObjectStore(str(tmp_path / "warehouse"))
    meta = Catalog(store).create_table("acme", "logs", partitions=2)
    for partition in (0, 1):
        append(store, meta, events(10, start=10 * partition), partition=partition)
    queries = QueryEngine(store, Catalog(store), "acme", timeout=60.0, workers=1)
    queries.local_bytes = 0  # every stage goes to the workers
    queries._pool = DyingPool(store, 1)
    try:
        grouped = queries.sql("SELECT service, sum(id) AS s FROM logs GROUP BY service ORDER BY service")
        expected = [sum(10 * p + i for p in (0, 1) for i in range(10) if i % 3 == k) for k in range(3)]
        assert grouped.column("s").to_pylist() == expected
    finally:
        queries.close()
