"""The public error surface: every error a PetrelError importable from engine, connect() fully typed."""

from __future__ import annotations

import inspect

import pytest

import engine
from storage import errors
from storage.catalog import Catalog, parse_duration
from storage.objectstore import ObjectStore


def _error_classes() -> list[type]:
    return [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)
            and v.__module__ == errors.__name__]


def test_every_error_is_a_petrel_error_importable_from_engine():
    for error in _error_classes():
        assert issubclass(error, errors.PetrelError), error
        assert getattr(engine, error.__name__) is error, f"engine.{error.__name__} is missing"
        assert error.__name__ in engine.__all__
        assert error.__doc__, f"{error.__name__} needs a one-line docstring"


def test_connect_names_every_option():
    parameters = inspect.signature(engine.connect).parameters.values()
    assert not [p for p in parameters if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert {"root", "namespace", "ray_address", "num_cpus", "timeout", "maintenance"} <= {p.name for p in parameters}
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters)


@pytest.mark.parametrize("value", [-5, "thirty days"])
def test_a_bad_duration_is_a_petrel_error(value):
    with pytest.raises(engine.InvalidArgument, match="duration"):
        parse_duration(value)


def test_a_bad_partition_count_is_a_petrel_error():
    catalog = Catalog(ObjectStore("memory://public-errors"))
    with pytest.raises(engine.PetrelError, match="partitions=0"):
        catalog.create_table("default", "events", partitions=0)
