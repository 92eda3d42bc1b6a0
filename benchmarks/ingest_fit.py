"""Fitting JSON lines on the client, alone: parse and normalize, in CPU seconds, without Ray.

The client side of ``benchmarks/ingest.py``'s JSON-lines runs (the same
events, in batches of 10,000 lines) with nothing else in the process: every
batch is parsed (``engine.ingest.parse.parse``: the byte scan, pyarrow's
reader, the checks on the rows) and fitted to the table's schema
(``engine.ingest.normalize.normalize``: flattening, times, types).  Time is
CPU time of this process, so other work on a shared machine disturbs it
far less than the wall-clock figures of the end-to-end benchmark; run it
against another checkout (``PYTHONPATH=<checkout>``) to compare two versions
of the fit path, interleaved.  Prints a table and writes JSON.

    python benchmarks/ingest_fit.py [--events 200000] [--repeat 9] [--out benchmarks/results/ingest_fit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

# appended, not put first: PYTHONPATH=<checkout> picks the engine (and event generator) measured
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.ingest import BATCH_ROWS, events, json_lines  # noqa: E402
from engine.ingest.normalize import normalize  # noqa: E402
from engine.ingest.parse import parse  # noqa: E402

MAX_ROW_BYTES = 1 << 20


def fit_all(batches: list[bytes], schema, now_us: int) -> tuple[float, float]:
    """CPU seconds spent parsing and normalizing every batch."""
    parsing = fitting = 0.0
    for batch in batches:
        began = time.process_time()
        parsed = parse(batch, MAX_ROW_BYTES, schema, "timestamp")
        parsed_at = time.process_time()
        normalize(parsed, time_column="timestamp", schema=schema, now_us=now_us, max_row_bytes=MAX_ROW_BYTES)
        parsing += parsed_at - began
        fitting += time.process_time() - parsed_at
    return parsing, fitting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=9, help="passes over every batch; medians are reported")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "ingest_fit.json"))
    args = parser.parse_args()
    batches = json_lines(events(args.events))
    now_us = time.time_ns() // 1000
    first = parse(batches[0], MAX_ROW_BYTES, None, "timestamp")
    schema = normalize(first, time_column="timestamp", schema=None, now_us=now_us).schema  # as a table has it
    passes = [fit_all(batches, schema, now_us) for _ in range(args.repeat)]
    parse_s = statistics.median(p for p, _ in passes)
    normalize_s = statistics.median(n for _, n in passes)
    total = statistics.median(p + n for p, n in passes)
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(parse.__code__.co_filename))))
    print(f"Fitting {args.events:,} events as JSON lines in batches of {BATCH_ROWS:,}, median of {args.repeat} "
          f"passes (CPU time), the engine of {checkout}")
    print(f"{'step':<12}{'ms per batch':>14}{'events/s':>14}")
    for name, seconds in (("parse", parse_s), ("normalize", normalize_s), ("both", total)):
        print(f"{name:<12}{seconds / len(batches) * 1e3:>14.2f}{args.events / seconds:>14,.0f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"events": args.events, "batch_rows": BATCH_ROWS, "repeat": args.repeat, "checkout": checkout,
                   "parse_seconds": round(parse_s, 4), "normalize_seconds": round(normalize_s, 4),
                   "events_per_cpu_second": round(args.events / total),
                   "passes": [[round(p, 4), round(n, 4)] for p, n in passes]}, handle, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
