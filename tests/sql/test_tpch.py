"""TPC-H: all 22 queries give DuckDB's results over the same data in Petrel tables.

Two data sets: the project's own generator at scale 0.01, and the official
tiny dbgen output from the shared folder beside the checkout (read only
inside its fixture; CI always has it, elsewhere its half is skipped with
the reason).  Both are loaded through ``Session.ingest`` in several
batches routed over two partitions, so every table has several small
segments, and queried by a two-worker pool with a broadcast limit low
enough that the large joins hash-shuffle both sides while the small ones
are broadcast.  Each data set is loaded once and shared by its 22 queries.
"""

from __future__ import annotations

import os

import duckdb
import pytest

from benchmarks.tpch.datagen import generate
from tests.result_compare import assert_same
from tests.tpch_tables import dbgen_missing, ingest_tables, queries, read_dbgen

pytestmark = pytest.mark.slow  # 44 queries over two data sets loaded through Ray ingest

QUERIES = queries()
DATASETS = {  # how to make the tables, and the broadcast limit in bytes
    "datagen": (lambda: generate(scale=0.01), 100_000),
    "dbgen": (read_dbgen, 20_000),
}
BATCHES = 4


@pytest.fixture(scope="module", params=sorted(DATASETS))
def tpch(request, ray_session, tmp_path_factory):
    import engine

    if request.param == "dbgen" and (reason := dbgen_missing()) is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    make, broadcast_bytes = DATASETS[request.param]
    tables = make()
    root = str(tmp_path_factory.mktemp(f"tpch-{request.param}") / "warehouse")
    db = engine.connect(root, maintenance=False)  # the tables keep the segments they were ingested as
    ingest_tables(db, tables, batches=BATCHES)
    db.queries.workers = 2
    db.queries.broadcast_bytes = broadcast_bytes
    db.queries.local_bytes = 0  # exercise the workers (shuffles, broadcasts), not the driver's fast path
    oracle = duckdb.connect()
    for name, table in tables.items():
        oracle.register(name, table)
    yield request.param, db, oracle
    db.close()
    oracle.close()


@pytest.mark.parametrize("number", range(1, 23), ids=[f"q{n:02d}" for n in range(1, 23)])
def test_tpch_query_matches_duckdb(tpch, number):
    dataset, db, oracle = tpch
    query = QUERIES[number]
    got = db.sql(query)
    expected = oracle.sql(query).to_arrow_table()
    assert_same(got, expected, ordered="order by" in query.lower(), query=f"TPC-H Q{number} ({dataset})")


def test_tpch_runs_on_several_workers_with_shuffles(tpch):
    dataset, db, _ = tpch
    assert db.tables() and all(len(db.queries.resolve(name).segments) >= 2 for name in ("lineitem", "orders"))
    text = db.explain(QUERIES[3], analyze=True)
    assert "[shuffle:" in text and "hash shuffle" in text, f"no shuffle in Q3 on {dataset}"
    workers = {line.split("worker ")[1].split(":")[0] for line in text.splitlines() if "worker worker-" in line}
    assert len(workers) >= 2
