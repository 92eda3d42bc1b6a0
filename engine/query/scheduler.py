"""The stage scheduler, on the driver: runs a plan's stages on the worker pool and merges the results.

Each exchange (Gather) of the optimized plan is one stage.  Its segments
are placed on workers by rendezvous hash (:mod:`planner.fragments`), one
Ray call per fragment; the results come back as Arrow tables through the
object store and the part of the plan above the exchange runs here.

A stage whose scan is small (under ``local_bytes`` of the segments' stored
bytes, estimated from the manifest for the columns it reads) runs here
instead, as one fragment with the driver's own reader: a Ray round trip
(pickling the fragment, two process hops, the result through the object
store) costs more than reading a few megabytes.  Big scans keep the
workers, whose footer caches stay warm by rendezvous placement.

Failures: a fragment whose worker died is retried on another worker (the
dead one is replaced in the pool); one whose workers died ``MAX_ATTEMPTS``
times (workers killed faster than they restart) runs in the driver, which
reads the same segments; a query past its deadline has its fragments
cancelled on every worker and raises :class:`QueryTimeout`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from engine.query.execution.exchange import partition as hash_partition
from engine.query.execution.memory import MemoryBudget, table_bytes
from engine.query.execution.operators import Execution, concat, execute, split, topk_read_columns
from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_fragment
from engine.query.stats import QueryStats, StageStats
from engine.query.workers import FragmentTask, WorkerPool
from planner.fragments import (
    TARGET_FRAGMENT_BYTES, Fragment, SegmentFile, bucket_fragments, preference, split_stage, stage_plan, stage_scan,
)
from planner.rules.distribute import estimate
from planner.logical import Aggregate, Broadcast, Gather, Limit, Plan, Shuffle, Sort
from storage.errors import PetrelError, QueryFailed, QueryTimeout

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
# A stage estimated to read at most this (stored bytes of the columns it reads) runs in the driver: one
# fragment's worth.  On 2 cores the driver (pyarrow's threads) beat two workers on every analytics query,
# whole-table scans included; on a cluster with more cores than the driver host, lower it (0: never).
LOCAL_BYTES = TARGET_FRAGMENT_BYTES
LOCAL_SPLIT_ROWS = 200_000  # a stage run here over more rows than this uses a thread per core
LOCAL_THREADS = 4


def run_plan(
    plan: Plan,
    pool: Callable[[], WorkerPool],
    timeout: float | None = None,
    started: float | None = None,
    fault_delay: float = 0.0,
    fragment_bytes: int = TARGET_FRAGMENT_BYTES,
    reader: SegmentReader | None = None,
    local_bytes: int = 0,
    memory_limit: int | None = None,
) -> tuple[pa.Table, QueryStats]:
    """Run every stage of ``plan`` on the worker pool, then the rest of the plan here.

    ``pool`` gives the pool when a stage first needs it: a plan without
    stages (answered from the manifest, or from constants), or whose stages
    all run here, starts no worker.

    ``fragment_bytes`` is about how many bytes of segments one fragment reads.
    ``reader`` reads the segments of the stages run here: those with nothing
    to read, and (with a ``reader``) those whose scan is estimated under
    ``local_bytes`` (0: every stage with segments goes to the workers).
    ``memory_limit`` bounds the bytes the query holds in each process (on
    each worker, and here); past it the query stops with ``QueryTooLarge``.
    """
    started = started if started is not None else time.monotonic()
    deadline = started + timeout if timeout is not None else None
    stats = QueryStats(query_id=uuid.uuid4().hex)
    runner = _Stages(plan, pool, stats, deadline, timeout, fault_delay, fragment_bytes, reader, local_bytes,
                     memory_limit)
    run = runner.gathered(plan)
    stats.stages.sort(key=lambda stage: stage.stage)
    final_start = time.monotonic()
    try:
        result = execute(plan, run)
    except QueryTimeout:
        raise QueryTimeout(_timeout_message(timeout)) from None
    stats.final_seconds = time.monotonic() - final_start
    stats.final_rows = result.num_rows
    stats.total_seconds = time.monotonic() - started
    return result, stats


def _exchanges(plan: Plan) -> list[Plan]:
    """The exchanges directly below ``plan`` (not those inside another exchange's input)."""
    if isinstance(plan, (Gather, Broadcast, Shuffle)):
        return [plan]
    return [found for child in plan.inputs for found in _exchanges(child)]


def _row_limit(parent: Plan | None) -> int | None:
    """Rows a stage needs at most when a LIMIT without ORDER BY sits right above it."""
    if isinstance(parent, Limit) and parent.limit is not None and not isinstance(parent.input, Sort):
        return parent.limit + parent.offset
    return None


def _timeout_message(timeout: float | None) -> str:
    limit = f"its timeout of {timeout:g} s" if timeout is not None else "its time limit"
    return (f"the query ran over {limit} and was cancelled; "
            "narrow its time range or pass a larger timeout= to sql()")


class _Stages:
    """Runs the stages of one query: each exchange's input, bottom up, on the workers.

    Stages that do not depend on each other (the build sides of a query's
    joins, the two sides of a shuffle join, the inputs of a UNION) run at the
    same time, each from its own coordinator thread, so the workers are not
    left idle while a small stage finishes.  Stage numbers are those of a
    serial run (each stage after the stages it reads), whatever the order
    stages finish in, so EXPLAIN ANALYZE pairs each with its plan.
    """

    def __init__(self, plan: Plan, pool: Callable[[], WorkerPool], stats: QueryStats, deadline: float | None,
                 timeout: float | None, fault_delay: float, fragment_bytes: int, reader: SegmentReader | None = None,
                 local_bytes: int = 0, memory_limit: int | None = None) -> None:
        self._pool = pool
        self._reader = reader
        self.local_bytes = local_bytes if reader is not None else 0
        self.fragment_bytes = fragment_bytes
        self.stats = stats
        self.deadline = deadline
        self.timeout = timeout
        self.fault_delay = fault_delay
        self.numbers = _stage_numbers(plan)
        self._lock = threading.Lock()
        self.memory_limit = memory_limit
        self.memory = MemoryBudget(memory_limit, "the coordinator") if memory_limit is not None else None

    @property
    def pool(self) -> WorkerPool:
        return self._pool()

    @property
    def reader(self) -> SegmentReader:
        """The driver's reader (the pool's when the engine gave none)."""
        return self._reader if self._reader is not None else self.pool.reader

    def in_process(self, plan: Plan) -> bool:
        """Whether the stage below ``plan`` is small enough to run here rather than on the workers."""
        scan = stage_scan(plan)
        if scan is None:
            return False
        whole = topk_read_columns(plan)  # a time-ordered top-k reads its keys, and only its top rows' other columns
        return estimate(scan if whole is None else dataclasses.replace(scan, fields=whole)) <= self.local_bytes

    def gathered(self, plan: Plan, path: tuple[int, ...] = ()) -> Execution:
        """An Execution for the coordinator's part of ``plan``, with every Gather below it run."""
        run = Execution(deadline=self.deadline, memory=self.memory)
        parents = {id(child): node for node in plan.walk() for child in node.inputs}
        gathers = _exchanges(plan)
        results = self._together([
            (self.stage, gather.input, None, _row_limit(parents.get(id(gather))), path + (index,))
            for index, gather in enumerate(gathers)
        ])
        for gather, result in zip(gathers, results):
            run.gathered[id(gather)] = concat(result)
            if len(result) == 1:
                run.whole.add(id(gather))
            if self.memory is not None:  # charged as they arrived; the Gather charges them again when it runs
                self.memory.release(sum(table_bytes(t) for t in result if isinstance(t, pa.Table)))
        return run

    def complete(self, plan: Plan, path: tuple[int, ...]) -> Any:
        """All rows of ``plan`` (the input of a Broadcast), as one object in Ray's store."""
        run = self.gathered(plan, path)
        try:
            return ray.put(execute(plan, run))  # one object for every fragment
        finally:
            run.release_all()

    def _together(self, calls: list[tuple]) -> list:
        """The results of ``calls`` ((function, *arguments) each), run at the same time when there are several."""
        if len(calls) <= 1:
            return [function(*arguments) for function, *arguments in calls]
        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="petrel-stage") as threads:
            futures = [threads.submit(function, *arguments) for function, *arguments in calls]
            try:
                return [future.result() for future in futures]
            except BaseException:
                self.pool.cancel(self.stats.query_id)  # the query has failed: stop its other stages
                raise

    def stage(self, plan: Plan, shuffle: Shuffle | None, limit: int | None, path: tuple[int, ...]) -> list:
        """Run ``plan`` as one stage: tables (gathered) or, for a shuffle, bucket refs per fragment."""
        calls = []
        for index, node in enumerate(_exchanges(plan)):
            if isinstance(node, Broadcast):
                calls.append((self.complete, node.input, path + (index,)))
            elif isinstance(node, Shuffle):
                calls.append((self.stage, node.input, node, None, path + (index,)))
            else:
                raise QueryFailed("a gather inside a stage cannot run; this is a planner bug")
        broadcast: dict[str, Any] = {}
        shuffled: dict[str, list[list[Any]]] = {}
        for node, result in zip(_exchanges(plan), self._together(calls)):
            (broadcast if isinstance(node, Broadcast) else shuffled)[node.key] = result
        number = self.numbers[path]
        stats = StageStats(number)
        with self._lock:
            self.stats.stages.append(stats)
        begun = time.monotonic()
        body = stage_plan(Gather(plan))
        scan = stage_scan(plan)
        segments = tuple(scan.segments or ()) if scan is not None else ()
        partition = (shuffle.keys, shuffle.buckets) if shuffle is not None else None
        inputs = {key: [ref] for key, ref in broadcast.items()}
        query_id = self.stats.query_id
        if shuffled:
            first = next(iter(shuffled.values()))
            buckets = len(first[0]) if first else 1
            placed = bucket_fragments(query_id, number, body, buckets, self.pool.names, partition)
            per_fragment = {}
            for _, fragment in placed:
                parts = dict(inputs)
                for key, refs in shuffled.items():
                    parts[key] = [bucket_refs[fragment.index] for bucket_refs in refs]
                per_fragment[fragment.index] = parts
        elif segments and not self.in_process(plan):
            placed = split_stage(query_id, number, body, segments, self.pool.names, self.fragment_bytes, partition)
            per_fragment = {fragment.index: inputs for _, fragment in placed}
        else:  # nothing to read, or little: the stage's result, computed here (on the driver's cores)
            local = {k: concat(ray.get(v)) for k, v in inputs.items()}
            threads = _local_threads(segments)
            # an aggregate's partial states per fragment would be merged again: it reads on threads instead
            parts = [segments] if isinstance(body, Aggregate) else split(segments, threads)
            fragments = [Fragment(query_id, number, index, body, tuple(SegmentFile.of(s) for s in part), partition)
                         for index, part in enumerate(parts)]
            tables = self._together([(self._here, fragment, local, stats, threads) for fragment in fragments])
            stats.seconds = time.monotonic() - begun
            stats.rows_out = sum(table.num_rows for table in tables)
            if partition is not None:
                return [[ray.put(part) for part in hash_partition(table, *partition)] for table in tables]
            return tables
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        tasks = [(worker, FragmentTask(fragment, remaining, self.fault_delay, per_fragment[fragment.index],
                                       self.memory_limit))
                 for worker, fragment in placed]
        results = _run_fragments(tasks, stats, self.pool, query_id, self.deadline, self.timeout, limit, partition,
                                 self.memory, fallback=self._fallback)
        stats.seconds = time.monotonic() - begun
        return results

    def _fallback(self, task: FragmentTask) -> tuple[Any, list]:
        """``task`` run here after its workers kept dying: (what a worker returns, bucket refs of a shuffle)."""
        fragment = task.fragment
        inputs = {key: concat(ray.get(list(refs))) for key, refs in task.inputs.items()}
        try:
            table, measured = run_fragment(fragment, self.reader, inputs, self.deadline, worker="driver")
        except QueryTimeout:
            raise QueryTimeout(_timeout_message(self.timeout)) from None
        if fragment.partition is not None:
            return measured, [ray.put(part) for part in hash_partition(table, *fragment.partition)]
        return (table, measured), []

    def _here(self, fragment: Fragment, inputs: dict[str, pa.Table], stats: StageStats, threads: int = 1) -> pa.Table:
        """``fragment`` run in this process (with the query's deadline), its measurements added to ``stats``."""
        try:
            table, measured = run_fragment(fragment, self.reader, inputs, self.deadline, worker="driver",
                                           memory=self.memory, threads=threads)
        except QueryTimeout:
            raise QueryTimeout(_timeout_message(self.timeout)) from None
        if self.memory is not None:  # held until the stage is merged, like a worker's result
            self.memory.charge(table_bytes(table), f"the results of stage {fragment.stage}")
        if fragment.segments:
            stats.fragments.append(measured)
        return table


def _local_threads(segments: tuple) -> int:
    """Into how many fragments a stage run here splits its segments: one per core, once they hold enough rows.

    The driver's own operators (filters, projections, partial aggregates)
    run on one thread per fragment; Arrow releases the GIL in them.  Below
    LOCAL_SPLIT_ROWS the threads cost more than they save.
    """
    if len(segments) < 2 or sum(s.rows for s in segments) < LOCAL_SPLIT_ROWS:
        return 1
    return max(1, min(len(segments), os.cpu_count() or 1, LOCAL_THREADS))


def _stage_numbers(plan: Plan) -> dict[tuple[int, ...], int]:
    """The number of every stage of ``plan`` (keyed by its path of exchange indices), in serial order."""
    numbers: dict[tuple[int, ...], int] = {}

    def visit(stage: Plan, path: tuple[int, ...]) -> None:
        for index, node in enumerate(_exchanges(stage)):
            if isinstance(node, Broadcast):
                for inner, gather in enumerate(_exchanges(node.input)):
                    visit(gather.input, path + (index, inner))
            elif isinstance(node, Shuffle):
                visit(node.input, path + (index,))
        numbers[path] = len(numbers) + 1

    for index, gather in enumerate(_exchanges(plan)):
        visit(gather.input, (index,))
    return numbers


def _run_fragments(
    tasks: list[tuple[str, FragmentTask]],
    stats: StageStats,
    pool: WorkerPool,
    query_id: str,
    deadline: float | None,
    timeout: float | None,
    limit: int | None,
    partition: tuple | None,
    memory: MemoryBudget | None = None,
    fallback: Callable[[FragmentTask], tuple[Any, list]] | None = None,
) -> list:
    """Send ``tasks`` to their workers; retry on dead workers; their results in fragment order.

    ``fallback`` runs a fragment whose workers died ``MAX_ATTEMPTS`` times
    (here, in the caller's process); without it the query fails.
    """
    stage = stats.stage
    pending: dict[Any, tuple[str, Any, FragmentTask, int, list]] = {}
    returns = partition[1] + 1 if partition is not None else 1

    def submit(worker: str, task: FragmentTask, attempt: int) -> None:
        handle = pool.workers[worker]
        if partition is None:
            ref = handle.run.remote(task)
            pending[ref] = (worker, handle, task, attempt, [])
        else:
            refs = handle.run.options(num_returns=returns).remote(task)
            pending[refs[-1]] = (worker, handle, task, attempt, refs[:-1])

    for worker, task in tasks:
        submit(worker, task, 1)
    results: dict[int, Any] = {}
    rows = 0
    try:
        while pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
            if not ready:
                raise QueryTimeout(_timeout_message(timeout))
            ref = ready[0]
            worker, handle, task, attempt, buckets = pending.pop(ref)
            fragment = task.fragment
            try:
                outcome = ray.get(ref)
            except RayActorError:
                stats.retries += 1
                if attempt >= MAX_ATTEMPTS and fallback is not None:
                    log.warning("fragment %s of stage %s lost %d workers; running it in the driver",
                                fragment.index, stage, attempt)
                    pool.replace(worker, handle)
                    outcome, buckets = fallback(task)
                elif attempt >= MAX_ATTEMPTS:
                    raise QueryFailed(
                        f"fragment {fragment.index} of stage {stage} failed {attempt} times because its "
                        "worker died; check the Ray cluster's health and retry"
                    ) from None
                else:
                    log.warning("worker %s died running fragment %s; retrying elsewhere", worker, fragment.index)
                    pool.replace(worker, handle)
                    ranked = preference(fragment.segments[0].id, pool.names) if fragment.segments else pool.names
                    others = [w for w in ranked if w != worker] or [worker]
                    submit(others[0], task, attempt + 1)
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
            if partition is not None:
                results[fragment.index] = buckets
                stats.fragments.append(outcome)
                stats.rows_out += outcome.get("rows_out", 0)
                continue
            table, fragment_stats = outcome
            if memory is not None:  # the coordinator holds every fragment's rows until the stage is merged
                memory.charge(table_bytes(table), f"the results of stage {stage}")
            results[fragment.index] = table
            stats.fragments.append(fragment_stats)
            rows += table.num_rows
            stats.rows_out += table.num_rows
            if limit is not None and rows >= limit and pending:
                stats.cancelled_early = len(pending)
                _cancel(pool, pending, query_id)
                pending.clear()
    except BaseException:
        _cancel(pool, pending, query_id)
        raise
    return [results[index] for index in sorted(results)]


def _cancel(pool: WorkerPool, pending: dict, key: str) -> None:
    """Stop every pending fragment: cancel queued calls, tell workers to abandon running ones."""
    for ref in list(pending):
        try:
            ray.cancel(ref)
        except Exception:
            pass
    if pending:
        pool.cancel(key)


