"""What ingest_files' offsets cost a partition once many files are done: checkpoint size and load time.

A partition that has taken ``--files`` files (one offset record each, the
size ingest_files writes for an S3 object) is checkpointed twice: as the
records themselves (what a checkpoint held before finished files were
folded) and folded into finished-source digests (``storage/finished.py``,
what it holds now).  For each: the checkpoint's bytes, the time to load the
partition from it (best of ``--repeat``), and the time to ask whether each
of 1,000 files is done.  Prints a table and writes
``benchmarks/results/file_offsets.json``; it never asserts.

    PYTHONPATH=$PWD python -m benchmarks.file_offsets --files 100000
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

from storage.catalog import Catalog
from storage.finished import FinishedSources
from storage.log import PartitionLog, PartitionState
from storage.objectstore import ObjectStore

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "file_offsets.json")


def file_offsets(files: int) -> dict[str, dict]:
    """``files`` finished files as ingest_files records them."""
    return {f"s3://landing-bucket/exports/2026/11/01/events-{n:07d}.jsonl":
            {"version": f"etag:{uuid.UUID(int=n).hex}", "chunk": 1, "done": True,
             "layout": {"rows": 200000, "bytes": 33554432}, "rejected": False, "finished": True}
            for n in range(files)}


def measure(files: int, repeat: int, folded: bool) -> dict[str, float]:
    store = ObjectStore(f"memory://offsets-{uuid.uuid4().hex[:8]}")
    meta = Catalog(store).create_table("default", "files", partitions=1)
    log = PartitionLog(store, meta.path, 0)
    offsets = file_offsets(files)
    state = PartitionState(partition=0, version=0, offsets=offsets)
    if folded:
        log.write_checkpoint(state)
    else:  # the checkpoint as it was written before the fold
        store.put_if_absent(log.checkpoint_path(0), json.dumps(state.to_json()).encode())
    size = len(store.get(log.checkpoint_path(0)))
    loads = []
    for _ in range(repeat):
        started = time.perf_counter()
        loaded = log.load()
        loads.append(time.perf_counter() - started)
    asked = list(offsets.items())[:1000]
    started = time.perf_counter()
    for source, record in asked:
        found = loaded.offsets.get(source) == record or loaded.finished.contains(source, record["version"])
        assert found
    lookups = time.perf_counter() - started
    return {"checkpoint_mb": size / 1e6, "load_ms": min(loads) * 1e3, "lookup_1000_ms": lookups * 1e3,
            "records_left": len(loaded.offsets), "digests": len(loaded.finished)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = {"records (before)": measure(args.files, args.repeat, folded=False),
            "folded (now)": measure(args.files, args.repeat, folded=True)}
    print(f"{args.files:,} finished files in one partition")
    print(f"{'checkpoint':<18} {'MB':>8} {'load ms':>9} {'1,000 look-ups ms':>18}")
    for name, row in rows.items():
        print(f"{name:<18} {row['checkpoint_mb']:8.2f} {row['load_ms']:9.1f} {row['lookup_1000_ms']:18.1f}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump({"files": args.files, **rows, "empty_digest_bytes": len(FinishedSources().to_json())}, handle,
                  indent=2)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
