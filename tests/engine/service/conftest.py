"""A real Petrel service on loopback (uvicorn, and Flight SQL) over a fresh warehouse, with tenant tokens."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.service.core import ServiceConfig
from engine.service.server import RunningServer, start
from engine.service.tenants import Limits


@dataclass
class Served:
    """A running server and the tokens of its tenants."""

    server: RunningServer
    acme: str
    globex: str
    tight: str  # namespace 'tight': small body, one query at a time, few result rows, a tiny timeout
    root: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("service") / "warehouse")
    server = start(ServiceConfig(warehouse=root, maintenance=False), flight_port=0)
    tokens = server.service.tokens
    acme, _ = tokens.create("acme")
    globex, _ = tokens.create("globex")
    tight, _ = tokens.create("tight", Limits(max_body_bytes=2048, max_concurrent_queries=1, max_result_rows=3,
                                             query_timeout=30.0))
    yield Served(server, acme, globex, tight, root)
    server.stop()
