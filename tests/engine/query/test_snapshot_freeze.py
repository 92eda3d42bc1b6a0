"""Freezing long-lived objects out of the collector never keeps cyclic garbage for good."""

from __future__ import annotations

import gc
import time
import weakref

from engine import collector
from engine.collector import (
    DEFERRED_COLLECT_SECONDS, FULL_COLLECT_SECONDS, GcPauses, collect_if_owed, freeze_long_lived,
)


class Node:
    """An object that can point at itself, making a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def garbage_cycle() -> weakref.ref:
    node = Node()
    alive = weakref.ref(node)
    del node
    return alive


def test_cyclic_garbage_frozen_by_one_refresh_is_collected_by_a_later_one(monkeypatch):
    gc.disable()  # only the freezes decide when the cycle goes
    try:
        alive = garbage_cycle()
        monkeypatch.setattr(collector, "_last_full_collect", time.monotonic())
        freeze_long_lived()  # frozen: no full collection is due
        freeze_long_lived()
        assert alive() is not None
        monkeypatch.setattr(collector, "_last_full_collect", time.monotonic() - FULL_COLLECT_SECONDS)
        freeze_long_lived()  # one is due: the frozen cycle goes
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_process_deferring_full_collections_runs_them_when_idle_and_at_the_latest_when_long_overdue(monkeypatch):
    """A monitor scheduler runs the full collection when nothing is due; a freeze runs it only when long overdue."""
    monkeypatch.setattr(collector, "_deferred", False)
    collector.defer_full_collections()
    pauses = GcPauses()
    gc.disable()
    try:
        alive = garbage_cycle()
        monkeypatch.setattr(collector, "_last_full_collect", time.monotonic() - FULL_COLLECT_SECONDS)
        freeze_long_lived()  # owed, but deferred: the freeze leaves it
        assert alive() is not None and pauses.counts[2] == 0
        assert collect_if_owed()  # idle: it runs, and the frozen cycle goes
        assert alive() is None and pauses.counts[2] == 1 and pauses.longest[2] > 0
        assert not collect_if_owed()  # not owed again so soon
        alive = garbage_cycle()
        freeze_long_lived()
        monkeypatch.setattr(collector, "_last_full_collect", time.monotonic() - DEFERRED_COLLECT_SECONDS)
        freeze_long_lived()  # never idle for that long: the freeze runs it
        assert alive() is None and pauses.counts[2] == 2
    finally:
        gc.callbacks.remove(pauses._note)
        gc.unfreeze()
        gc.enable()
