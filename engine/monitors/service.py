"""The monitor service on Ray: per shard a scheduler, a state processor and a notifier.

- :class:`Scheduler` finds the slots each monitor it evaluates is due for,
  evaluates them (shared scans) in its own process and hands the outcomes
  to the state processors of the monitors' shards.  Schedulers split the
  monitors by what they read (:func:`evaluation_shards`), so each scan is
  computed by one of them.  After an outage it catches up missed
  slots up to the monitor's ``catch_up`` bound (10 minutes by default),
  evaluated exactly against stored data; older slots are skipped, recorded
  with the reason (the scheduler was down, or busy) and counted.
- :class:`StateProcessor` owns the shard's partition of
  ``_monitor_transitions`` under an epoch and commits each batch of slots
  (states, transitions, outbox) atomically; a slot already applied changes
  nothing, so a retried hand-off is harmless.
- :class:`NotifierActor` delivers the shard's outbox (:mod:`notify`).

All three restart on their own after a crash (``max_restarts=-1``) and
resume from what is committed.  :class:`MonitorService` starts them and
keeps them running in the foreground (``db.run_monitors()``,
``petrel monitors run``).
"""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import ray

from engine.allocator import keep_freed_memory
from engine.collector import GcPauses, collect_if_owed, defer_full_collections, freeze_long_lived
from engine.monitors.definition import MonitorSpec, scan_groups
from engine.monitors.evaluate import Evaluator
from engine.monitors.history import ShardLog, shard_of
from storage.catalog import TableMeta
from storage.errors import Fenced
from storage.monitor_log import MonitorLog
from storage.objectstore import ObjectStore

DEFINITIONS_REFRESH = 2.0
MAX_SLOTS_PER_STEP = 5_000
HANDOFF_SLOTS = 1_000  # a step hands off its slots in parts of about this many: the first commit early
FIRST_SLOT_GRACE = 2.0  # a monitor's first slot is the one just passed if it is this recent, else the next one
LATENESS_SAMPLES = 20_000
IDLE_COLLECT_SECONDS = 2.0  # a scheduler runs a full collection owed when nothing is due for this long (one took 0.8-1.6 s)
AHEAD_MARGIN = 0.5  # a scheduler works ahead (LocalQueries.ahead) until this long before the next slot is due
SLOW_PART = 1.0  # an evaluation part taking this many seconds is kept in Scheduler.slow_parts, with what it spent
LATENESS_STEP = 1.02  # lateness is counted in buckets 2% wide from 1 ms: percentiles of a whole run in little memory


def lateness_bucket(seconds: float) -> int:
    """The bucket counting a lateness of ``seconds``."""
    return max(0, int(math.log(max(seconds, 0.001) / 0.001) / math.log(LATENESS_STEP)))


def lateness_percentile(counts: dict[int, int], fraction: float) -> float | None:
    """The ``fraction`` percentile (0.99: p99) of the lateness counted in ``counts`` (bucket -> count), in seconds
    (the middle of its bucket: within 1%)."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= fraction * total:
            return 0.001 * LATENESS_STEP ** (bucket + 0.5)
    return None


def evaluation_shards(records: dict[str, dict[str, Any]], shards: int) -> dict[str, int]:
    """Which scheduler evaluates each monitor (the same answer in every scheduler, given the same definitions).

    The monitors over one table and group columns share their scans, so
    they go to one scheduler: whole scans, the largest first, each to the
    least loaded.  A scan with more than a scheduler's fair share of the
    monitors is split over all of them by name, as states are, so that no
    scheduler is left with most of the work.
    """
    if shards <= 1:
        return dict.fromkeys(records, 0)
    scans: dict[tuple, list[str]] = {}
    for name, record in records.items():
        scans.setdefault((record.get("table", ""), scan_groups(record)), []).append(name)
    fair = len(records) / shards
    load = [0] * shards
    owners: dict[str, int] = {}
    for _, names in sorted(scans.items(), key=lambda item: (-len(item[1]), item[0])):
        if len(names) > fair:
            for name in names:
                owners[name] = shard_of(name, shards)
                load[owners[name]] += 1
            continue
        least = load.index(min(load))
        owners.update(dict.fromkeys(names, least))
        load[least] += len(names)
    return owners


def _hand_off_parts(due: list[tuple[MonitorSpec, float]]) -> list[list[tuple[MonitorSpec, float]]]:
    """``due`` (sorted by slot) cut into parts of at least HANDOFF_SLOTS pairs, at changes of slot only."""
    parts: list[list[tuple[MonitorSpec, float]]] = []
    for pair in due:
        if not parts or (len(parts[-1]) >= HANDOFF_SLOTS and parts[-1][-1][1] != pair[1]):
            parts.append([])
        parts[-1].append(pair)
    return parts


def plan_slots(spec: MonitorSpec, last: float | None, now: float, started: float) -> tuple[list[float], list[float], str]:
    """(slots to evaluate, slots to skip, why) for ``spec`` whose last applied slot is ``last``."""
    if last is None:
        return [spec.slot_at(now)], [], ""
    missed = spec.slots_between(last, now)
    bound = now - spec.catch_up
    old = [s for s in missed if s < bound]
    due = [s for s in missed if s >= bound]
    if not old:
        return due, [], ""
    reason = ("missed while the scheduler was not running; older than the catch-up bound of "
              f"{spec.catch_up:g} s" if old[-1] < started else
              f"scheduler busy: the slot waited longer than the catch-up bound of {spec.catch_up:g} s")
    return due, old, reason


class _Loop:
    """A daemon thread calling ``step`` every ``tick`` seconds, started with the actor (and again after a restart)."""

    tick: float

    def _start_loop(self) -> None:
        self._stopped = threading.Event()
        self.errors: deque[str] = deque(maxlen=20)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive one bad step; the error is kept
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stopped.wait(max(0.0, self.tick - (time.monotonic() - started)))

    def step(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopped.set()

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _HandOff:
    """One part of a step's outcomes and skips, sent to the shards' processors; awaited by its settling thread."""

    names: list[str]  # the monitors taken off the queue that are due again once it is applied
    outcomes: list
    skips: list
    parts: dict[int, tuple[dict, list, list]]  # per shard: records, outcomes, skips
    sent: dict[int, ray.ObjectRef]
    now: float


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class StateProcessor:
    """Commits the slots of one shard: states, transitions and outbox together."""

    def __init__(self, store: ObjectStore, meta: TableMeta, shard: int) -> None:
        self.log = ShardLog(store, meta, shard)
        self.epoch = self.log.claim()
        self.commits = 0
        self.transitions = 0
        self.seconds = 0.0  # spent applying hand-offs
        self.gc = GcPauses()
        keep_freed_memory()  # a hand-off's arrays are made and freed again at every commit
        # its states are most of its objects, and long-lived: frozen after each hand-off, collections walk only
        # what the next makes, and a full one is made every DEFERRED_COLLECT_SECONDS, after a hand-off
        defer_full_collections()
        self._specs: dict[str, tuple[tuple, MonitorSpec]] = {}  # name -> ((version, updated_at), its spec)

    def apply(self, records: dict[str, dict[str, Any]], outcomes: list,
              skips: list) -> tuple[dict[str, float | None], float]:
        """Apply outcomes and skips; returns the last applied slot of each monitor named in ``records``, and when."""
        started = time.perf_counter()
        specs = {name: self._spec(name, record) for name, record in records.items()}
        for attempt in range(3):
            try:
                made = self.log.apply(specs, outcomes, skips)
                break
            except Fenced:
                raise
            except Exception:  # noqa: BLE001 - reload what is committed and try again
                if attempt == 2:
                    raise
                self.log.load()
        self.commits += 1
        self.transitions += len(made)
        self.seconds += time.perf_counter() - started
        freeze_long_lived()
        return {name: self.log.monitor_state(name).slot for name in records}, time.time()

    def _spec(self, name: str, record: dict[str, Any]) -> MonitorSpec:
        """``record`` as a spec, parsed once per version of the definition (a tenth of a hand-off's time)."""
        key = (record.get("version"), record.get("updated_at"))  # a monitor dropped and made again restarts at 1
        if key == (None, None):  # not from the definitions log: nothing tells one record from the next
            return MonitorSpec.from_record(record)
        kept = self._specs.get(name)
        if kept is None or kept[0] != key:
            kept = self._specs[name] = (key, MonitorSpec.from_record(record))
        return kept[1]

    def stats(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "commits": self.commits, "transitions": self.transitions,
                "apply_seconds": self.seconds, "gc": self.gc.stats(), "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()


@ray.remote(max_restarts=-1, num_cpus=0)
class Scheduler(_Loop):
    """Evaluates the monitors :func:`evaluation_shards` gives it at their slots; each shard's processor commits.

    Schedulers split the monitors by what they read (table and group
    columns), not by the shards their states live in: a scan and the
    partial states of each new segment for it are then computed by one
    scheduler instead of by every one.
    """

    def __init__(self, store: ObjectStore, namespace: str, meta: TableMeta, shard: int, processors: list[Any],
                 tick: float = 0.2, share: bool = True) -> None:
        from engine.monitors.queries import LocalQueries

        self.store, self.namespace, self.meta, self.shard, self.tick = store, namespace, meta, shard, tick
        self.processors = processors
        self.definitions = MonitorLog(store, namespace)
        self.queries = LocalQueries(store, namespace)
        self.evaluator = Evaluator(self.queries.sql, share=share, run_window=self.queries.window)
        self.last: dict[str, float | None] = self._applied()
        self.started = time.time()
        self.specs: dict[str, MonitorSpec] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.defined: set[str] = set()  # every monitor of the definitions last read, this scheduler's or not
        self.specs_at = 0.0
        self.definitions_version: int | None = None
        self.queue: list[tuple[float, str]] = []  # (next due slot, monitor), a heap; stale entries are skipped
        self.due_at: dict[str, float] = {}  # the live entry of each monitor on the queue
        self.lateness: Counter[int] = Counter()  # lateness_bucket -> slots applied since the scheduler started
        self.counts = {"evaluations": 0, "skipped": 0, "handoff_retries": 0, "steps": 0}
        self.waited = 0.0  # seconds steps spent waiting for the previous hand-off to be applied
        self.handing: threading.Thread | None = None  # settling the last step's hand-off while the next evaluates
        self._lock = threading.RLock()  # the queue, last applied slots and counts: the settling thread's too
        self.cpu_started = time.process_time()
        self.gc = GcPauses()
        keep_freed_memory()  # every slot makes and frees arrays of tens of megabytes (windows, rollup histograms)
        self.slow_parts: deque[tuple] = deque(maxlen=50)
        defer_full_collections()  # run when nothing is due (step): a full collection walks every definition
        self._start_loop()

    def _refresh(self, now: float) -> None:
        if now - self.specs_at < DEFINITIONS_REFRESH and self.specs_at:
            return
        self.specs_at = now
        version = self.definitions.version()
        if version == self.definitions_version:
            return  # a listing, not a read of every definition, when nothing changed
        records = self.definitions.definitions()
        owners = evaluation_shards(records, self.meta.partitions)
        mine = {n: r for n, r in records.items() if owners[n] == self.shard}
        # monitors that were defined before but evaluated by another scheduler, which may have applied slots
        adopted = [n for n in mine if n not in self.records and n in self.defined]
        if adopted:
            applied = self._applied({shard_of(n, self.meta.partitions) for n in adopted})
            with self._lock:
                self.last.update(applied)
        self.defined = set(records)
        specs, changed = {}, []
        for name, record in mine.items():
            kept = self.specs.get(name)
            specs[name] = kept if kept is not None and self.records.get(name) == record else MonitorSpec.from_record(record)
            if specs[name] is not kept:
                changed.append(name)
        self.evaluator.register([specs[name] for name in changed])  # parses their SQL: may take a while
        now = time.time()
        with self._lock:
            for name in changed:
                self._schedule(name, specs[name], now)
            self.records, self.specs, self.definitions_version = mine, specs, version

    def _schedule(self, name: str, spec: MonitorSpec, now: float) -> None:
        """Note when ``name`` is next due: the slot after its last applied one, or its first slot."""
        last = self.last.get(name)
        if last is None:
            slot = spec.slot_at(now)
            due = slot if now - slot <= FIRST_SLOT_GRACE else slot + spec.every
        else:
            due = spec.slot_at(last) + spec.every
        self.due_at[name] = due
        heapq.heappush(self.queue, (due, name))

    def _due(self, now: float) -> tuple[list[str], list[tuple[MonitorSpec, float]], list[tuple[str, list[float], str]]]:
        """The monitors whose next slot has come (taken off the queue), their slots to evaluate and to skip."""
        names: list[str] = []
        while self.queue and self.queue[0][0] <= now:
            at, name = heapq.heappop(self.queue)
            if self.due_at.get(name) == at and name in self.specs:
                del self.due_at[name]
                names.append(name)
        due: list[tuple[MonitorSpec, float]] = []
        skips: list[tuple[str, list[float], str]] = []
        for name in names:
            spec, last = self.specs[name], self.last.get(name)
            if last is None:  # its first slot: the one just passed (started on the grid, never a backlog)
                due.append((spec, spec.slot_at(now)))
                continue
            slots, skipped, reason = plan_slots(spec, last, now, self.started)
            due.extend((spec, slot) for slot in slots)
            if skipped:
                skips.append((name, skipped, reason))
        return names, due, skips

    def step(self) -> None:
        """Evaluate what is due and hand it off; the processors commit it while the rest evaluates.

        The due slots are handed off in parts of about HANDOFF_SLOTS, oldest
        first (whole slots: a shape's monitors due together stay together),
        so the first part commits while the next one is evaluated instead of
        after the whole step.  A thread waits for each hand-off and puts its
        monitors back on the queue as soon as it is applied; one hand-off is
        in flight at a time.
        """
        self._refresh(time.time())
        now = time.time()
        with self._lock:
            names, due, skips = self._due(now)
        waiting = set(names)  # taken off the queue and not handed off yet
        try:
            due.sort(key=lambda pair: pair[1])
            due = due[:MAX_SLOTS_PER_STEP]  # the rest wait for the next step; past the bound they become skips
            parts = _hand_off_parts(due) or ([[]] if skips else [])
            last_part = {spec.name: index for index, part in enumerate(parts) for spec, _ in part}
            for index, part in enumerate(parts):
                outcomes = self._evaluate(part) if part else []
                part_skips = skips if index == 0 else []
                touched = {o.monitor for o in outcomes} | {name for name, _, _ in part_skips}
                records = {n: self.records[n] for n in touched}
                # a monitor goes back on the queue once its last slot of the step is applied
                done = [n for n in waiting if last_part.get(n, len(parts) - 1) == index]
                if self.handing is not None:
                    waited = time.perf_counter()
                    self.handing.join()
                    self.waited += time.perf_counter() - waited
                self.handing = self._send(records, outcomes, part_skips, done, now)
                waiting.difference_update(done)
                with self._lock:
                    self.counts["steps"] += 1
        finally:  # whatever happened, each monitor taken off the queue is due again
            self._due_again(list(waiting), now)
        self._idle()

    def _evaluate(self, part: list[tuple[MonitorSpec, float]]) -> list:
        """``part``'s outcomes; a part taking SLOW_PART seconds or more is kept in ``slow_parts``: when, its
        seconds, slots, CPU seconds of this process (all threads: less than its seconds is a process waiting for
        a core), GC pauses, and the seconds of its windows by kind of work (the rest is the evaluator's own)."""
        work, paused = self.queries.work.seconds.copy(), sum(self.gc.seconds)
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = self.evaluator.evaluate(part)
        elapsed = time.perf_counter() - started
        if elapsed >= SLOW_PART:
            spent = self.queries.work.seconds - work
            self.slow_parts.append((time.time(), round(elapsed, 3), len(part), round(time.process_time() - cpu, 3),
                                    round(sum(self.gc.seconds) - paused, 3), round(sum(spent.values()), 3),
                                    {kind: round(s, 3) for kind, s in spent.most_common(6)}))
        return outcomes

    def _idle(self) -> None:
        """Until the next monitor is due: work ahead for the next windows, and a full collection if one is owed."""
        with self._lock:
            free = self.queue[0][0] - time.time() if self.queue else 60.0
        if free > AHEAD_MARGIN:
            self.queries.ahead(time.monotonic() + free - AHEAD_MARGIN)
        with self._lock:
            free = self.queue[0][0] - time.time() if self.queue else 60.0
        if free >= IDLE_COLLECT_SECONDS:
            collect_if_owed()

    def _due_again(self, names: list[str], now: float) -> None:
        with self._lock:
            for name in names:
                if name in self.specs and name not in self.due_at:
                    self._schedule(name, self.specs[name], now)

    def _send(self, records: dict, outcomes: list, skips: list, names: list[str], now: float) -> threading.Thread:
        """Send each shard's outcomes and skips to its processor (every shard's at once), and a thread settling them."""
        shards = self.meta.partitions
        parts: dict[int, tuple[dict, list, list]] = {}
        for name, record in records.items():
            parts.setdefault(shard_of(name, shards), ({}, [], []))[0][name] = record
        for outcome in outcomes:
            parts[shard_of(outcome.monitor, shards)][1].append(outcome)
        for skip in skips:
            parts[shard_of(skip[0], shards)][2].append(skip)
        sent = {shard: self.processors[shard].apply.remote(*part) for shard, part in sorted(parts.items())}
        thread = threading.Thread(target=self._settle, args=(_HandOff(names, outcomes, skips, parts, sent, now),),
                                  daemon=True)
        thread.start()
        return thread

    def _settle(self, handing: _HandOff) -> None:
        """Wait for ``handing`` to be applied; its monitors' last applied slots are then known, and they are due
        again."""
        try:
            committed, last = 0.0, {}
            for shard, part in sorted(handing.parts.items()):
                slots, at = self._apply(shard, *part, sent=handing.sent[shard])
                last.update(slots)
                committed = max(committed, at)
            with self._lock:
                self.last.update(last)
                self.counts["evaluations"] += len(handing.outcomes)
                self.counts["skipped"] += sum(len(s) for _, s, _ in handing.skips)
                self.lateness.update(lateness_bucket(committed - o.slot) for o in handing.outcomes)
        except Exception as exc:  # noqa: BLE001 - kept like a step's error; the monitors are due again all the same
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._due_again(handing.names, handing.now)

    def _applied(self, shards: set[int] | None = None) -> dict[str, float | None]:
        """The last applied slot of every monitor with a state in ``shards`` (all shards if None)."""
        last = {}
        for shard in range(self.meta.partitions) if shards is None else sorted(shards):
            log = ShardLog(self.store, self.meta, shard)
            log.load()
            last.update({n: s.slot for n, s in log.monitor_states().items()})
        return last

    def _apply(self, shard: int, records: dict, outcomes: list, skips: list,
               sent: ray.ObjectRef | None = None) -> tuple[dict[str, float | None], float]:
        """The processor's answer to a hand-off (sent again until it answers): last applied slots, commit time."""
        delay = 0.2
        while True:
            try:
                if sent is None:
                    sent = self.processors[shard].apply.remote(records, outcomes, skips)
                return ray.get(sent, timeout=120)
            except Fenced:
                raise
            except Exception:  # noqa: BLE001 - the processor is restarting: the hand-off is idempotent, retry it
                sent = None
                with self._lock:
                    self.counts["handoff_retries"] += 1
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts, lateness = dict(self.counts), dict(self.lateness)
        return {**counts, "lateness": lateness, "queries": self.evaluator.stats.queries,
                "shared_queries": self.evaluator.stats.shared_queries,
                "evaluation_seconds": self.evaluator.stats.seconds, "handoff_wait_seconds": self.waited,
                "cache_hits": self.queries.hits, "cache_misses": self.queries.misses,
                "block_hits": self.queries.block_hits, "block_misses": self.queries.block_misses,
                "cache": self.queries.cache.stats(),
                "cpu_seconds": time.process_time() - self.cpu_started, "errors": list(self.errors),
                "work_seconds": dict(self.queries.work.seconds), "work_counts": dict(self.queries.work.counts),
                "slow_windows": list(self.queries.slow),
                "slow_parts": list(self.slow_parts), "gc": self.gc.stats(),
                "monitors": len(self.specs), "pid": os.getpid()}


@ray.remote(max_restarts=-1, num_cpus=0)
class NotifierActor(_Loop):
    """Delivers the outbox of one shard (see :mod:`engine.monitors.notify`)."""

    def __init__(self, store: ObjectStore, namespace: str, meta: TableMeta, shard: int,
                 tick: float = 0.2, timeout: float = 5.0) -> None:
        from engine.monitors.notify import Notifier, Sinks

        self.tick = tick
        self.definitions = MonitorLog(store, namespace)
        self.records: dict[str, dict[str, Any]] = {}
        self.version: int | None = None
        self.specs: dict[str, MonitorSpec] = {}  # parsed on demand: only monitors with something to deliver
        self.specs_at = 0.0
        self.notifier = Notifier(store, namespace, meta.path, shard, Sinks(timeout))
        self._start_loop()

    def step(self) -> None:
        now = time.time()
        if now - self.specs_at >= DEFINITIONS_REFRESH:
            self.specs_at = now
            version = self.definitions.version()
            if version != self.version:  # a listing, not a read of every definition, when nothing changed
                self.records, self.version, self.specs = self.definitions.definitions(), version, {}

        def mutes(name: str) -> tuple:
            spec = self._spec(name)
            return spec.mutes if spec else ()

        def renotify(name: str) -> float | None:
            spec = self._spec(name)
            return spec.renotify if spec else None

        self.notifier.step(mutes, renotify)

    def _spec(self, name: str) -> MonitorSpec | None:
        spec = self.specs.get(name)
        if spec is None and name in self.records:
            spec = self.specs[name] = MonitorSpec.from_record(self.records[name])
        return spec

    def stats(self) -> dict[str, Any]:
        s = self.notifier.stats
        return {"delivered": s.delivered, "renotified": s.renotified, "failures": s.failures,
                "latencies": list(s.latencies[-LATENESS_SAMPLES:]), "watermark": self.notifier.watermark,
                "errors": list(self.errors), "pid": os.getpid()}


def call(method: Any, timeout: float = 60.0) -> Any:
    """``method.remote()``'s result, waiting through a restart of its actor (a crashed actor comes back)."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get(method.remote(), timeout=max(1.0, deadline - time.monotonic()))
        except (ActorUnavailableError, RayActorError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class MonitorService:
    """Starts and keeps the monitor actors of every shard of a namespace."""

    def __init__(self, store: ObjectStore, namespace: str, meta: TableMeta, tick: float = 0.2,
                 share: bool = True, timeout: float = 5.0) -> None:
        self.store, self.namespace, self.meta = store, namespace, meta
        self.tick, self.share, self.timeout = tick, share, timeout
        self.processors: list[Any] = []
        self.schedulers: list[Any] = []
        self.notifiers: list[Any] = []

    def start(self) -> MonitorService:
        shards = range(self.meta.partitions)
        self.processors = [StateProcessor.remote(self.store, self.meta, shard) for shard in shards]
        for shard in shards:
            self.schedulers.append(Scheduler.remote(self.store, self.namespace, self.meta, shard, self.processors,
                                                    tick=self.tick, share=self.share))
            self.notifiers.append(NotifierActor.remote(self.store, self.namespace, self.meta, shard,
                                                       tick=self.tick, timeout=self.timeout))
        for actor in self.actors:
            call(actor.pid)
        return self

    @property
    def actors(self) -> list[Any]:
        return self.processors + self.schedulers + self.notifiers

    def stats(self, timeout: float = 60.0) -> dict[str, Any]:
        """What each actor did since it (last) started."""
        return {
            "schedulers": [call(s.stats, timeout) for s in self.schedulers],
            "processors": [call(p.stats, timeout) for p in self.processors],
            "notifiers": [call(n.stats, timeout) for n in self.notifiers],
        }

    def run(self, duration: float | None = None, report: Any = None) -> dict[str, Any]:
        """Run in the foreground until ``duration`` seconds pass (None: until interrupted); returns the stats."""
        self.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
                if report is not None:
                    report(self)
        except KeyboardInterrupt:
            pass
        try:
            return self.stats()
        finally:
            self.stop()

    def stop(self) -> None:
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.processors, self.schedulers, self.notifiers = [], [], []
