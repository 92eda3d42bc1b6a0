"""QueryWorker: a long-lived Ray actor that runs plan fragments.

A session starts a pool of them once, one per CPU of the cluster; queries
never start actors.  Each worker keeps a :class:`SegmentReader`, whose
footer cache stays warm because the coordinator sends the same segments
to the same worker.  Fragments check their deadline and the query's
cancellation between operators and record batches, so a cancelled query
frees its workers promptly.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pyarrow as pa
import ray

from engine.execution.operators import Execution, concat, execute
from engine.execution.exchange import partition
from engine.execution.scan import SegmentReader
from planner.fragments import Fragment
from storage.errors import PetrelError
from storage.objectstore import ObjectStore


@ray.remote(num_cpus=0, max_restarts=0, concurrency_groups={"work": 2, "control": 1})
class QueryWorker:
    """Runs fragments over the segments of one warehouse."""

    def __init__(self, store: ObjectStore, name: str) -> None:
        self.name = name
        self.reader = SegmentReader(store)
        self._cancelled: dict[str, float] = {}
        self._running: dict[tuple[str, int, int], float] = {}
        self._lock = threading.Lock()

    @ray.method(concurrency_group="control")
    def ping(self) -> dict[str, Any]:
        return {"name": self.name, "pid": os.getpid(), "host": socket.gethostname()}

    @ray.method(concurrency_group="control")
    def cancel(self, query_id: str) -> None:
        """Make every fragment of ``query_id`` stop at its next check."""
        with self._lock:
            self._cancelled[query_id] = time.monotonic()
            horizon = time.monotonic() - 600
            for old in [q for q, t in self._cancelled.items() if t < horizon]:
                del self._cancelled[old]

    @ray.method(concurrency_group="control")
    def running(self) -> list[str]:
        """Query ids of the fragments running now."""
        with self._lock:
            return sorted({key[0] for key in self._running})

    @ray.method(concurrency_group="work")
    def run(self, fragment: Fragment):
        """Execute ``fragment``; return its rows and what it measured.

        For a shuffle the rows come back as one table per bucket, then the measurements.
        """
        started = time.monotonic()
        key = (fragment.query_id, fragment.stage, fragment.index)
        with self._lock:
            self._running[key] = started
        deadline = started + fragment.timeout if fragment.timeout is not None else None
        run = Execution(
            reader=self.reader,
            segments=fragment.segments,
            deadline=deadline,
            cancelled=lambda: fragment.query_id in self._cancelled,
        )
        try:
            self._wait(fragment.delay, run)
            for exchange, refs in fragment.inputs.items():
                run.inputs[exchange] = concat(ray.get(list(refs)))
            table = execute(fragment.plan, run)
        except PetrelError:
            raise
        except Exception as error:  # report which fragment failed, with the cause
            raise RuntimeError(
                f"fragment {fragment.index} of stage {fragment.stage} failed on worker {self.name}: "
                f"{type(error).__name__}: {error}"
            ) from error
        finally:
            with self._lock:
                self._running.pop(key, None)
        stats = {
            "worker": self.name,
            "stage": fragment.stage,
            "fragment": fragment.index,
            "segments": run.scan.segments,
            "rows_read": run.scan.rows_read,
            "bytes_read": run.scan.bytes_read,
            "rows_scanned_out": run.scan.rows_out,
            "rows_out": table.num_rows,
            "bytes_out": table.nbytes,
            "footer_hits": run.scan.footer_hits,
            "seconds": time.monotonic() - started,
        }
        if fragment.partition is not None:
            return (*partition(table, *fragment.partition), stats)
        return table, stats

    @staticmethod
    def _wait(delay: float, run: Execution) -> None:
        end = time.monotonic() + delay
        while time.monotonic() < end:
            run.check()
            time.sleep(min(0.02, max(0.0, end - time.monotonic())))
        if delay:
            run.check()

