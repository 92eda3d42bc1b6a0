"""A one-line progress bar on stderr for on-demand maintenance (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

import ray

BAR_WIDTH = 30


def render(label: str, progress: dict[str, Any] | None, elapsed: float) -> str:
    """One line: label, a bar over merges done of merges planned, rows merged, elapsed time."""
    if progress is None or not progress["tasks_planned"]:
        stage = "starting" if progress is None else progress["stage"]
        return f"{label} [{' ' * BAR_WIDTH}] {stage} {elapsed:5.1f}s"
    done, planned = progress["tasks_done"], progress["tasks_planned"]
    filled = int(BAR_WIDTH * done / planned)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    report = progress["report"]
    return (f"{label} [{bar}] {done}/{planned} merges, {report['removed']:,} -> {report['added']:,} segments, "
            f"{progress['rows_done']:,} rows {elapsed:5.1f}s")


def follow(ref: ray.ObjectRef, poll: Callable[[], dict[str, Any] | None], label: str,
           out: TextIO | None = None, interval: float = 0.25) -> Any:
    """Wait for ``ref``, redrawing the bar from ``poll()`` meanwhile; returns its result."""
    out = out if out is not None else sys.stderr
    started = time.monotonic()
    width = 0
    while True:
        ready, _ = ray.wait([ref], timeout=interval)
        line = render(label, poll(), time.monotonic() - started)
        out.write("\r" + line.ljust(width))
        out.flush()
        width = len(line)
        if ready:
            out.write("\n")
            out.flush()
            return ray.get(ref)
