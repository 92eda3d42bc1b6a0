"""A warehouse store that crashes, fails or pauses at a named point of an owner's flush, for tests.

Faults are armed as files in a folder, so a test arms them for owners in
other processes (Ray actors) as well as in its own: the first owner that
reaches the point takes the fault (an atomic rename) and acts on it.

Points: ``before_upload`` (a segment is about to be uploaded),
``after_upload`` (segments written, the commit not yet), ``after_commit``
(the commit landed, its writer not yet told: with ``raise`` the store also
fails the reads that would find it, as after a lost reply).  Actions:
``exit`` (the process dies), ``raise`` (an ``OSError``), ``pause`` (until
:meth:`FaultyStore.release`).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from storage.objectstore import ObjectInfo, ObjectStore

FAULT_POINTS = ("before_upload", "after_upload", "after_commit")
ACTIONS = ("exit", "raise", "pause")


class FaultyStore(ObjectStore):
    """An ObjectStore with faults armed through files in ``faults``; see the module docstring."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, faults: str = "") -> None:
        super().__init__(url, storage_options)
        self.faults = faults
        self._failing_reads = 0

    @classmethod
    def over(cls, store: ObjectStore, faults: str) -> FaultyStore:
        """A faulty twin of ``store`` (same root, same options), armed through the folder ``faults``."""
        os.makedirs(faults, exist_ok=True)
        return cls(store.location, store.storage_options, faults)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "faults": self.faults}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"], state["faults"])

    # -- arming, from the test ------------------------------------------------------------
    def arm(self, point: str, action: str = "exit", table: str = "") -> None:
        """Arm one fault; ``table``: only for the owners of the table whose path holds this text."""
        assert point in FAULT_POINTS and action in ACTIONS, (point, action)
        with open(os.path.join(self.faults, f"{point}.{action}.{uuid.uuid4().hex}"), "w") as armed:
            armed.write(table)

    def paused(self) -> bool:
        return any(name.startswith("paused.") for name in os.listdir(self.faults))

    def release(self) -> None:
        with open(os.path.join(self.faults, "release"), "w"):
            pass

    # -- taking them, in the owner ----------------------------------------------------------
    def _fault(self, point: str, path: str) -> None:
        for name in sorted(os.listdir(self.faults)):
            if not name.startswith(point + "."):
                continue
            try:
                with open(os.path.join(self.faults, name)) as armed:
                    if armed.read() not in path:
                        continue
            except FileNotFoundError:
                continue
            taken = os.path.join(self.faults, f"taken.{name}")
            try:
                os.rename(os.path.join(self.faults, name), taken)
            except FileNotFoundError:
                continue  # another owner took it
            action = name.split(".")[1]
            if action == "exit":
                os._exit(1)
            if action == "raise":
                if point == "after_commit":
                    self._failing_reads = 1  # the read that would find the commit landed
                raise OSError(f"injected failure at {point}")
            marker = os.path.join(self.faults, f"paused.{uuid.uuid4().hex}")
            with open(marker, "w"):
                pass
            release = os.path.join(self.faults, "release")
            while not os.path.exists(release):
                time.sleep(0.01)
            os.unlink(release)
            os.unlink(marker)
            return

    def put(self, path: str, data: bytes) -> None:
        if "/data/" in path:
            self._fault("before_upload", path)
        super().put(path, data)

    def put_if_absent(self, path: str, data: bytes) -> None:
        commit = "/_log/" in path and b'"kind": "append"' in data
        if commit:
            self._fault("after_upload", path)
        super().put_if_absent(path, data)
        if commit:
            self._fault("after_commit", path)

    def list(self, prefix: str, recursive: bool = False, include_temporary: bool = False) -> list[ObjectInfo]:
        if self._failing_reads:
            self._failing_reads -= 1
            raise OSError("injected failure: the store does not answer")
        return super().list(prefix, recursive, include_temporary)
