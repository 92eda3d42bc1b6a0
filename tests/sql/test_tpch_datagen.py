"""The project's own TPC-H generator produces data every query selects from (checked with DuckDB, no Ray)."""

from __future__ import annotations

import duckdb
import pytest

from benchmarks.tpch.datagen import generate
from benchmarks.tpch.queries import queries


@pytest.fixture(scope="module")
def tpch():
    con = duckdb.connect()
    for name, table in generate(scale=0.01).items():
        con.register(name, table)
    return con


def test_the_repository_holds_all_22_queries():
    assert sorted(queries()) == list(range(1, 23))


def test_sizes_follow_the_scale():
    tables = generate(scale=0.002)
    assert tables["orders"].num_rows == 3000 and tables["customer"].num_rows == 300
    assert 4 * 3000 <= tables["lineitem"].num_rows <= 7 * 3000
    assert len(set(tables["orders"].column("o_orderkey").to_pylist())) == 3000


@pytest.mark.parametrize("number", range(1, 23))
def test_every_query_selects_rows(tpch, number):
    rows = tpch.execute(queries()[number]).fetchall()
    assert rows and any(v is not None for v in rows[0])
