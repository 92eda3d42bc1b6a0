"""Group-bys over dictionary-encoded string columns read them as Arrow dictionaries; same answers as DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from engine.query.execution.dictionary_keys import dictionary_read
from engine.query.execution.scan import SegmentReader
from planner.logical import Aggregate, TableSource
from planner.planning import plan_query
from storage.catalog import Catalog
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.schema import conform, unify
from storage.segment import write_segment
from storage.snapshot import load_snapshot
from tests.engine.query.local_runs import assert_runs_like

BASE = 1_793_491_200_000_000
AGENTS = ["Mozilla/5.0 (Windows NT 10.0)", "Mozilla/5.0 (X11; Linux)", "curl/8.0", "", None]


def _rows(rng: np.random.Generator, count: int, offset: int, country: bool) -> pa.Table:
    columns = {
        "ts": pa.array(BASE + offset + np.arange(count) * 1_000, pa.timestamp("us", "UTC")),
        "agent": pa.array(rng.choice(np.array(AGENTS, dtype=object), count).tolist(), pa.string()),
        "phrase": pa.array([f"phrase {i}" for i in rng.integers(0, 40, count)]),
        "user": pa.array(rng.integers(0, 30, count)),
    }
    if country:  # a column added later: the first segment lacks it
        columns["country"] = pa.array(rng.choice(np.array(["de", "fr", "", None], dtype=object), count).tolist(),
                                      pa.string())
    return pa.table(columns)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    store = ObjectStore(str(tmp_path_factory.mktemp("dictionary-keys") / "wh"))
    meta = Catalog(store).create_table("default", "hits", time_column="ts", partitions=2)
    rng = np.random.default_rng(11)
    tables = []
    for index, (partition, count, country) in enumerate([(0, 900, False), (0, 700, True), (1, 800, True)]):
        table = _rows(rng, count, index * 10_000_000, country)
        log = PartitionLog(store, meta.path, partition)
        log.commit(log.load(), epoch=None, added=[write_segment(
            store, meta.path, table, partition=partition, time_column="ts", sort_key=meta.full_sort_key,
            row_group_size=300)])
        tables.append(table)
    snapshot = load_snapshot(store, meta)
    rows = pa.concat_tables([conform(t, unify(t.schema for t in tables)) for t in tables])
    oracle = duckdb.connect()
    oracle.register("hits", rows)
    return store, TableSource(meta, snapshot.schema, snapshot.segments), oracle


@pytest.mark.parametrize("query", [
    "SELECT agent, count(*) AS c FROM hits GROUP BY agent ORDER BY c DESC, agent NULLS FIRST",
    "SELECT agent, count(*) AS c, count(DISTINCT user) AS u FROM hits WHERE agent <> '' GROUP BY agent ORDER BY agent",
    "SELECT phrase, agent, sum(user) AS s FROM hits WHERE phrase = 'phrase 3' OR user > 20 GROUP BY phrase, agent "
    "ORDER BY s DESC, phrase, agent NULLS LAST LIMIT 7",
    "SELECT country, count(*) FROM hits GROUP BY country ORDER BY country NULLS LAST",
    "SELECT agent, min(agent) AS m, count(*) FROM hits GROUP BY agent ORDER BY agent NULLS LAST",
    "SELECT upper(agent) AS a, count(*) FROM hits WHERE agent LIKE '%Mozilla%' GROUP BY a ORDER BY a",
    "SELECT count(DISTINCT phrase) FROM hits",
    "SELECT count(*), count(DISTINCT user) FROM hits WHERE agent LIKE '%Mozilla%' AND phrase NOT LIKE '%1%'",
    "SELECT phrase, min(agent) AS m, count(*) AS c FROM hits WHERE agent LIKE '%X11%' AND phrase <> '' "
    "GROUP BY phrase ORDER BY c DESC, phrase LIMIT 5",
    "SELECT agent, count(*) FROM hits WHERE agent ILIKE '%CURL%' OR agent IS NULL GROUP BY agent ORDER BY agent",
    "SELECT count(*) FROM hits WHERE agent LIKE '%Mozilla%' AND user > 3 AND phrase IN ('phrase 1', 'phrase 2')",
    "SELECT count(*) FROM hits WHERE agent LIKE '%Moz%' OR user > 20",
    "SELECT count(*) FROM hits WHERE NOT (agent LIKE '%Linux%') AND country <> 'de'",
    "SELECT count(DISTINCT agent), count(*) FROM hits WHERE agent <> ''",
    "SELECT count(DISTINCT country), count(DISTINCT phrase) FROM hits",
    "SELECT min(DISTINCT agent) AS m, count(DISTINCT agent) FROM hits WHERE phrase LIKE '%1%'",
    "SELECT count(DISTINCT agent) FROM hits WHERE agent LIKE '%Mozilla%' AND user > 3",
    "SELECT count(DISTINCT phrase) FROM hits WHERE user > 100",
])
def test_string_group_bys_match_duckdb(loaded, query):
    store, source, oracle = loaded
    assert_runs_like(query, store, source, oracle.sql(query).to_arrow_table(), fragments=(1, 3), threads=(1, 2))


def test_only_strings_used_bare_and_filtered_alone_are_read_as_dictionaries(loaded):
    _, source, _ = loaded

    def chosen(query: str):
        plan = plan_query(query, lambda name: source).optimized
        read = next((dictionary_read(node) for node in plan.walk() if isinstance(node, Aggregate)
                     and node.mode != "final"), None)
        return None if read is None else (read.columns, tuple(read.late))

    assert chosen("SELECT agent, count(*) FROM hits WHERE agent <> '' GROUP BY agent") == (("agent",), ("agent",))
    assert chosen("SELECT agent, phrase, count(*) FROM hits GROUP BY agent, phrase") == (("agent", "phrase"), ())
    assert chosen("SELECT count(*) FROM hits WHERE agent LIKE 'M%' AND user > 2") == (("agent",), ("agent",))
    assert chosen("SELECT count(*) FROM hits WHERE agent LIKE 'M%' OR user > 2") is None
    assert chosen("SELECT agent, max(agent) FROM hits GROUP BY agent") is None
    assert chosen("SELECT lower(agent), count(*) FROM hits GROUP BY 1") is None
    assert chosen("SELECT count(*) FROM hits WHERE agent LIKE 'M%' AND ts < now()") is None
    assert chosen("SELECT count(DISTINCT phrase) FROM hits") == (("phrase",), ())  # distinct values by index
    assert chosen("SELECT count(DISTINCT phrase), max(phrase) FROM hits") is None
    assert chosen("SELECT agent, count(DISTINCT phrase) FROM hits GROUP BY agent") == (("agent",), ())


def test_the_reader_returns_dictionaries_only_where_every_segment_stores_one(loaded):
    store, source, _ = loaded
    reader = SegmentReader(store)
    table = reader.read("default/hits", source.schema, source.segments, ["agent", "country", "user"],
                        dictionary=("agent", "country"))
    assert pa.types.is_dictionary(table.schema.field("agent").type)
    assert table.schema.field("country").type == pa.string()  # the oldest segment lacks the column
    plain = reader.read("default/hits", source.schema, source.segments, ["agent"])
    assert table.column("agent").cast(pa.string()).equals(plain.column("agent"))
