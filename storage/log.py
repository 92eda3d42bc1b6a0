"""Per-partition commit logs: the only mutable thing in a table.

Version N of partition P is the object ``_log/<P>/<N:020d>.json``, created
with put-if-absent, so two writers can never both write version N.  A record
says which segments it adds and removes, the source offsets and batch ids it
covers, and the epoch of the writer.

Ownership: a writer claims a partition by committing an epoch one higher than
the last.  A commit from a lower epoch than the latest claimed one is refused
with :class:`~storage.errors.Fenced`.  Maintenance writers (compaction,
retention) commit with ``epoch=None``: they are never fenced, but their
commit conflicts if a segment it removes is already gone.

Every ``checkpoint_interval`` versions the committer also writes
``<N:020d>.checkpoint.json`` with the whole state, so opening a partition
reads one listing, one checkpoint and a short tail of commits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa

from storage.errors import CommitConflict, Fenced, PetrelError
from storage.objectstore import ObjectStore
from storage.schema import schema_from_json, schema_to_json, unify
from storage.segment import SegmentEntry

CHECKPOINT_INTERVAL = 50
MAX_RECENT_BATCH_IDS = 100_000
MAX_TOMBSTONES = 10_000
TOMBSTONE_SECONDS = 7 * 86400
_COMMIT_SUFFIX = ".json"
_CHECKPOINT_SUFFIX = ".checkpoint.json"


@dataclass(frozen=True)
class PartitionState:
    """A partition as of one version: live segments, offsets, recent batch ids."""

    partition: int
    version: int = -1
    epoch: int = 0
    segments: dict[str, SegmentEntry] = field(default_factory=dict)
    offsets: dict[str, Any] = field(default_factory=dict)
    batch_ids: dict[str, int] = field(default_factory=dict)
    tombstones: dict[str, float] = field(default_factory=dict)
    schema: pa.Schema | None = None
    committed_at: float = 0.0

    def has_batch(self, batch_id: str) -> bool:
        return batch_id in self.batch_ids

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "version": self.version,
            "epoch": self.epoch,
            "segments": [s.to_json() for s in self.segments.values()],
            "offsets": self.offsets,
            "batch_ids": list(self.batch_ids.items()),
            "tombstones": self.tombstones,
            "schema": schema_to_json(self.schema) if self.schema is not None else None,
            "committed_at": self.committed_at,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> PartitionState:
        segments = [SegmentEntry.from_json(s) for s in record["segments"]]
        return cls(
            partition=int(record["partition"]),
            version=int(record["version"]),
            epoch=int(record["epoch"]),
            segments={s.id: s for s in segments},
            offsets=dict(record["offsets"]),
            batch_ids={k: int(v) for k, v in record["batch_ids"]},
            tombstones={k: float(v) for k, v in record["tombstones"].items()},
            schema=schema_from_json(record["schema"]) if record.get("schema") else None,
            committed_at=float(record.get("committed_at") or 0.0),
        )


def _apply(state: PartitionState, version: int, record: dict[str, Any]) -> PartitionState:
    """The state after the commit ``record`` at ``version``."""
    segments = dict(state.segments)
    tombstones = dict(state.tombstones)
    when = float(record.get("timestamp") or 0.0)
    for segment_id in record.get("removed", ()):
        gone = segments.pop(segment_id, None)
        if gone is not None:
            tombstones[gone.path] = when
    added = [SegmentEntry.from_json(s) for s in record.get("added", ())]
    for entry in added:
        segments[entry.id] = entry
    if len(tombstones) > MAX_TOMBSTONES or (tombstones and min(tombstones.values()) < when - TOMBSTONE_SECONDS):
        keep = sorted(tombstones.items(), key=lambda kv: kv[1])[-MAX_TOMBSTONES:]
        tombstones = {p: t for p, t in keep if t >= when - TOMBSTONE_SECONDS}
    batch_ids = state.batch_ids
    if record.get("batch_ids"):
        batch_ids = dict(batch_ids)
        for batch_id in record["batch_ids"]:
            batch_ids[batch_id] = version
        if len(batch_ids) > MAX_RECENT_BATCH_IDS:
            batch_ids = dict(list(batch_ids.items())[-MAX_RECENT_BATCH_IDS:])
    offsets = state.offsets
    if record.get("offsets"):
        offsets = {**offsets, **record["offsets"]}
    schema = state.schema
    if added:
        schema = unify(([schema] if schema is not None else []) + [e.schema for e in added])
    epoch = state.epoch if record.get("epoch") is None or record.get("kind") != "claim" else int(record["epoch"])
    return PartitionState(
        partition=state.partition,
        version=version,
        epoch=epoch,
        segments=segments,
        offsets=offsets,
        batch_ids=batch_ids,
        tombstones=tombstones,
        schema=schema,
        committed_at=when,
    )


class PartitionLog:
    """Reads and advances the commit log of one partition of one table."""

    def __init__(
        self,
        store: ObjectStore,
        table_path: str,
        partition: int,
        checkpoint_interval: int = CHECKPOINT_INTERVAL,
    ) -> None:
        self.store = store
        self.table_path = table_path
        self.partition = partition
        self.checkpoint_interval = checkpoint_interval
        self.prefix = f"{table_path}/_log/{partition}"

    def commit_path(self, version: int) -> str:
        return f"{self.prefix}/{version:020d}{_COMMIT_SUFFIX}"

    def checkpoint_path(self, version: int) -> str:
        return f"{self.prefix}/{version:020d}{_CHECKPOINT_SUFFIX}"

    def versions(self) -> tuple[list[int], list[int]]:
        """(commit versions, checkpoint versions) present in the log, ascending."""
        commits, checkpoints = [], []
        for info in self.store.list(self.prefix):
            name = info.path.rsplit("/", 1)[-1]
            if name.endswith(_CHECKPOINT_SUFFIX):
                checkpoints.append(int(name[: -len(_CHECKPOINT_SUFFIX)]))
            elif name.endswith(_COMMIT_SUFFIX):
                commits.append(int(name[: -len(_COMMIT_SUFFIX)]))
        return sorted(commits), sorted(checkpoints)

    def load(self, version: int | None = None) -> PartitionState:
        """The partition as of ``version`` (default: the latest)."""
        for attempt in range(3):
            try:
                return self._load(version)
            except FileNotFoundError:  # vacuum removed a file between listing and reading
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _load(self, version: int | None) -> PartitionState:
        commits, checkpoints = self.versions()
        latest = max(commits[-1] if commits else -1, checkpoints[-1] if checkpoints else -1)
        target = latest if version is None else version
        if target > latest:
            raise PetrelError(
                f"partition {self.partition} of {self.table_path} has no version {target}; the latest is {latest}"
            )
        base = [v for v in checkpoints if v <= target]
        if base:
            state = PartitionState.from_json(json.loads(self.store.get(self.checkpoint_path(base[-1]))))
        else:
            state = PartitionState(partition=self.partition)
        needed = [v for v in commits if state.version < v <= target]
        if needed and needed[0] != state.version + 1:
            raise PetrelError(
                f"partition {self.partition} of {self.table_path}: version {target} is no longer readable "
                f"(commits before {needed[0]} were vacuumed); read a newer version"
            )
        for v in needed:
            state = _apply(state, v, self._read_commit(v))
        return state

    def _read_commit(self, version: int) -> dict[str, Any]:
        data = self.store.get(self.commit_path(version))
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise PetrelError(
                f"commit {self.commit_path(version)} is not valid JSON ({exc}); the log is damaged"
            ) from None

    def claim(self) -> PartitionState:
        """Become the partition's owner under a new, higher epoch; returns that state."""
        while True:
            state = self.load()
            record = {"kind": "claim", "epoch": state.epoch + 1, "timestamp": time.time()}
            try:
                return self._write(state, record)
            except CommitConflict:
                continue

    def commit(
        self,
        base: PartitionState,
        *,
        epoch: int | None,
        added: Iterable[SegmentEntry] = (),
        removed: Iterable[str] = (),
        offsets: dict[str, Any] | None = None,
        batch_ids: Iterable[str] = (),
        kind: str = "append",
        max_attempts: int = 1000,
    ) -> PartitionState:
        """Commit on top of ``base``, rebasing over newer commits; returns the new state.

        Raises Fenced if a higher epoch claimed the partition, and CommitConflict
        if a segment it removes is gone (both leave the log untouched).
        """
        record = {
            "kind": kind,
            "epoch": epoch,
            "added": [e.to_json() for e in added],
            "removed": list(removed),
            "offsets": dict(offsets or {}),
            "batch_ids": list(batch_ids),
        }
        state = base
        for _ in range(max_attempts):
            self._check(state, epoch, record["removed"])
            record["timestamp"] = time.time()
            try:
                return self._write(state, record)
            except CommitConflict:
                state = self.load()
        raise CommitConflict(
            f"partition {self.partition} of {self.table_path}: gave up after {max_attempts} conflicting commits"
        )

    def _check(self, state: PartitionState, epoch: int | None, removed: list[str]) -> None:
        if epoch is not None and state.epoch > epoch:
            raise Fenced(
                f"partition {self.partition} of {self.table_path} is owned by epoch {state.epoch}; "
                f"this writer's epoch {epoch} is stale — retry through the current owner"
            )
        gone = [s for s in removed if s not in state.segments]
        if gone:
            raise CommitConflict(
                f"partition {self.partition} of {self.table_path}: segment(s) {', '.join(gone[:3])} "
                "were already removed by another commit; nothing was changed"
            )

    def _write(self, state: PartitionState, record: dict[str, Any]) -> PartitionState:
        version = state.version + 1
        self.store.put_if_absent(self.commit_path(version), json.dumps(record).encode())
        new_state = _apply(state, version, record)
        if version > 0 and version % self.checkpoint_interval == 0:
            self.write_checkpoint(new_state)
        return new_state

    def write_checkpoint(self, state: PartitionState) -> None:
        """Record the whole state at its version (a lost race to write it is harmless)."""
        try:
            self.store.put_if_absent(self.checkpoint_path(state.version), json.dumps(state.to_json()).encode())
        except CommitConflict:
            pass
