"""The worker pool: long-lived QueryWorker actors that run fragments.

A session starts a pool once, one worker per CPU of the cluster; queries
never start actors.  Each worker keeps a :class:`SegmentReader`, whose
footer cache stays warm because the scheduler sends the same segments to
the same worker.  A fragment travels as a :class:`FragmentTask`: the
planner's pure :class:`~planner.fragments.Fragment` plus what the engine
attaches to run it (its time budget, the Ray refs of the exchange rows it
reads).  Fragments check their deadline and the query's cancellation
between operators and record batches, so a cancelled query frees its
workers promptly.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.query.execution.exchange import partition
from engine.query.execution.memory import MemoryBudget
from engine.query.execution.operators import Execution, concat
from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_fragment
from planner.fragments import Fragment
from storage.errors import PetrelError, QueryFailed
from storage.objectstore import ObjectStore


@dataclass(frozen=True)
class FragmentTask:
    """A fragment as sent to a worker: the plan's part, and the runtime parts the engine attached."""

    fragment: Fragment
    timeout: float | None = None  # seconds the fragment may take, from when it starts
    delay: float = 0.0  # fault injection for tests: seconds to wait (cancellably) before running
    inputs: dict[str, list[Any]] = field(default_factory=dict)  # exchange key -> object refs of the rows it reads
    memory_limit: int | None = None  # bytes the query may hold on one worker (all its fragments there together)


@ray.remote(num_cpus=0, max_restarts=0, concurrency_groups={"work": 2, "control": 1})
class QueryWorker:
    """Runs fragments over the segments of one warehouse."""

    def __init__(self, store: ObjectStore, name: str) -> None:
        self.name = name
        self.reader = SegmentReader(store)
        self._cancelled: dict[str, float] = {}
        self._running: dict[tuple[str, int, int], float] = {}
        self._budgets: dict[str, tuple[MemoryBudget, int]] = {}  # query id -> its budget here, fragments using it
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

    @ray.method(concurrency_group="control")
    def memory(self) -> dict[str, Any]:
        """This process's Arrow memory pool: bytes allocated now, the most ever allocated, and its backend."""
        import pyarrow as pa

        pool = pa.default_memory_pool()
        return {"pid": os.getpid(), "allocated": pool.bytes_allocated(), "max": pool.max_memory(),
                "backend": pool.backend_name}

    def _budget(self, query_id: str, limit: int | None, delta: int) -> MemoryBudget | None:
        """The query's budget on this worker, shared by its fragments here (``delta``: +1 taking, -1 giving back)."""
        if limit is None:
            return None
        with self._lock:
            budget, users = self._budgets.get(query_id) or (MemoryBudget(limit, f"worker {self.name}"), 0)
            users += delta
            if users > 0:
                self._budgets[query_id] = (budget, users)
            else:
                self._budgets.pop(query_id, None)
            return budget

    @ray.method(concurrency_group="work")
    def run(self, task: FragmentTask):
        """Execute the task's fragment; return its rows and what it measured.

        For a shuffle the rows come back as one table per bucket, then the measurements.
        """
        fragment = task.fragment
        started = time.monotonic()
        key = (fragment.query_id, fragment.stage, fragment.index)
        with self._lock:
            self._running[key] = started
        deadline = started + task.timeout if task.timeout is not None else None
        cancelled = lambda: fragment.query_id in self._cancelled  # noqa: E731
        memory = self._budget(fragment.query_id, task.memory_limit, +1)
        try:
            self._wait(task.delay, Execution(deadline=deadline, cancelled=cancelled))
            inputs = {exchange: concat(ray.get(list(refs))) for exchange, refs in task.inputs.items()}
            table, stats = run_fragment(fragment, self.reader, inputs, deadline, cancelled, worker=self.name,
                                        memory=memory)
        except PetrelError:
            raise
        except Exception as error:  # report which fragment failed, with the cause
            raise QueryFailed(
                f"fragment {fragment.index} of stage {fragment.stage} failed on worker {self.name}: "
                f"{type(error).__name__}: {error}"
            ) from error
        finally:
            with self._lock:
                self._running.pop(key, None)
            self._budget(fragment.query_id, task.memory_limit, -1)
        stats["seconds"] = time.monotonic() - started
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


def pool_size(size: int | None = None) -> int:
    """How many workers a pool of ``size`` has (None: one per CPU of the cluster)."""
    return size if size is not None else max(1, int(ray.cluster_resources().get("CPU", 1)))


class WorkerPool:
    """The session's long-lived QueryWorker actors, one per CPU of the cluster."""

    def __init__(self, store: ObjectStore, size: int | None = None) -> None:
        size = pool_size(size)
        self.store = store
        self.reader = SegmentReader(store)  # for stages with nothing to read, typed empty results
        self.tag = uuid.uuid4().hex[:6]
        self.workers: dict[str, Any] = {}
        for index in range(size):
            name = f"worker-{index}"
            self.workers[name] = self._start(name)
        ray.get([w.ping.remote() for w in self.workers.values()])

    def _start(self, name: str):
        return QueryWorker.options(scheduling_strategy="SPREAD").remote(self.store, f"{name}/{self.tag}")

    @property
    def names(self) -> list[str]:
        return list(self.workers)

    def replace(self, name: str, failed: Any) -> bool:
        """Start a fresh actor under ``name`` after ``failed`` (the handle that died) unless that was done already.

        Every pending fragment of a dead worker reports the death; only the
        first report replaces it, so a replacement is never killed by a later
        report about the actor it replaced.
        """
        if self.workers.get(name) is not failed:
            return False
        try:
            ray.kill(failed, no_restart=True)
        except Exception:  # already gone
            pass
        self.workers[name] = self._start(name)
        return True

    def cancel(self, key: str) -> None:
        for worker in self.workers.values():
            try:
                worker.cancel.remote(key)
            except Exception:  # a dead worker has nothing left to cancel
                pass

    def close(self) -> None:
        for worker in self.workers.values():
            try:
                ray.kill(worker, no_restart=True)
            except Exception:
                pass
        self.workers.clear()
