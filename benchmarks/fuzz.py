"""Differential SQL fuzzing: generated queries on Petrel and DuckDB, for as long as asked.

Runs the seeded generator of :mod:`benchmarks.fuzzing.generator` from
``--start`` on, until ``--cases`` queries or ``--seconds`` have passed
(whichever comes first), and prints the outcome counts overall and by
construct, then a few failing queries of each kind to reproduce.  The
counts go to ``--json`` as well.

    PYTHONPATH=$PWD python benchmarks/fuzz.py --cases 100000
    PYTHONPATH=$PWD python benchmarks/fuzz.py --seconds 60 --start 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.fuzzing.differential import OUTCOMES, Differential, Tally, cases  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run(start: int, count: int | None, seconds: float | None, depth: int, progress: bool) -> tuple[Tally, float]:
    differential = Differential()
    tally = Tally()
    began = time.monotonic()
    stop = start + count if count is not None else sys.maxsize
    last = began
    try:
        for case in cases(range(start, stop), depth):
            tally.add(differential.run(case), keep=5)
            now = time.monotonic()
            if seconds is not None and now - began >= seconds:
                break
            if progress and now - last > 30:
                last = now
                print(f"  {tally.cases} cases, {dict(tally.total)}", file=sys.stderr, flush=True)
    finally:
        differential.close()
    return tally, time.monotonic() - began


def report(tally: Tally, elapsed: float) -> str:
    lines = [f"{tally.cases} queries in {elapsed:.0f} s ({tally.cases / max(elapsed, 1e-9):.0f}/s)", ""]
    header = f"{'construct':<26}" + "".join(f"{o:>13}" for o in OUTCOMES)
    lines.append(header)
    lines.append("-" * len(header))
    lines.append(f"{'ALL':<26}" + "".join(f"{tally.total[o]:>13}" for o in OUTCOMES))
    for construct in sorted(tally.by_construct):
        counts = tally.by_construct[construct]
        lines.append(f"{construct:<26}" + "".join(f"{counts[o]:>13}" for o in OUTCOMES))
    checked = tally.cases - tally.total["oracle_error"]
    if checked:
        lines.append("")
        lines.append(f"mismatches {tally.total['mismatch']}, errors {tally.total['error']}, crashes {tally.total['crash']}, "
                     f"unsupported {tally.total['unsupported']} ({100 * tally.total['unsupported'] / checked:.2f}% "
                     f"of the {checked} queries DuckDB answered)")
    for outcome in ("mismatch", "crash", "error", "unsupported"):
        for verdict in tally.examples.get(outcome, []):
            lines.append(f"\n[{outcome}] seed {verdict.case.seed}: {verdict.case.sql}\n    {verdict.detail[:400]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=None, help="how many queries (default: until --seconds)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--depth", type=int, default=2, help="how deeply subqueries and expressions nest")
    parser.add_argument("--json", default=os.path.join(RESULTS, "fuzz.json"))
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.cases is None and args.seconds is None:
        args.seconds = 60.0
    tally, elapsed = run(args.start, args.cases, args.seconds, args.depth, not args.quiet)
    print(report(tally, elapsed))
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump({
            "start": args.start, "cases": tally.cases, "seconds": round(elapsed, 1), "depth": args.depth,
            "outcomes": dict(tally.total),
            "by_construct": {k: dict(v) for k, v in sorted(tally.by_construct.items())},
            "examples": {o: [{"seed": v.case.seed, "sql": v.case.sql, "detail": v.detail} for v in vs]
                         for o, vs in tally.examples.items()},
        }, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
