"""`import petrel`: connect, the errors and the version, under a distribution name of Petrel's own."""

from __future__ import annotations

import pathlib
import tomllib

import pyarrow as pa

import petrel
import storage.errors

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_the_facade_connects_and_queries(ray_session, tmp_path):
    with petrel.connect(str(tmp_path / "wh"), maintenance=False, table_functions="off") as db:
        assert isinstance(db, petrel.Session)
        db.create_table("events")
        db.ingest("events", pa.table({"timestamp": pa.array([1, 2], pa.timestamp("us")), "x": [1, 2]}))
        assert db.sql("SELECT sum(x) AS s FROM events").column("s").to_pylist() == [3]


def test_every_error_is_reachable_from_petrel():
    public = {name for name, value in vars(storage.errors).items()
              if isinstance(value, type) and issubclass(value, storage.errors.PetrelError)}
    assert public <= set(petrel.__all__)
    assert all(getattr(petrel, name) is getattr(storage.errors, name) for name in public)


def test_the_distribution_is_not_the_unrelated_petrel_and_ships_the_facade():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == petrel.DISTRIBUTION != "petrel"
    assert petrel.__version__ == project["project"]["version"]
    assert "petrel*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert project["project"]["scripts"]["petrel"] == "engine.cli:main"
