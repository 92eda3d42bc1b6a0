"""The ``petrel compact`` and ``petrel stats`` commands (registered by ``engine.cli``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from storage.compaction import TableStats


def register(subparsers: Any) -> None:
    """Add ``compact`` and ``stats`` to the ``petrel`` command; each sets ``args.run(session, args)``."""
    compact = subparsers.add_parser("compact", help="merge a table's small segments now")
    compact.add_argument("table")
    compact.add_argument("--tiers-only", action="store_true",
                         help="merge only full size tiers, as the background loop does")
    compact.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    compact.set_defaults(run=run_compact)
    stats = subparsers.add_parser("stats", help="segments, rows, bytes and last compaction of tables")
    stats.add_argument("table", nargs="?", help="one table (default: every table of the namespace)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(run=run_stats)


def run_compact(session: Any, args: argparse.Namespace) -> int:
    report = session.compact(args.table, progress=not args.no_progress, full=not args.tiers_only)
    print(f"{session.namespace}.{args.table}: merged {report.removed:,} segments into {report.added:,} "
          f"({report.rows:,} rows, {report.bytes_read:,} -> {report.bytes_written:,} bytes) in {report.seconds:.1f}s"
          + (f"; {report.conflicts} merge(s) gave way to a concurrent change" if report.conflicts else ""))
    return 0


def run_stats(session: Any, args: argparse.Namespace) -> int:
    names = [args.table] if args.table else session.tables()
    stats = [session.table_stats(name) for name in names]
    if args.json:
        json.dump([s.to_json() for s in stats], sys.stdout, indent=2, default=str)
        print()
    else:
        print(format_stats(stats))
    return 0


def format_stats(stats: list[TableStats]) -> str:
    """A plain-text table, one line per table."""
    header = ("table", "segments", "small", "rows", "bytes", "oldest event", "newest event", "last compaction")
    rows = [header] + [
        (s.table, f"{s.segments:,}", f"{s.small_segments:,}", f"{s.rows:,}", _size(s.bytes),
         _instant(s.oldest_event, 1e6), _instant(s.newest_event, 1e6), _instant(s.last_compaction, 1))
        for s in stats
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _instant(value: float | None, per_second: float) -> str:
    if value is None:
        return "-"
    return dt.datetime.fromtimestamp(value / per_second, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"
