"""Petrel against DuckDB on joins, subqueries, set operations and window functions.

Events (segments over two partitions) plus dimension tables in the
warehouse and one registered pandas DataFrame.  The broadcast limit is set
low, so joins of events with events hash-shuffle both sides while joins
with the small dimensions broadcast them.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from tests.event_data import duckdb_over, load_events
from tests.sql.join_queries import QUERIES
from tests.result_compare import assert_same
from tests.tpch_tables import load_tables

SERVICES = pa.table({
    "service": ["api", "api", "web", "db", "auth", None, "billing"],
    "team": ["core", "edge", "edge", "data", "core", "ghost", None],
    "tier_rank": pa.array([1, 2, 1, 3, None, 2, 4], pa.int64()),
})
HOSTS = pa.table({
    "host": ["host-01", "host-02", "host-03", "host-04", "host-05", "host-06", "host-09", None],
    "region": ["eu-west", "eu-west", "us-east", "us-east", "ap-south", None, "eu-west", "us-east"],
    "cores": pa.array([4, 8, 8, 16, 4, None, 2, 12], pa.int32()),
})
TIERS = pd.DataFrame({"tier": ["free", "pro", "enterprise", "legacy"], "price": [0.0, 12.5, 99.0, 5.0]})


@pytest.fixture(scope="module")
def joined_db(ray_session, tmp_path_factory):
    import engine
    from storage.objectstore import ObjectStore

    root = str(tmp_path_factory.mktemp("joins") / "warehouse")
    store = ObjectStore(root)
    _, rows = load_events(store)
    load_tables(store, {"services": SERVICES, "hosts": HOSTS, "no_services": SERVICES.slice(0, 0)}, rows_per_segment=3)
    db = engine.connect(root)
    db.queries.broadcast_bytes = 30_000
    db.queries.local_bytes = 0  # joins are about broadcasts and shuffles between workers: never run a stage here
    db.register("tiers", TIERS)
    oracle = duckdb_over(events=rows, services=SERVICES, hosts=HOSTS, no_services=SERVICES.slice(0, 0),
                         tiers=pa.Table.from_pandas(TIERS))
    yield db, oracle
    db.close()
    oracle.close()


@pytest.mark.parametrize("query", QUERIES, ids=[f"j{i:03d}" for i in range(len(QUERIES))])
def test_same_result_as_duckdb(joined_db, query):
    db, oracle = joined_db
    got = db.sql(query)
    expected = oracle.sql(query).to_arrow_table()
    ordered = " ORDER BY " in query.upper().rsplit(")", 1)[-1]  # an ORDER BY of the whole query, not in OVER (...)
    assert_same(got, expected, ordered=ordered, query=query)


def test_join_of_two_large_sides_is_a_shuffle(joined_db):
    db, oracle = joined_db
    query = ("SELECT a.service, count(*) AS n FROM events a JOIN events b ON a.user_id = b.user_id "
             "AND a.url = b.url GROUP BY a.service")
    text = db.explain(query)
    assert "Join INNER" in text and "[shuffle: both sides exceed the broadcast limit" in text
    assert "hash shuffle" in text
    assert_same(db.sql(query), oracle.sql(query).to_arrow_table(), ordered=False, query=query)


def test_small_side_is_broadcast_once(joined_db):
    db, _ = joined_db
    text = db.explain("SELECT count(*) FROM events e JOIN hosts h ON e.host = h.host", analyze=True)
    assert "[broadcast: the right side is small enough" in text
    assert text.count("Exchange: broadcast") == 1


def test_list_payloads_survive_a_join(joined_db):
    db, oracle = joined_db
    db.register("tags", pa.table({"service": ["api", "db"], "labels": pa.array([["a", "b"], []], pa.list_(pa.string()))}))
    got = db.sql("SELECT e.service, t.labels, e.attrs FROM events e JOIN tags t ON e.service = t.service")
    assert {(r["service"], tuple(r["labels"])) for r in got.to_pylist()} == {("api", ("a", "b")), ("db", ())}
    expected = oracle.execute("SELECT count(*) FROM events WHERE service IN ('api', 'db')").fetchone()[0]
    assert got.num_rows == expected and got.column("attrs").type.num_fields == 2


def test_table_functions_read_files(joined_db, tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    db, _ = joined_db
    pq.write_table(HOSTS, tmp_path / "hosts.parquet")
    pacsv.write_csv(pa.Table.from_pandas(TIERS), tmp_path / "tiers.csv", pacsv.WriteOptions(delimiter="|"))
    (tmp_path / "names.json").write_text('{"name": "api", "rank": 1}\n{"name": "db", "rank": 2}\n')
    got = db.sql(f"SELECT h.region, count(*) AS n FROM events e JOIN read_parquet('{tmp_path}/hosts.parquet') h "
                 "ON e.host = h.host GROUP BY h.region")
    assert sum(got.column("n").to_pylist()) == db.sql(
        "SELECT count(*) AS n FROM events WHERE host IN ('host-01','host-02','host-03','host-04','host-05','host-06')"
    ).column("n")[0].as_py()
    tiers = db.sql(f"SELECT tier, price FROM read_csv('{tmp_path}/tiers.csv', delim='|', header=true) ORDER BY price")
    assert tiers.column("tier").to_pylist() == ["free", "legacy", "pro", "enterprise"]
    names = db.sql(f"SELECT n.name FROM read_json('{tmp_path}/names.json') n WHERE n.rank > 1")
    assert names.column("name").to_pylist() == ["db"]


@pytest.mark.s3
def test_read_parquet_from_s3_joins_a_warehouse_table(s3_options):
    import fsspec
    import pyarrow.parquet as pq

    from engine.query.executor import run_locally
    from engine.query.execution.scan import SegmentReader
    from engine.external import read_file
    from planner.context import PlanContext
    from planner.logical import TableSource
    from planner.planning import plan_query
    from storage.catalog import Catalog
    from storage.objectstore import ObjectStore
    from storage.snapshot import load_snapshot

    fs = fsspec.filesystem("s3", **s3_options)
    with fs.open("petrel-test/dims/hosts.parquet", "wb") as handle:
        pq.write_table(HOSTS, handle)
    store = ObjectStore("memory://s3-table-function")
    load_tables(store, {"services": SERVICES}, rows_per_segment=3)
    catalog = Catalog(store)

    def resolve(name):
        meta = catalog.table("default", name)
        snapshot = load_snapshot(store, meta)
        return TableSource(meta, snapshot.schema, snapshot.segments, dict(snapshot.versions))

    query = ("SELECT s.service, h.host FROM services s JOIN read_parquet('s3://petrel-test/dims/hosts.parquet') h "
             "ON s.tier_rank * 4 = h.cores")
    planned = plan_query(query, resolve, context=PlanContext(buckets=2),
                         table_function=lambda function, path, options: read_file(function, path, options, s3_options))
    got = run_locally(planned.optimized, SegmentReader(store), fragments=2)
    oracle = duckdb.connect()
    oracle.register("services", SERVICES)
    oracle.register("hosts", HOSTS)
    expected = oracle.sql(query.replace("read_parquet('s3://petrel-test/dims/hosts.parquet')", "hosts")).to_arrow_table()
    assert expected.num_rows and got.num_rows == expected.num_rows
    assert_same(got, expected, ordered=False, query=query)
