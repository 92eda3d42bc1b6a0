"""What a query measured: per fragment, per stage, and in total (the figures of EXPLAIN ANALYZE)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.query.execution.scan import ScanStats
from planner.fragments import Fragment


def fragment_stats(fragment: Fragment, scan: ScanStats, table: pa.Table, seconds: float, worker: str = "local") -> dict[str, Any]:
    """One fragment's measurements, as the plain dictionary EXPLAIN ANALYZE reads."""
    return {
        "worker": worker,
        "stage": fragment.stage,
        "fragment": fragment.index,
        "segments": scan.segments,
        "rows_read": scan.rows_read,
        "bytes_read": scan.bytes_read,
        "rows_scanned_out": scan.rows_out,
        "rows_out": table.num_rows,
        "bytes_out": table.nbytes,
        "footer_hits": scan.footer_hits,
        "seconds": seconds,
    }


@dataclass
class StageStats:
    """What one stage did: its fragments' measurements and its wall time."""

    stage: int
    fragments: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0
    cancelled_early: int = 0
    rows_out: int = 0


@dataclass
class QueryStats:
    """What one query did: planning, every stage, and the coordinator's final part."""

    query_id: str
    planning_seconds: float = 0.0
    stages: list[StageStats] = field(default_factory=list)
    final_seconds: float = 0.0
    final_rows: int = 0
    total_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
