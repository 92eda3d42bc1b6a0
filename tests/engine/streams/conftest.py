"""Fixtures of the streaming tests: a real nats-server with JetStream on loopback."""

from __future__ import annotations

import pytest

from engine.streams.local_broker import LocalNats


@pytest.fixture
def nats_server(tmp_path):
    """A nats-server -js child process on a free loopback port, with its own store folder."""
    server = LocalNats(str(tmp_path / "jetstream")).start()
    yield server
    server.stop()
