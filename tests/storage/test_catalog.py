"""The catalog: table names, create/list/describe/drop, versioned retention, durations."""

from __future__ import annotations

import pyarrow as pa
import pytest

from storage.catalog import Catalog, parse_duration, validate_name
from storage.errors import InvalidName, TableExists, TableNotFound


@pytest.mark.parametrize("bad", ["", "..", "../etc", "a/b", "a\\b", "has space", "x" * 200, ".hidden", None, 3, "a.b"])
def test_bad_names_are_refused(bad):
    with pytest.raises(InvalidName):
        validate_name(bad)


def test_path_traversal_never_touches_the_store(store):
    catalog = Catalog(store)
    for ns, name in [("..", "t"), ("default", "../../x"), ("default/../..", "t"), ("default", "/abs")]:
        with pytest.raises(InvalidName):
            catalog.create_table(ns, name)
    assert store.list("", recursive=True) == []


def test_create_list_describe_drop(store):
    catalog = Catalog(store)
    schema = pa.schema([("timestamp", pa.timestamp("us", tz="UTC")), ("msg", pa.string())])
    meta = catalog.create_table("acme", "logs", schema=schema, partitions=4, retention="30d",
                                sort_key=["msg"])
    assert meta.full_sort_key == ("msg", "timestamp")
    catalog.create_table("acme", "traces")
    catalog.create_table("other", "logs")
    assert catalog.tables("acme") == ["logs", "traces"]
    got = catalog.table("acme", "logs")
    assert got.partitions == 4 and got.retention == 30 * 86400 and got.schema.equals(schema)
    with pytest.raises(TableExists):
        catalog.create_table("acme", "logs")
    assert catalog.create_table("acme", "logs", exist_ok=True).partitions == 4
    catalog.drop_table("acme", "logs")
    assert catalog.tables("acme") == ["traces"]
    with pytest.raises(TableNotFound, match="dropped"):
        catalog.table("acme", "logs")
    assert catalog.tables("other") == ["logs"]


def test_not_found_suggests_close_names(store):
    catalog = Catalog(store)
    catalog.create_table("acme", "requests")
    with pytest.raises(TableNotFound, match="did you mean requests"):
        catalog.table("acme", "request")


def test_alter_retention_is_versioned(store):
    catalog = Catalog(store)
    catalog.create_table("acme", "logs")
    assert catalog.alter_table("acme", "logs", retention="12h").retention == 43200
    assert catalog.alter_table("acme", "logs", retention=None).retention is None
    assert catalog.table("acme", "logs").properties_version == 2


def test_time_column_must_be_in_a_declared_schema(store):
    with pytest.raises(ValueError, match="time column 'ts'"):
        Catalog(store).create_table("a", "t", schema=pa.schema([("x", pa.int64())]), time_column="ts")


@pytest.mark.parametrize("text,seconds", [("30d", 2592000), ("12h", 43200), ("90m", 5400), ("45s", 45), (10, 10)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_says_how_to_write_it():
    with pytest.raises(ValueError, match="'30d'"):
        parse_duration("a month")
