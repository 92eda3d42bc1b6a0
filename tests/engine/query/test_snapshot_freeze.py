"""Freezing snapshot objects out of the collector never keeps cyclic garbage for good."""

from __future__ import annotations

import gc
import time
import weakref

from engine.query import api
from engine.query.api import FULL_COLLECT_SECONDS, freeze_snapshot_objects


class Node:
    """An object that can point at itself, making a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_frozen_by_one_refresh_is_collected_by_a_later_one(monkeypatch):
    gc.disable()  # only the freezes decide when the cycle goes
    try:
        node = Node()
        alive = weakref.ref(node)
        del node
        monkeypatch.setattr(api, "_last_full_collect", time.monotonic())
        freeze_snapshot_objects()  # frozen: no full collection is due
        freeze_snapshot_objects()
        assert alive() is not None
        monkeypatch.setattr(api, "_last_full_collect", time.monotonic() - FULL_COLLECT_SECONDS)
        freeze_snapshot_objects()  # one is due: the frozen cycle goes
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.enable()
