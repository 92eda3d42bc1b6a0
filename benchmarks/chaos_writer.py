"""One writer process of the chaos run: batches with ids, retried until acknowledged, acks logged.

Run as ``python -m benchmarks.chaos_writer '<json>'`` by :mod:`benchmarks.chaos_run`,
which SIGKILLs it now and then and starts it again.  The writer is a client
with a durable outbox: batch ``w<k>-<n>`` always holds the same rows, the
number of the batch in flight is on disk before it is sent, and a restarted
writer sends that batch again, with the same id, before going on.  Each
acknowledged batch id is appended to the writer's ack log only after the
ingest call returned, so the log is a subset of what is stored (a kill
between the two leaves a stored batch unlogged, never the reverse).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
import time
from typing import Any

ROW_ID_STRIDE = 10**9  # writer k's row ids are k * stride + n * rows + j


def batch_rows(writer: int, number: int, rows: int, base_us: int) -> list[dict[str, Any]]:
    """The rows of batch ``number`` of ``writer``: the same on every attempt."""
    batch = f"w{writer}-{number}"
    first = writer * ROW_ID_STRIDE + number * rows
    when = base_us + number * 1000
    return [{"timestamp": dt.datetime.fromtimestamp((when + j) / 1e6, dt.timezone.utc).isoformat(), "id": first + j, "batch": batch, "writer": writer,
             "service": f"svc-{(first + j) % 7}", "payload": "x" * (16 + (first + j) % 48)}
            for j in range(rows)]


def _read_number(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().strip() or "-1")
    except (FileNotFoundError, ValueError):
        return None


def _write_number(path: str, number: int) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        handle.write(str(number))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def main(spec: dict[str, Any]) -> None:
    """Write batches to the table until the stop file appears (see the module docstring)."""
    import ray

    from benchmarks.chaos_faults import ChaosStore
    from engine.ingest.client import Ingestion, IngestOptions
    from engine.ingest.owner import IngestConfig
    from storage.catalog import Catalog
    from storage.errors import PetrelError

    ray.init(address=spec["address"], logging_level="ERROR", log_to_driver=False)
    store = ChaosStore(spec["url"], spec["storage_options"], spec["faults"], spec["emulate_full"])
    options = IngestOptions(timeout=spec["call_timeout"], max_attempts=3,
                            actor=IngestConfig(max_age=spec["max_age"]))
    ingestion = Ingestion(store, Catalog(store), "default", options)
    writer, rows, table = spec["writer"], spec["rows"], spec["table"]
    inflight = os.path.join(spec["folder"], f"w{writer}.inflight")
    acks = open(os.path.join(spec["folder"], f"w{writer}.acks"), "a")
    number = _read_number(inflight)
    number = 0 if number is None else number  # the batch in flight when it was killed, sent again
    rng = random.Random(writer * 7919 + os.getpid())
    while not os.path.exists(spec["stop"]):
        _write_number(inflight, number)
        data = batch_rows(writer, number, rows, spec["base_us"])
        batch = f"w{writer}-{number}"
        while True:
            try:
                ingestion.ingest(table, data, batch_id=batch)
                break
            except (PetrelError, ray.exceptions.RayError, OSError) as exc:
                with open(os.path.join(spec["folder"], f"w{writer}.errors"), "a") as errors:
                    errors.write(f"{time.time():.3f} {batch} {type(exc).__name__}: {str(exc)[:200]!r}\n")
                if os.path.exists(spec["stop"]) and time.time() > spec.get("give_up_at", float("inf")):
                    return
                time.sleep(rng.uniform(0.1, 0.5))
        acks.write(f"{time.time():.3f} {batch}\n")
        acks.flush()
        number += 1
        time.sleep(spec["pause"])
    _write_number(inflight, number)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)  # leave the Ray connection without waiting on it
