"""Freezing snapshot objects out of the collector never keeps cyclic garbage for good."""

from __future__ import annotations

import gc
import weakref

from engine.query.api import FULL_COLLECT_EVERY, freeze_snapshot_objects


class Node:
    """An object that can point at itself, making a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_frozen_by_one_refresh_is_collected_by_a_later_one():
    gc.disable()  # only the freezes decide when the cycle goes
    try:
        node = Node()
        alive = weakref.ref(node)
        del node
        for _ in range(FULL_COLLECT_EVERY):  # the first freezes it (unless it is a full collection's turn)
            freeze_snapshot_objects()
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.enable()
