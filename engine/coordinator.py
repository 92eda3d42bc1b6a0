"""The coordinator: sends a plan's fragments to the worker pool and merges the results.

Each exchange (Gather) of the optimized plan is one stage.  Its segments
are placed on workers by rendezvous hash (:mod:`planner.fragments`), one
Ray call per fragment; the results come back as Arrow tables through the
object store and the part of the plan above the exchange runs here.

Failures: a fragment whose worker died is retried on another worker (the
dead one is replaced in the pool); a query past its deadline has its
fragments cancelled on every worker and raises :class:`QueryTimeout`.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from engine.execution.operators import Execution, execute
from engine.execution.scan import SegmentReader
from engine.worker import QueryWorker
from planner.fragments import Fragment, assign, pack, preference, stage_plan, stage_scan
from planner.logical import Gather, Limit, Plan, Sort
from storage.errors import PetrelError, QueryFailed, QueryTimeout
from storage.objectstore import ObjectStore

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3


class WorkerPool:
    """The session's long-lived QueryWorker actors, one per CPU of the cluster."""

    def __init__(self, store: ObjectStore, size: int | None = None) -> None:
        if size is None:
            size = max(1, int(ray.cluster_resources().get("CPU", 1)))
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

    def replace(self, name: str) -> None:
        """Start a fresh actor under ``name`` after the old one died."""
        try:
            ray.kill(self.workers[name], no_restart=True)
        except Exception:  # already gone
            pass
        self.workers[name] = self._start(name)

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
    query_id: str
    planning_seconds: float = 0.0
    stages: list[StageStats] = field(default_factory=list)
    final_seconds: float = 0.0
    final_rows: int = 0
    total_seconds: float = 0.0


def run_plan(
    plan: Plan,
    pool: WorkerPool,
    timeout: float | None = None,
    started: float | None = None,
    fault_delay: float = 0.0,
) -> tuple[pa.Table, QueryStats]:
    """Run every stage of ``plan`` on ``pool``, then the rest of the plan here."""
    started = started if started is not None else time.monotonic()
    deadline = started + timeout if timeout is not None else None
    stats = QueryStats(query_id=uuid.uuid4().hex)
    run = Execution(deadline=deadline)
    parents = {id(child): node for node in plan.walk() for child in node.inputs}
    stage = 0
    for node in reversed(list(plan.walk())):
        if isinstance(node, Gather):
            stage += 1
            limit = _row_limit(parents.get(id(node)))
            table, stage_stats = _run_stage(node, stage, pool, stats.query_id, deadline, timeout, limit, fault_delay)
            run.gathered[id(node)] = table
            stats.stages.append(stage_stats)
    final_start = time.monotonic()
    try:
        result = execute(plan, run)
    except QueryTimeout:
        raise QueryTimeout(_timeout_message(timeout)) from None
    stats.final_seconds = time.monotonic() - final_start
    stats.final_rows = result.num_rows
    stats.total_seconds = time.monotonic() - started
    return result, stats


def _row_limit(parent: Plan | None) -> int | None:
    """Rows a stage needs at most when a LIMIT without ORDER BY sits right above it."""
    if isinstance(parent, Limit) and parent.limit is not None and not isinstance(parent.input, Sort):
        return parent.limit + parent.offset
    return None


def _timeout_message(timeout: float | None) -> str:
    limit = f"its timeout of {timeout:g} s" if timeout is not None else "its time limit"
    return (f"the query ran over {limit} and was cancelled; "
            "narrow its time range or pass a larger timeout= to sql()")


def _run_stage(
    gather: Gather,
    stage: int,
    pool: WorkerPool,
    query_id: str,
    deadline: float | None,
    timeout: float | None,
    limit: int | None,
    fault_delay: float,
) -> tuple[pa.Table, StageStats]:
    begun = time.monotonic()
    stats = StageStats(stage)
    plan = stage_plan(gather)
    scan = stage_scan(gather.input)
    segments = tuple(scan.segments or ()) if scan is not None else ()
    if not segments:  # nothing to read: the stage's empty result, typed, computed here
        table = execute(plan, Execution(reader=pool.reader, segments=()))
        stats.seconds = time.monotonic() - begun
        return table, stats
    placement = assign(segments, pool.names)
    fragments: list[tuple[str, Fragment]] = []
    for worker, assigned in placement.items():
        for group in pack(assigned):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            fragment = Fragment(query_id, stage, len(fragments), plan, group, remaining, fault_delay)
            fragments.append((worker, fragment))
    pending: dict[Any, tuple[str, Fragment, int]] = {}

    def submit(worker: str, fragment: Fragment, attempt: int) -> None:
        ref = pool.workers[worker].run.remote(fragment)
        pending[ref] = (worker, fragment, attempt)

    for worker, fragment in fragments:
        submit(worker, fragment, 1)
    results: list[pa.Table] = []
    rows = 0
    cancel_key = query_id
    try:
        while pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
            if not ready:
                raise QueryTimeout(_timeout_message(timeout))
            ref = ready[0]
            worker, fragment, attempt = pending.pop(ref)
            try:
                table, fragment_stats = ray.get(ref)
            except RayActorError:
                stats.retries += 1
                if attempt >= MAX_ATTEMPTS:
                    raise QueryFailed(
                        f"fragment {fragment.index} of stage {stage} failed {attempt} times because its "
                        "worker died; check the Ray cluster's health and retry"
                    ) from None
                log.warning("worker %s died running fragment %s; retrying elsewhere", worker, fragment.index)
                pool.replace(worker)
                others = [w for w in preference(fragment.segments[0].id, pool.names) if w != worker] or [worker]
                submit(others[0], fragment, attempt + 1)
                continue
            except TaskCancelledError:
                continue
            except RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, QueryTimeout):
                    raise QueryTimeout(_timeout_message(timeout)) from None
                if isinstance(cause, PetrelError):
                    raise cause from None
                raise QueryFailed(f"stage {stage} failed: {cause or error}") from None
            results.append(table)
            stats.fragments.append(fragment_stats)
            rows += table.num_rows
            if limit is not None and rows >= limit and pending:
                stats.cancelled_early = len(pending)
                _cancel(pool, pending, cancel_key)
                pending.clear()
    except BaseException:
        _cancel(pool, pending, cancel_key)
        raise
    table = pa.concat_tables(results, promote_options="permissive") if len(results) > 1 else results[0]
    stats.rows_out = table.num_rows
    stats.seconds = time.monotonic() - begun
    return table, stats


def _cancel(pool: WorkerPool, pending: dict, key: str) -> None:
    """Stop every pending fragment: cancel queued calls, tell workers to abandon running ones."""
    for ref in list(pending):
        try:
            ray.cancel(ref)
        except Exception:
            pass
    if pending:
        pool.cancel(key)


