"""A short tour of Petrel's storage core: a table, appends, a snapshot, a zombie writer, vacuum.

Run: python examples/storage_demo.py [warehouse-dir]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time

import pyarrow as pa

from storage.catalog import Catalog
from storage.errors import Fenced
from storage.log import PartitionLog
from storage.objectstore import ObjectStore
from storage.segment import read_segment, write_segment
from storage.snapshot import load_snapshot
from storage.vacuum import vacuum_table


def batch(start: int, n: int) -> pa.Table:
    base = dt.datetime.now(dt.timezone.utc)
    return pa.table({
        "timestamp": pa.array([base + dt.timedelta(seconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "service": [f"svc-{i % 3}" for i in range(start, start + n)],
        "latency_ms": [float(i % 250) for i in range(start, start + n)],
    })


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="petrel-demo-")
    store = ObjectStore(root)
    meta = Catalog(store).create_table("demo", f"events_{int(time.time())}", partitions=2)
    print(f"warehouse {root}: created table {meta.path} with {meta.partitions} partitions")
    for partition in range(meta.partitions):
        log = PartitionLog(store, meta.path, partition)
        owner = log.claim()
        for i in range(3):
            entry = write_segment(store, meta.path, batch(i * 1000, 1000), partition=partition,
                                  time_column="timestamp", sort_key=meta.full_sort_key)
            owner = log.commit(owner, epoch=owner.epoch, added=[entry], batch_ids=[f"p{partition}-b{i}"])
        print(f"  partition {partition}: version {owner.version}, epoch {owner.epoch}, {owner.rows} rows")
    # a stale owner's late commit is refused
    log = PartitionLog(store, meta.path, 0)
    stale = log.load()
    log.claim()
    try:
        log.commit(stale, epoch=stale.epoch, batch_ids=["late"])
    except Fenced as exc:
        print(f"  zombie writer refused: {exc}")
    snap = load_snapshot(store, meta)
    print(f"snapshot {snap.versions}: {len(snap.segments)} segments, {snap.rows} rows, {snap.bytes} bytes")
    print(f"schema: {', '.join(f'{f.name} {f.type}' for f in snap.schema)}")
    first = read_segment(store, meta.path, snap.segments[0], columns=["service", "latency_ms"])
    print(f"first rows, two columns: {first.slice(0, 3).to_pylist()}")
    print(f"vacuum (1h grace): {vacuum_table(store, meta)}")


if __name__ == "__main__":
    main()
