"""Faults for the chaos run: a failing S3 filesystem, and a local disk that fills up.

:class:`FaultyS3FileSystem` is s3fs itself with one hook: every S3 call it
makes may, by the current :class:`FaultPlan`, be refused the way S3 refuses
(503 SlowDown, 500 InternalError, 409 ConditionalRequestConflict on a
conditional put), time out before it is sent, time out after S3 carried it
out (a lost reply: the object was written, the caller is told it was not),
or be slow.  The call then goes through s3fs's own retries and error
translation, exactly as a real failure would, against the real loopback S3.

:class:`ChaosStore` is an :class:`~storage.objectstore.ObjectStore` whose S3
filesystem is that one.  It pickles like any store (with the plan's folder),
so the ingest owners, compaction actors and query workers it is handed to
fail the same way in their own processes.  The plan lives in a folder that
every process reads (``plan.json``); each process writes what it injected to
``counts/<pid>.json``, which :func:`injected` adds up.

:class:`FullDisk` is a small tmpfs (when running as root) that a warehouse
lives on and that the run fills to the last byte for a while; elsewhere it
is a plain folder whose store (:class:`ChaosStore` on ``file://``) fails
every write with ``ENOSPC`` after writing half of it while the disk is
"full", which is what a full disk does to a write.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from fsspec.asyn import sync_wrapper
from s3fs import S3FileSystem
from s3fs.core import _error_wrapper

from storage.objectstore import ObjectStore

S3_FAULTS = ("slowdown_503", "internal_500", "conflict_409", "timeout_before", "lost_reply", "slow")
_PLAN_CHECK_SECONDS = 0.5


class FaultPlan:
    """What fraction of S3 calls fail, and how; shared by every process through ``<folder>/plan.json``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._rate = 0.0
        self._weights: dict[str, float] = {}
        self._slow = (0.1, 1.0)
        self._methods: set[str] | None = None
        self._first_attempts: int | None = None
        self._faulted: Counter[tuple[str, ...]] = Counter()  # faults taken per request, with first_attempts
        self._checked = 0.0
        self._mtime: tuple[int, int] | None = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(os.getpid() ^ time.time_ns())

    # -- the harness sets it -----------------------------------------------------------
    def set(self, rate: float, weights: dict[str, float] | None = None, slow: tuple[float, float] = (0.1, 1.0),
            methods: tuple[str, ...] | None = None, first_attempts: int | None = None) -> None:
        """Make every process inject faults into ``rate`` of its S3 calls, of kinds drawn by ``weights``.

        ``methods`` limits the faults to those S3 calls (``head_object``,
        ``get_object``...); with ``first_attempts`` only the first that many
        attempts of each request (method, key, range) may fail, so a test
        can fail every request and still see the retries get through.
        """
        os.makedirs(os.path.join(self.folder, "counts"), exist_ok=True)
        default = {k: 4.0 if k == "conflict_409" else 1.0 for k in S3_FAULTS}  # 409s: conditional puts only
        plan = {"rate": rate, "weights": weights or default, "slow": list(slow),
                "methods": list(methods) if methods is not None else None, "first_attempts": first_attempts}
        temporary = os.path.join(self.folder, f".plan-{os.getpid()}")
        with open(temporary, "w") as handle:
            json.dump(plan, handle)
        os.replace(temporary, os.path.join(self.folder, "plan.json"))
        self._checked = 0.0  # this process follows the new plan from its next call

    # -- every process draws from it -------------------------------------------------------
    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _PLAN_CHECK_SECONDS:
            return
        self._checked = now
        path = os.path.join(self.folder, "plan.json")
        try:
            stat = os.stat(path)
            mtime = (stat.st_mtime_ns, stat.st_ino)  # a new plan is a new file (os.replace), even in one tick
            if mtime == self._mtime:
                return
            with open(path) as handle:
                plan = json.load(handle)
        except (FileNotFoundError, json.JSONDecodeError):
            return
        self._mtime = mtime
        self._rate = float(plan["rate"])
        self._weights = {k: float(v) for k, v in plan["weights"].items() if v}
        self._slow = tuple(plan["slow"])
        self._methods = set(plan["methods"]) if plan.get("methods") is not None else None
        self._first_attempts = plan.get("first_attempts")
        self._faulted.clear()

    def disk_is_full(self) -> bool:
        """Whether the emulated disk is full now (see :class:`FullDisk`)."""
        return os.path.exists(os.path.join(self.folder, "disk-full"))

    def draw(self, method: str, kwargs: dict[str, Any]) -> str | None:
        """The fault this call takes (None: it goes through untouched)."""
        with self._lock:
            self._refresh()
            if not self._weights or self._random.random() >= self._rate:
                return None
            if self._methods is not None and method not in self._methods:
                return None
            if self._first_attempts is not None:
                request = (method, str(kwargs.get("Key")), str(kwargs.get("Range")))
                if self._faulted[request] >= self._first_attempts:
                    return None
                self._faulted[request] += 1
            kinds = [k for k in self._weights if k != "conflict_409" or "IfNoneMatch" in kwargs]
            if not kinds:
                return None
            fault = self._random.choices(kinds, [self._weights[k] for k in kinds])[0]
            self._counts[fault] += 1
            self._write_counts()
            return fault

    def slow_seconds(self) -> float:
        return self._random.uniform(*self._slow)

    def count(self, fault: str) -> None:
        with self._lock:
            self._counts[fault] += 1
            self._write_counts()

    def _write_counts(self) -> None:
        folder = os.path.join(self.folder, "counts")
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{os.getpid()}")
        with open(temporary, "w") as handle:
            json.dump(dict(self._counts), handle)
        os.replace(temporary, os.path.join(folder, f"{os.getpid()}.json"))


_PLANS: dict[str, FaultPlan] = {}
_PLANS_LOCK = threading.Lock()


def plan_of(folder: str) -> FaultPlan:
    """This process's reader of the plan in ``folder`` (one per process, shared by its filesystems)."""
    with _PLANS_LOCK:
        plan = _PLANS.get(folder)
        if plan is None:
            plan = _PLANS[folder] = FaultPlan(folder)
        return plan


def injected(folder: str) -> Counter[str]:
    """Every fault injected so far, by kind, over every process that took part."""
    total: Counter[str] = Counter()
    counts = os.path.join(folder, "counts")
    for name in os.listdir(counts) if os.path.isdir(counts) else ():
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(counts, name)) as handle:
                total.update(json.load(handle))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return total


def _error(code: str, status: int, method: str) -> ClientError:
    """The error botocore raises when S3 answers ``status`` with ``code``."""
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, method)


class FaultyS3FileSystem(S3FileSystem):
    """s3fs whose every S3 call may fail by the plan in ``fault_folder`` (see the module docstring)."""

    def __init__(self, *args: Any, fault_folder: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan_of(fault_folder)

    async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        await self.set_session()
        s3 = await self.get_s3(kwargs.get("Bucket"))
        real = getattr(s3, method)
        arguments = self._get_s3_method_kwargs(real, *akwarglist, **kwargs)

        async def call(**given: Any) -> Any:
            fault = self.plan.draw(method, given)
            if fault == "slow":
                await asyncio.sleep(self.plan.slow_seconds())
            elif fault == "slowdown_503":
                raise _error("SlowDown", 503, method)
            elif fault == "internal_500":
                raise _error("InternalError", 500, method)
            elif fault == "conflict_409":
                raise _error("ConditionalRequestConflict", 409, method)
            elif fault == "timeout_before":
                raise ReadTimeoutError(endpoint_url=f"injected timeout before {method}")
            answer = await real(**given)
            if fault == "lost_reply":
                raise ReadTimeoutError(endpoint_url=f"injected timeout after {method} was carried out")
            return answer

        return await _error_wrapper(call, kwargs=arguments, retries=self.retries)

    call_s3 = sync_wrapper(_call_s3)  # s3fs's files (writes, ranged reads) call this one, bound to the base's


class ChaosStore(ObjectStore):
    """A warehouse store whose S3 calls fail by a :class:`FaultPlan`; on local disk, writes fail while it is full."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, faults: str = "",
                 emulate_full: bool = False) -> None:
        super().__init__(url, storage_options)
        self.faults = faults
        self.emulate_full = emulate_full

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "faults": self.faults, "emulate_full": self.emulate_full}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"], state["faults"], state["emulate_full"])

    @property
    def fs(self) -> Any:
        if self._fs is None and self.protocol == "s3":
            options = {"use_listings_cache": False, **self.storage_options, "skip_instance_cache": True}
            self._fs = FaultyS3FileSystem(fault_folder=self.faults, **options)
        return super().fs

    def _local_put(self, full: str, data: bytes, exclusive: bool) -> None:
        if self.emulate_full and plan_of(self.faults).disk_is_full():
            directory = os.path.dirname(full)
            os.makedirs(directory, exist_ok=True)
            partial = os.path.join(directory, f".tmp-{os.getpid()}-{time.time_ns()}")
            with open(partial, "wb") as handle:  # what a full disk leaves: the start of a temporary file
                handle.write(data[: len(data) // 2])
            os.unlink(partial)
            raise OSError(errno.ENOSPC, "No space left on device (emulated full disk)", full)
        super()._local_put(full, data, exclusive)


class FullDisk:
    """A small disk for a local warehouse, which :meth:`fill` makes full and :meth:`free` empties again."""

    def __init__(self, folder: str, size_mb: int, plan: FaultPlan) -> None:
        self.folder = folder
        self.size_mb = size_mb
        self.plan = plan
        self.mounted = False
        self.filler = os.path.join(folder, "filler.bin")
        os.makedirs(folder, exist_ok=True)
        if os.geteuid() == 0:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", folder],
                                  capture_output=True)
            self.mounted = done.returncode == 0
        self.kind = f"tmpfs {size_mb} MB" if self.mounted else "emulated (ENOSPC on write while full)"

    @property
    def emulated(self) -> bool:
        return not self.mounted

    def fill(self) -> int:
        """Write until the disk refuses (ENOSPC); returns the bytes written."""
        if self.emulated:
            with open(os.path.join(self.plan.folder, "disk-full"), "w"):
                pass
            return 0
        written = 0
        block = b"\0" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as handle:
            while True:
                try:
                    written += handle.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    block = block[: len(block) // 2]
                    if len(block) < 512:
                        break
        return written

    def free(self) -> None:
        marker = os.path.join(self.plan.folder, "disk-full") if self.emulated else self.filler
        try:
            os.unlink(marker)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self.free()
        if self.mounted:
            subprocess.run(["umount", "-l", self.folder], capture_output=True)
            self.mounted = False
