"""TPC-H: all 22 queries give DuckDB's results over the same data in Petrel tables.

Two data sets: the project's own generator at scale 0.01, and the official
tiny dbgen output.  Both are loaded through ``Session.ingest`` (one batch per table, routed
over two partitions, so every table has a segment per partition)
and queried by a two-worker pool; for the generated data the broadcast limit is set
low, so the large joins hash-shuffle both sides and the small ones are
broadcast.  Each data set is loaded once and shared by its 22 queries.
"""

from __future__ import annotations

import duckdb
import pytest

from benchmarks.tpch.datagen import generate
from result_compare import assert_same
from tpch_tables import SHARED, ingest_tables, queries, read_dbgen

QUERIES = queries()
DATASETS = {
    "datagen": (lambda: generate(scale=0.01), 100_000),
    "dbgen": (read_dbgen, 64 * 1024 * 1024),
}


@pytest.fixture(scope="module", params=sorted(DATASETS))
def tpch(request, ray_session, tmp_path_factory):
    import engine

    if request.param == "dbgen" and not (SHARED / "lineitem.csv.gz").exists():
        pytest.fail(f"the official TPC-H files are missing from {SHARED}")
    make, broadcast_bytes = DATASETS[request.param]
    tables = make()
    root = str(tmp_path_factory.mktemp(f"tpch-{request.param}") / "warehouse")
    db = engine.connect(root)
    ingest_tables(db, tables)
    db.queries.workers = 2
    db.queries.broadcast_bytes = broadcast_bytes
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
    if dataset != "datagen":
        return
    text = db.explain(QUERIES[3], analyze=True)
    assert "[shuffle:" in text and "hash shuffle" in text
    workers = {line.split("worker ")[1].split(":")[0] for line in text.splitlines() if "worker worker-" in line}
    assert len(workers) >= 2
