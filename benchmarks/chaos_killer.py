"""The killer of the chaos run: SIGKILLs of owners, query workers, compactors and writers, on a schedule.

:class:`Killer` is a part of :class:`benchmarks.chaos_run._Run` (it uses the
run's lanes, writers, query engine and records); it lives here so the run
reads in one sitting.  Kill ``n`` is due ``n * seconds / kills`` after the
start; a victim is chosen only among those back up since their last kill,
and each recovery is timed in a thread of its own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import ray

if TYPE_CHECKING:
    from benchmarks.chaos_run import _Lane


class Killer:
    """The kill schedule, the choice of victims, the kills and the timing of their recoveries."""

    def killer(self) -> None:
        """Kill ``kills`` victims on a schedule of one every ``seconds / kills``; each recovery is timed apart.

        Kill ``n`` is due ``n * interval`` after the start.  A victim that is
        not up (restarting after the last kill, or already dead) is skipped
        and another is tried shortly after (a victim is "up" again once its
        recovery was seen: the owner answers, the writer was acknowledged), and
        a killer behind its schedule (slow status calls on a loaded machine)
        catches up at up to four times the rate, so the kills asked for are
        delivered in about the time asked for without emptying the run of victims.
        """
        interval = self.config.seconds / max(self.config.kills, 1)
        begun = last = time.monotonic()
        while not self.done.is_set() and sum(self.kills.values()) < self.config.kills:
            # on schedule, but a killer behind it catches up no faster than four times the rate
            due = max(begun + sum(self.kills.values()) * interval, last + interval / 4)
            if self.done.wait(max(0.0, due - time.monotonic())):
                return
            kinds = [k for k in self.config.kill_weights if self._has_victim(k)]
            recover = None
            if kinds:
                kind = self.rng.choices(kinds, [self.config.kill_weights[k] for k in kinds])[0]
                try:
                    recover = getattr(self, f"_kill_{kind}")()
                except Exception as exc:  # a victim that was restarting already: the next one
                    self.kill_skips[f"{kind}: {type(exc).__name__}"] += 1
                    recover = None
                if recover is not None:
                    last = time.monotonic()
                    threading.Thread(target=self._time_recovery, args=(kind, recover), daemon=True).start()
            if recover is None:
                self.done.wait(0.25)  # no victim was up: try another soon

    def _has_victim(self, kind: str) -> bool:
        if kind == "owner":
            return bool(self._owners_up())
        if kind == "writer":
            return bool(self._writers_up())
        if kind == "compactor":
            return bool(self._compactors_up())
        if kind == "query_worker":
            return self.last_query_ok > 0 and bool(self._query_workers_up())
        return True

    def _owners_up(self) -> list[tuple[_Lane, int]]:
        """The owners not killed since they last came back (a restarting one is no victim)."""
        return [(lane, p) for lane in self.lanes for p in range(self.config.partitions)
                if (lane.name, p) not in self.down]

    def _writers_up(self) -> list[int]:
        """The writers acknowledged since their last kill (one still coming back is no victim)."""
        return [w for w in range(self.config.writers) if ("writer", w) not in self.down]

    def _compactors_up(self) -> list[_Lane]:
        return [lane for lane in self.lanes if lane.compactor is not None and id(lane.compactor) not in self.down]

    def _query_workers_up(self) -> list[Any]:
        return [w for w in self.queries_engine.pool.workers.values() if id(w) not in self.down]

    def _time_recovery(self, kind: str, recover: Callable[[], float | None]) -> None:
        seconds = recover()
        if seconds is not None:
            with self.lock:
                self.recoveries[kind].append(seconds)

    def _sigkill(self, kind: str, pid: int, ray_worker: bool) -> None:
        if pid == os.getpid():
            raise RuntimeError("refusing to kill the harness itself")
        if ray_worker:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if not handle.read().startswith(b"ray::"):
                    raise RuntimeError(f"pid {pid} is not a Ray worker; not killing it")
        os.kill(pid, signal.SIGKILL)
        self.kills[kind] += 1

    def _kill_owner(self) -> Callable[[], float | None] | None:
        lane, partition = self.rng.choice(self._owners_up())
        handle = lane.owner(partition)
        if handle is None:
            return None
        pid = ray.get(handle.status.remote(), timeout=30)["pid"]
        self._sigkill("owner", pid, ray_worker=True)
        killed = time.monotonic()
        self.down.add((lane.name, partition))

        def recovered() -> float | None:  # Ray restarts it; the new one claims the partition
            try:
                while not self.done.is_set():
                    try:
                        if ray.get(handle.status.remote(), timeout=30)["pid"] != pid:
                            return time.monotonic() - killed
                    except Exception:
                        self.done.wait(0.1)
                return None
            finally:
                self.down.discard((lane.name, partition))
        return recovered

    def _kill_query_worker(self) -> Callable[[], float | None] | None:
        handle = self.rng.choice(self._query_workers_up())
        pid = ray.get(handle.ping.remote(), timeout=30)["pid"]
        self._sigkill("query_worker", pid, ray_worker=True)
        self.down.add(id(handle))  # for good: the pool starts a new actor in its place
        self.killed_actors.append(handle)  # kept, so its id is never another actor's
        killed = time.time()
        return lambda: self._wait_for(lambda: self.last_query_ok, killed)  # the pool replaces a dead worker

    def _kill_compactor(self) -> Callable[[], float | None] | None:
        lane = self.rng.choice(self._compactors_up())
        pid = ray.get(lane.compactor.__ray_call__.remote(lambda actor: os.getpid()), timeout=30)
        self._sigkill("compactor", pid, ray_worker=True)
        self.down.add(id(lane.compactor))  # for good: maintenance starts a new actor in its place
        self.killed_actors.append(lane.compactor)
        killed = time.time()
        return lambda: self._wait_for(lambda: self.last_compaction_ok, killed)

    def _wait_for(self, last_ok: Callable[[], float], since: float) -> float | None:
        while not self.done.is_set():
            if last_ok() > since:
                return last_ok() - since
            self.done.wait(0.1)
        return None

    def _kill_writer(self) -> Callable[[], float | None] | None:
        writer = self.rng.choice(self._writers_up())
        proc = self.procs[writer]
        if proc.poll() is not None:
            return None
        self._sigkill("writer", proc.pid, ray_worker=False)
        proc.wait()
        killed = time.time()
        self.down.add(("writer", writer))
        self.start_writer(writer)  # a client that crashed comes back and resends its batch in flight
        prefix = f"w{writer}-"

        def recovered() -> float | None:
            try:
                while not self.done.is_set():
                    later = [t for b, t in self.acks().items() if t > killed and b.startswith(prefix)]
                    if later:
                        return min(later) - killed
                    self.done.wait(0.3)
                return None
            finally:
                self.down.discard(("writer", writer))
        return recovered
