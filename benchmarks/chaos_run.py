"""The chaos run: ingestion from several processes while owners, workers and writers die and S3 and disk fail.

:func:`run_chaos` is the whole experiment; ``benchmarks/chaos.py`` runs it
long and prints the table, the suite runs it short (``tests/engine/ingest/
test_chaos_short.py``).  For ``seconds``:

- ``writers`` processes (:mod:`benchmarks.chaos_writer`) ingest batches with
  ids, retrying each until acknowledged, into a table on the loopback S3
  (through :class:`~benchmarks.chaos_faults.FaultyS3FileSystem`) and one into
  a table on a small local disk; rows are routed by batch id, so a batch is
  one commit;
- a maintenance thread compacts (in a compaction actor), applies retention
  and vacuums both tables (grace ``vacuum_grace`` seconds);
- a query thread runs SQL over the S3 table, every other query on the query
  workers and the rest in the driver, and checks every answer against a
  snapshot: each batch whole and once, and every batch acknowledged before
  the query began present; failed queries are counted by cause;
- a killer SIGKILLs ingest owners, the compaction actor, query workers and
  writer processes, ``kills`` times in all on a schedule (a victim that is
  not back up yet is never chosen), and times each recovery;
- S3 faults come in phases (faults at ``s3_fault_rate``, a storm at four
  times that, calm) and the local disk is filled to its last byte every
  ``disk_full_every`` seconds for ``disk_full_for``.

Then writers stop, faults end, one last compaction and a vacuum with no
grace run, and every row stored is read back: each acknowledged batch
exactly once (lost = doubled = 0), no batch in part, no orphan file left.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable

import ray

from benchmarks.chaos_faults import ChaosStore, FullDisk, injected, plan_of
from benchmarks.chaos_killer import Killer
from benchmarks.chaos_result import ChaosConfig, ChaosResult, orphans, stored
from benchmarks.chaos_writer import ROW_ID_STRIDE
from engine.ingest.client import owner_name
from engine.maintenance.actors import CompactionActor
from engine.query import QueryEngine
from storage.catalog import Catalog
from storage.objectstore import ObjectStore
from storage.retention import apply_retention
from storage.vacuum import vacuum

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = "events"


class _Lane:
    """One warehouse of the run: its store (faulty), a clean store for checking, its table and writers."""

    def __init__(self, name: str, url: str, options: dict[str, Any], faults: str, emulate_full: bool,
                 partitions: int) -> None:
        self.name = name
        self.store = ChaosStore(url, options, faults, emulate_full)
        self.clean = ObjectStore(url, options)
        self.catalog = Catalog(self.clean)
        self.meta = self.catalog.create_table("default", TABLE, partitions=partitions, routing_key="batch",
                                              retention="3650d")
        self.owner_prefix = owner_name(self.store, self.meta)
        self.compactor: Any = None

    def owner(self, partition: int) -> Any:
        try:
            return ray.get_actor(f"{self.owner_prefix}-{partition}", namespace="petrel")
        except ValueError:
            return None


class _Run(Killer):
    """The threads and processes of one run, and what they recorded."""

    def __init__(self, config: ChaosConfig, progress: Callable[[str], None] | None) -> None:
        self.config = config
        self.say = progress or (lambda line: None)
        self.rng = random.Random(config.seed)
        self.tag = uuid.uuid4().hex[:8]
        self.folder = os.path.join(config.workdir, f"chaos-{self.tag}")
        self.faults = os.path.join(self.folder, "faults")
        os.makedirs(os.path.join(self.folder, "writers"), exist_ok=True)
        self.plan = plan_of(self.faults)
        self.plan.set(0.0)
        self.stop_file = os.path.join(self.folder, "stop")
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.result = ChaosResult()
        self.kills: collections.Counter[str] = collections.Counter()
        self.kill_skips: collections.Counter[str] = collections.Counter()  # victims that were not up, by why
        self.down: set[Any] = set()  # victims killed and not back yet: (lane, partition) of owners, ids of actors
        self.killed_actors: list[Any] = []
        self.recoveries: dict[str, list[float]] = collections.defaultdict(list)
        self.queries: collections.Counter[str] = collections.Counter()
        self.query_errors: collections.Counter[str] = collections.Counter()  # failed queries by cause
        self.maintenance_errors: collections.Counter[str] = collections.Counter()  # failed rounds by cause
        self.query_seconds: list[float] = []  # how long each query took, answered or failed
        self.maintenance: collections.Counter[str] = collections.Counter()
        self.last_query_ok = 0.0
        self.last_compaction_ok = 0.0
        self.procs: dict[int, subprocess.Popen] = {}
        self.acked: dict[str, float] = {}  # what acks() has read so far
        self.ack_offsets: dict[str, int] = {}
        self.acks_lock = threading.Lock()
        options = {"endpoint_url": config.endpoint, "key": "testing", "secret": "testing",
                   "client_kwargs": {"region_name": "us-east-1"}}
        self.disk = FullDisk(os.path.join(self.folder, "disk"), config.disk_mb, self.plan)
        self.s3 = _Lane("s3", f"s3://{config.bucket}/chaos-{self.tag}", options, self.faults, False,
                        config.partitions)
        self.local = _Lane("disk", os.path.join(self.disk.folder, "warehouse"), {}, self.faults,
                           self.disk.emulated, config.partitions)
        self.lanes = (self.s3, self.local)
        self.queries_engine = QueryEngine(self.s3.store, Catalog(self.s3.store), "default", timeout=60.0)
        self.base_us = int(time.time() * 1e6) - 3600 * 10**6

    # -- writers ---------------------------------------------------------------------------
    def lane_of(self, writer: int) -> _Lane:
        return self.local if writer == self.config.writers - 1 else self.s3

    def start_writer(self, writer: int) -> None:
        lane = self.lane_of(writer)
        spec = {"address": ray.get_runtime_context().gcs_address, "url": lane.store.url,
                "storage_options": lane.store.storage_options, "faults": self.faults,
                "emulate_full": lane.store.emulate_full, "table": TABLE, "writer": writer, "rows": self.config.rows,
                "folder": os.path.join(self.folder, "writers"), "stop": self.stop_file, "base_us": self.base_us,
                "pause": self.config.pause, "max_age": self.config.max_age, "call_timeout": 60.0}
        env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
        log = open(os.path.join(self.folder, "writers", f"w{writer}.log"), "a")
        self.procs[writer] = subprocess.Popen([sys.executable, "-m", "benchmarks.chaos_writer", json.dumps(spec)],
                                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def acks(self) -> dict[str, float]:
        """Every batch id acknowledged so far, with when (each ack log read on from where it was last read)."""
        folder = os.path.join(self.folder, "writers")
        with self.acks_lock:
            for name in os.listdir(folder):
                if not name.endswith(".acks"):
                    continue
                with open(os.path.join(folder, name), "rb") as handle:
                    handle.seek(self.ack_offsets.get(name, 0))
                    data = handle.read()
                whole = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
                self.ack_offsets[name] = self.ack_offsets.get(name, 0) + len(whole)
                for line in whole.decode().splitlines():
                    parts = line.split()
                    if len(parts) == 2:
                        self.acked[parts[1]] = float(parts[0])
            return dict(self.acked)

    def next_ack_after(self, since: float, lane: _Lane | None = None, timeout: float = 120.0) -> float | None:
        """Seconds from ``since`` until some writer (of ``lane``) was acknowledged again."""
        writers = {f"w{w}-" for w in range(self.config.writers) if lane is None or self.lane_of(w) is lane}
        end = time.time() + timeout
        while time.time() < end and not self.done.is_set():
            later = [t for b, t in self.acks().items() if t > since and any(b.startswith(p) for p in writers)]
            if later:
                return min(later) - since
            self.done.wait(0.2)
        return None

    # -- maintenance and queries ---------------------------------------------------------------
    def maintainer(self) -> None:
        while not self.done.wait(self.config.maintain_every):
            for lane in self.lanes:
                self.maintain(lane, grace=self.config.vacuum_grace)

    def maintain(self, lane: _Lane, grace: float, orphans: float | None = None) -> None:
        try:
            if lane.compactor is None:
                lane.compactor = CompactionActor.remote(lane.store, "default")
            ray.get(lane.compactor.compact.remote(TABLE, full=True), timeout=120)
            self.maintenance["compactions"] += 1
            self.last_compaction_ok = time.time()
        except ray.exceptions.RayActorError:  # killed: a service would start another
            lane.compactor = None
            self.maintenance["compactor_restarts"] += 1
        except Exception as exc:  # an injected fault; the next round tries again
            self.maintenance["compaction_errors"] += 1
            self.maintenance_errors[error_category(f"compaction: {type(exc).__name__}: {exc}")] += 1
        for name, step in (("retention", lambda: apply_retention(lane.store, lane.catalog.table("default", TABLE))),
                           ("vacuums", lambda: vacuum(lane.store, "default", TABLE, older_than=grace,
                                                      orphans_older_than=orphans))):
            try:
                step()
                self.maintenance[name] += 1
            except Exception as exc:
                self.maintenance[f"{name}_errors"] += 1
                self.maintenance_errors[error_category(f"{name}: {type(exc).__name__}: {exc}")] += 1

    def querier(self) -> None:
        rows = self.config.rows
        sql = f"SELECT batch, count(*) AS n, count(DISTINCT id) AS d FROM {TABLE} GROUP BY batch"
        local_bytes = self.queries_engine.local_bytes
        number = 0
        while not self.done.wait(self.config.query_every):
            # every other query runs its stages on the query workers (whose kills it must survive), the
            # rest in the driver as small scans do by default (so answers are checked often on a slow machine)
            number += 1
            self.queries_engine.local_bytes = 0 if number % 2 else local_bytes
            acked_before = {b for b in self.acks() if not b.startswith(f"w{self.config.writers - 1}-")}
            begun = time.monotonic()
            try:
                answer = self.queries_engine.sql(sql)
            except Exception as exc:
                self.query_seconds.append(time.monotonic() - begun)
                self.query_failed(f"{type(exc).__name__}: {exc}")
                continue
            self.query_seconds.append(time.monotonic() - begun)
            self.queries["answered"] += 1
            self.last_query_ok = time.time()
            seen = dict(zip(answer.column("batch").to_pylist(), zip(answer.column("n").to_pylist(),
                                                                     answer.column("d").to_pylist())))
            torn = [b for b, (n, d) in seen.items() if not n == d == rows]
            if torn:
                self.violation(f"a query saw batches in part or doubled: {torn[:5]} {[seen[b] for b in torn[:5]]}")
            missing = acked_before - set(seen)
            if missing:
                self.violation(f"a query missed {len(missing)} batches acknowledged before it began: "
                               f"{sorted(missing)[:5]}")

    def query_failed(self, text: str) -> None:
        """Count a failed query (and why); a violation if a file it was told is missing really is gone."""
        self.queries["failed"] += 1
        self.queries["failed: " + text.split(":", 1)[0]] += 1
        with self.lock:
            self.query_errors[error_category(text)] += 1
        missing = re.search(r"(?:FileNotFoundError|SegmentMissing).*?([\w./-]+\.parquet)", text)
        if missing is None:
            return
        if self.s3.clean.fs.exists(missing.group(1)):
            # s3fs's isfile() answers False when the HEAD fails, so pyarrow reports an injected fault
            # as a missing file: a misleading message, not a lost file
            self.queries["failed_fault_reported_as_missing_file"] += 1
        else:
            self.violation(f"a query lost a file under its snapshot: {text[:300]}")

    def violation(self, text: str) -> None:
        with self.lock:
            self.result.violations.append(text)
        self.say("VIOLATION " + text)

    # -- faults ---------------------------------------------------------------------------------
    def s3_phases(self) -> None:
        rate = self.config.s3_fault_rate
        phases = [("faults", rate), ("storm", min(4 * rate, 0.5)), ("calm", 0.0)]
        index = 0
        while not self.done.is_set():
            name, current = phases[index % len(phases)]
            self.plan.set(current, slow=(0.05, 1.0))
            self.done.wait(self.config.phase_seconds)
            if name == "storm" and not self.done.is_set():
                self.plan.set(0.0)
                recovered = self.next_ack_after(time.time(), self.s3)
                if recovered is not None:
                    self.recoveries["s3_storm"].append(recovered)
            index += 1

    def disk_filler(self) -> None:
        while not self.done.wait(self.config.disk_full_every):
            self.disk.fill()
            self.result.disk_full_periods += 1
            self.done.wait(self.config.disk_full_for)
            self.disk.free()
            recovered = self.next_ack_after(time.time(), self.local)
            if recovered is not None:
                self.recoveries["disk_full"].append(recovered)

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> ChaosResult:
        started = time.monotonic()
        threads = []
        try:
            for writer in range(self.config.writers):
                self.start_writer(writer)
            self.warm_up()
            started = time.monotonic()
            workers = [self.killer, self.maintainer, self.querier, self.s3_phases, self.disk_filler]
            threads = [threading.Thread(target=w, name=f"chaos-{w.__name__}", daemon=True) for w in workers]
            for thread in threads:
                thread.start()
            killer = threads[0]
            deadline = started + self.config.seconds
            while time.monotonic() < deadline or (killer.is_alive() and time.monotonic() < deadline * 2 - started):
                self.done.wait(min(5.0, max(0.5, deadline - time.monotonic())) if time.monotonic() < deadline else 5.0)
                self.report_progress(started)
        finally:
            self.done.set()
            for thread in threads:
                thread.join(timeout=150)
            self.plan.set(0.0)
            self.disk.free()
            self.stop_writers()
        self.result.seconds = time.monotonic() - started
        self.verify()
        return self.result

    def warm_up(self, timeout: float = 300.0) -> None:
        """Wait until every writer has been acknowledged once (the processes and owners have started)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            acked = {b.split("-")[0] for b in self.acks()}
            if len(acked) == self.config.writers:
                break
            self.done.wait(0.5)
        while time.monotonic() < end:  # the query workers started, so the first checked query is not their start
            try:
                self.queries_engine.pool  # started here, not by the first checked query
                self.queries_engine.sql(f"SELECT count(*) AS n FROM {TABLE}")
                break
            except Exception as exc:
                self.say(f"warm-up query failed ({type(exc).__name__}); again")
        self.say(f"warm: {len({b.split('-')[0] for b in self.acks()})} of {self.config.writers} writers "
                 "acknowledged, query workers up; chaos starts")

    def report_progress(self, started: float) -> None:
        faults = sum(injected(self.faults).values())
        self.say(f"{time.monotonic() - started:6.0f}s  kills {sum(self.kills.values()):5d} {dict(self.kills)}  "
                 f"S3 faults {faults:6d}  disk full {self.result.disk_full_periods}  acked {len(self.acks()):6d}  "
                 f"queries {self.queries['answered']}/{self.queries['answered'] + self.queries['failed']}  "
                 f"violations {len(self.result.violations)}")

    def stop_writers(self) -> None:
        with open(self.stop_file, "w"):
            pass
        end = time.monotonic() + 90
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def verify(self) -> None:
        result = self.result
        result.kills = dict(self.kills)
        result.kill_skips = dict(self.kill_skips)
        result.faults = dict(injected(self.faults))
        result.disk = self.disk.kind
        result.queries = dict(self.queries)
        result.query_errors = dict(self.query_errors.most_common())
        if self.query_seconds:
            result.query_seconds = {"n": len(self.query_seconds),
                                    "median_s": round(statistics.median(self.query_seconds), 3),
                                    "max_s": round(max(self.query_seconds), 3)}
        for lane in self.lanes:  # no grace: nothing is writing now
            self.maintain(lane, grace=0.0, orphans=0.0)
        result.maintenance = dict(self.maintenance)
        result.maintenance_errors = dict(self.maintenance_errors.most_common())
        result.recovery = {kind: {"n": len(v), "median_s": round(statistics.median(v), 3),
                                  "max_s": round(max(v), 3)} for kind, v in self.recoveries.items() if v}
        acked = self.acks()
        result.acked_batches = len(acked)
        result.acked_rows = len(acked) * self.config.rows
        folder = os.path.join(self.folder, "writers")
        result.writer_errors = sum(sum(1 for _ in open(os.path.join(folder, n)))
                                   for n in os.listdir(folder) if n.endswith(".errors"))
        ids, batches = [], []
        for lane in self.lanes:
            table = stored(lane.clean, lane.catalog.table("default", TABLE))
            ids.extend(table.column("id").to_pylist())
            batches.extend(table.column("batch").to_pylist())
            result.orphans_after_vacuum += orphans(lane.clean, lane.catalog.table("default", TABLE))
        counts = collections.Counter(ids)
        per_batch = collections.Counter(batches)
        result.stored_rows = len(ids)
        result.distinct_rows = len(counts)
        result.doubled = sum(1 for n in counts.values() if n > 1)
        result.lost = sum(1 for b in acked if per_batch.get(b, 0) < self.config.rows)
        result.partial_batches = sum(1 for n in per_batch.values() if n % self.config.rows)
        result.unacked_stored = sum(1 for b in per_batch if b not in acked)
        for lane in self.lanes:
            engine = QueryEngine(lane.clean, lane.catalog, "default", timeout=120.0, workers=1)
            try:
                answer = engine.sql(f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM {TABLE}")
                result.sql_count += answer.column("n")[0].as_py()
                result.sql_distinct += answer.column("d")[0].as_py()
            finally:
                engine.pool.close()
        expected_ids = {(int(b[1:].split("-")[0]) * ROW_ID_STRIDE + int(b.split("-")[1]) * self.config.rows + j)
                        for b in acked for j in range(self.config.rows)}
        if not expected_ids <= counts.keys():
            self.violation(f"{len(expected_ids - counts.keys())} acknowledged rows are not stored")

    def close(self) -> None:
        """End every actor the run started (owners are detached) and unmount the disk."""
        for lane in self.lanes:
            for partition in range(self.config.partitions):
                handle = lane.owner(partition)
                if handle is not None:
                    ray.kill(handle, no_restart=True)
            if lane.compactor is not None:
                ray.kill(lane.compactor, no_restart=True)
        self.queries_engine.pool.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.disk.close()


def error_category(text: str) -> str:
    """A failed query's error with what varies between occurrences (paths, ids, numbers) taken out."""
    text = re.sub(r"\S+\.parquet", "<segment>", text)
    text = re.sub(r"worker-\d+/[0-9a-f]+", "<worker>", text)
    text = re.sub(r"[0-9a-f]{16,}", "<id>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:160]


def run_chaos(config: ChaosConfig, progress: Callable[[str], None] | None = None) -> ChaosResult:
    """Run the chaos experiment on the Ray this process is connected to; see the module docstring."""
    run = _Run(config, progress)
    try:
        return run.run()
    finally:
        run.close()
