"""A state processor's batched commits, driven in a child process that the test SIGKILLs mid-commit."""

from __future__ import annotations

from typing import Any

from engine.monitors.definition import MonitorSpec, build_spec
from engine.monitors.history import ShardLog, ensure_table
from engine.monitors.state import SlotOutcome
from storage.catalog import Catalog
from storage.objectstore import ObjectStore

MONITORS = 40
GROUPS = "abc"


def batch_specs() -> dict[str, MonitorSpec]:
    """``MONITORS`` monitors of one shape, each with a webhook target (its outbox entries name it)."""
    specs = {}
    for index in range(MONITORS):
        built = build_spec(f"b{index}", "SELECT svc, avg(v) AS v FROM ev GROUP BY svc", window="1m", every="1m",
                           critical=10.0, notify=["webhook:http://127.0.0.1:9/hook"])
        specs[built.name] = MonitorSpec.from_record({**built.to_record(), "group_columns": ["svc"], "version": 1})
    return specs


def batch_of(slot_index: int) -> list[SlotOutcome]:
    """Every monitor's outcome at slot ``slot_index``: each group flips between ALERT and OK from slot to slot."""
    value = 20.0 if slot_index % 2 else 1.0
    values = {f'{{"svc":"{g}"}}': value for g in GROUPS}
    return [SlotOutcome(name, 60.0 * (slot_index + 1), values, None, 0.0) for name in batch_specs()]


def open_shard(root: str) -> tuple[ObjectStore, Any, ShardLog]:
    store = ObjectStore(root)
    meta = ensure_table(Catalog(store), "ns")
    return store, meta, ShardLog(store, meta, 0)


def apply_batches(root: str, slots: int, ready: Any) -> None:
    """A processor's life: claim the shard, then commit one batch (every monitor) per slot, from the first unapplied."""
    _, _, log = open_shard(root)
    log.claim()
    specs = batch_specs()
    ready.set()
    for slot_index in range(slots):
        log.apply(specs, batch_of(slot_index))
