"""What a chaos run is asked to do and what it found, and how the rows it left are read back.

See :mod:`benchmarks.chaos_run` for the run itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from storage.objectstore import ObjectStore
from storage.schema import conform
from storage.segment import read_segment
from storage.snapshot import load_snapshot

KILL_WEIGHTS = {"owner": 0.6, "query_worker": 0.15, "compactor": 0.15, "writer": 0.1}


@dataclass
class ChaosConfig:
    """How long, how hard: see the module docstring."""

    workdir: str
    endpoint: str  # the loopback S3 endpoint
    bucket: str
    seconds: float = 60.0
    kills: int = 40
    writers: int = 3  # the last one writes to the table on the small local disk
    partitions: int = 2
    rows: int = 20
    pause: float = 0.05  # seconds a writer waits between batches
    max_age: float = 0.2  # the owners' flush age
    s3_fault_rate: float = 0.03
    phase_seconds: float = 10.0
    disk_mb: int = 64
    disk_full_every: float = 30.0
    disk_full_for: float = 5.0
    query_every: float = 1.0
    maintain_every: float = 5.0
    vacuum_grace: float = 120.0  # longer than a query may take (60 s), so no query loses a file
    kill_weights: dict[str, float] = field(default_factory=lambda: dict(KILL_WEIGHTS))
    seed: int = 20261206


@dataclass
class ChaosResult:
    """What a run did and what it found; ``ok`` when nothing acknowledged was lost or doubled."""

    seconds: float = 0.0
    kills: dict[str, int] = field(default_factory=dict)
    kill_skips: dict[str, int] = field(default_factory=dict)  # victims chosen that were not up (none killed)
    faults: dict[str, int] = field(default_factory=dict)
    disk_full_periods: int = 0
    disk: str = ""
    acked_batches: int = 0
    acked_rows: int = 0
    stored_rows: int = 0
    distinct_rows: int = 0
    sql_count: int = 0
    sql_distinct: int = 0
    lost: int = 0
    doubled: int = 0
    partial_batches: int = 0
    unacked_stored: int = 0
    queries: dict[str, int] = field(default_factory=dict)
    query_errors: dict[str, int] = field(default_factory=dict)  # failed queries by cause (see error_category)
    query_seconds: dict[str, float] = field(default_factory=dict)  # n, median_s, max_s of the queries' times
    maintenance: dict[str, int] = field(default_factory=dict)
    maintenance_errors: dict[str, int] = field(default_factory=dict)  # failed compactions, retentions, vacuums by cause
    recovery: dict[str, dict[str, float]] = field(default_factory=dict)
    orphans_after_vacuum: int = 0
    violations: list[str] = field(default_factory=list)
    writer_errors: int = 0

    @property
    def ok(self) -> bool:
        return (not self.violations and self.lost == 0 and self.doubled == 0 and self.partial_batches == 0
                and self.orphans_after_vacuum == 0 and self.sql_count == self.sql_distinct == self.stored_rows)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}



def stored(store: ObjectStore, meta: Any) -> pa.Table:
    """Every committed row of a table, read straight from its segments (no query engine)."""
    snapshot = load_snapshot(store, meta)
    parts = [conform(read_segment(store, meta.path, s), snapshot.schema) for s in snapshot.segments]
    return pa.concat_tables(parts) if parts else snapshot.schema.empty_table()


def orphans(store: ObjectStore, meta: Any) -> int:
    """Files under the table's ``data/`` that no live segment is."""
    live = {f"{meta.path}/{s.path}" for s in load_snapshot(store, meta).segments}
    return sum(1 for info in store.list(f"{meta.path}/data", recursive=True, include_temporary=True)
               if info.path not in live)
