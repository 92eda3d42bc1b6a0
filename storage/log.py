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

Once ``checkpoint_interval`` versions have passed since the last checkpoint
the committer also writes ``<N:020d>.checkpoint.json`` with the whole state,
so opening a partition reads one listing, one checkpoint and at most
``checkpoint_interval`` commits (a crash before a checkpoint only moves it to
the next commit).  A log whose commits each touch a small part of a large
state (a monitor shard: a few hundred of its monitors' states per commit)
opens with ``checkpoint_by_size``: it also waits until its commits since the
last checkpoint add up to that checkpoint's bytes, so writing the whole
state costs at most what the commits do, and opening it reads about two
states.  A checkpoint folds the offsets of finished sources (a
file read to its end) into a compact set of digests (``storage.finished``),
so the offsets a partition carries do not grow with the files it has taken.

Every record carries a unique ``id``; a state remembers the ids of its recent
commits, so a commit whose put landed but was reported as failed (a lost
reply, retried into a 412) is recognised after the reload instead of being
written a second time.  A batch id is never committed twice.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import pyarrow as pa

from storage.errors import CommitConflict, Fenced, PetrelError, SchemaConflict, SegmentMissing
from storage.finished import FinishedSources
from storage.objectstore import ObjectStore
from storage.schema import schema_changes, schema_from_json, schema_to_json, unify
from storage.segment import SegmentEntry

CHECKPOINT_INTERVAL = 50
MAX_RECENT_BATCH_IDS = 100_000
MAX_RECENT_COMMIT_IDS = 1_000
# A removed segment's tombstone is kept this long (and never dropped earlier),
# so vacuum knows when it was removed; vacuum refuses a longer grace period.
TOMBSTONE_SECONDS = 7 * 86400
# Vacuum deletes an upload no commit refers to once it is this old; a commit
# re-uploads (under a new name) any segment it adds that is half that old, so
# an upload vacuum may already consider an orphan is never committed.
ORPHAN_MIN_SECONDS = 600.0
STALE_UPLOAD_SECONDS = ORPHAN_MIN_SECONDS / 2
_COMMIT_SUFFIX = ".json"
_CHECKPOINT_SUFFIX = ".checkpoint.json"

logger = logging.getLogger(__name__)


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
    commit_ids: dict[str, int] = field(default_factory=dict)
    # sources read to their end, folded out of ``offsets`` by a checkpoint
    finished: FinishedSources = field(default_factory=FinishedSources)
    # bookkeeping of the reader, not of the log: the version of the checkpoint
    # this state was read from or last wrote (-1: none), never serialized
    last_checkpoint: int = field(default=-1, compare=False)

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
            "commit_ids": list(self.commit_ids.items()),
            "finished": self.finished.to_json(),
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
            commit_ids={k: int(v) for k, v in record.get("commit_ids") or ()},  # older checkpoints have none
            finished=FinishedSources.from_json(record.get("finished")),
        )

    def folded(self) -> PartitionState:
        """This state with the offsets of finished sources folded into ``finished`` and null offsets left out
        (what a checkpoint keeps).

        A null offset is one cleared (a dropped monitor, a list of group keys
        no state names): read, it is the same as no offset at all.
        """
        finished, offsets = self.finished.fold(self.offsets)
        if any(value is None for value in offsets.values()):
            offsets = {key: value for key, value in offsets.items() if value is not None}
        elif finished is self.finished:
            return self
        return replace(self, finished=finished, offsets=offsets)


def _apply(
    state: PartitionState, version: int, record: dict[str, Any], added: list[SegmentEntry] | None = None
) -> PartitionState:
    """The state after the commit ``record`` at ``version``; ``added``: its entries, if the caller has them."""
    segments = dict(state.segments)
    tombstones = dict(state.tombstones)
    when = float(record.get("timestamp") or 0.0)
    for segment_id in record.get("removed", ()):
        gone = segments.pop(segment_id, None)
        if gone is not None:
            tombstones[gone.path] = when
    if added is None:
        added = [SegmentEntry.from_json(s) for s in record.get("added", ())]
    for entry in added:
        segments[entry.id] = entry
    # by age only: a tombstone dropped early would let vacuum fall back to the
    # file's mtime and delete a segment inside its grace period
    expired = when - TOMBSTONE_SECONDS
    if tombstones and min(tombstones.values()) < expired:
        tombstones = {p: t for p, t in tombstones.items() if t >= expired}
    batch_ids = state.batch_ids
    if record.get("batch_ids"):
        batch_ids = dict(batch_ids)
        for batch_id in record["batch_ids"]:
            batch_ids[batch_id] = version
        if len(batch_ids) > MAX_RECENT_BATCH_IDS:
            batch_ids = dict(list(batch_ids.items())[-MAX_RECENT_BATCH_IDS:])
    commit_ids = state.commit_ids
    if record.get("id"):
        commit_ids = {**commit_ids, record["id"]: version}
        if len(commit_ids) > MAX_RECENT_COMMIT_IDS:
            commit_ids = dict(list(commit_ids.items())[-MAX_RECENT_COMMIT_IDS:])
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
        commit_ids=commit_ids,
        finished=state.finished,
        last_checkpoint=state.last_checkpoint,
    )


_HEAD_BYTES = 256  # a commit record's first keys (its id, kind, epoch, whether it adds segments) lie within these


def _head(data: bytes) -> bytes:
    """The first bytes of a commit record, where json.dumps put the keys :meth:`PartitionLog.commit` writes first
    (``id``, ``kind``, ``epoch``, then ``added``) before any value a user chose."""
    return data[:_HEAD_BYTES]


def adds_nothing(data: bytes) -> bool:
    """Whether the commit record ``data`` (its bytes) adds no segment, told from its first bytes without parsing
    the rest (a monitor shard's records carry the states of hundreds of monitors)."""
    return b'"added": [],' in _head(data)


def _last_commit_id(state: PartitionState) -> str | None:
    """The id of the record at ``state.version``, if it had one and the state still remembers it."""
    if not state.commit_ids:
        return None
    last_id = next(reversed(state.commit_ids))
    return last_id if state.commit_ids[last_id] == state.version else None


class PartitionLog:
    """Reads and advances the commit log of one partition of one table."""

    def __init__(
        self,
        store: ObjectStore,
        table_path: str,
        partition: int,
        checkpoint_interval: int = CHECKPOINT_INTERVAL,
        checkpoint_by_size: bool = False,
    ) -> None:
        self.store = store
        self.table_path = table_path
        self.partition = partition
        self.checkpoint_interval = checkpoint_interval
        self.prefix = f"{table_path}/_log/{partition}"
        self.checkpoint_by_size = checkpoint_by_size
        self._checkpoint_bytes: int | None = None  # of the last checkpoint this writer wrote
        self._bytes_since = 0  # of the commits it wrote since

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
            record = json.loads(self.store.get(self.checkpoint_path(base[-1])))
            state = replace(PartitionState.from_json(record), last_checkpoint=base[-1])
        else:
            state = PartitionState(partition=self.partition)
        needed = [v for v in commits if state.version < v <= target]
        if needed and needed[0] != state.version + 1:
            raise PetrelError(
                f"partition {self.partition} of {self.table_path}: version {target} is no longer readable "
                f"(commits before {needed[0]} were vacuumed); read a newer version"
            )
        if needed and needed[-1] - needed[0] + 1 != len(needed):  # a commit in the middle is missing
            missing = next(v for v, w in zip(range(needed[0], target + 1), needed) if v != w)
            raise PetrelError(
                f"partition {self.partition} of {self.table_path}: commit {self.commit_path(missing)} is missing "
                f"between versions {needed[0]} and {needed[-1]}; the log is damaged (restore the file from a "
                "backup), and replaying past it would silently lose what it committed"
            )
        for v in needed:
            state = _apply(state, v, self.record(v))
        return state

    def load_after(self, state: PartitionState) -> PartitionState:
        """The partition as of its latest version, reading only the commits after ``state.version``.

        No listing: it reads version ``state.version + 1``, then the next,
        until one is absent.  A reader whose next commit was already
        vacuumed gets ``state`` back unchanged; it must ``load()`` afresh.
        """
        version = state.version + 1
        while True:
            try:
                data = self.store.get(self.commit_path(version))
            except FileNotFoundError:
                return state
            state = _apply(state, version, json.loads(data))
            version += 1

    def record_bytes(self, version: int) -> bytes:
        """The commit record at ``version`` as stored (JSON)."""
        return self.store.get(self.commit_path(version))

    def record(self, version: int, data: bytes | None = None) -> dict[str, Any]:
        """The commit record at ``version``: what it added and removed, its batch ids, schema changes.

        ``data``: the record's bytes, if the caller read them already (:meth:`record_bytes`)."""
        if data is None:
            data = self.record_bytes(version)
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise PetrelError(
                f"commit {self.commit_path(version)} is not valid JSON ({exc}); the log is damaged"
            ) from None

    def claim(self) -> PartitionState:
        """Become the partition's owner under a new, higher epoch; returns that state."""
        record: dict[str, Any] = {"kind": "claim", "id": uuid.uuid4().hex}
        state = self.load()
        while True:
            record["epoch"] = state.epoch + 1
            record["timestamp"] = time.time()
            try:
                return self._write(state, record, [])  # a claim adds no segment
            except CommitConflict:
                state = self.load()
                if record["id"] in state.commit_ids:
                    return state

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

        Raises Fenced if a higher epoch claimed the partition; CommitConflict if
        a segment it removes is gone or one of its batch ids is already
        committed; SchemaConflict if an added segment's schema cannot be
        unified with the partition's.  All of them leave the log untouched.
        A put that landed but was reported as failed is found again and
        returned as the success it was, never written twice.
        """
        entries = list(added)
        record: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "epoch": epoch,
            "added": [e.to_json() for e in entries],
            "removed": list(removed),
            "offsets": dict(offsets or {}),
            "batch_ids": list(batch_ids),
        }
        state = base
        for _ in range(max_attempts):
            fresh = self._fresh_uploads(entries)
            if fresh is not entries:
                entries = fresh
                record["added"] = [e.to_json() for e in entries]
            record["schema_changes"] = self._check(state, epoch, record, entries)
            record["timestamp"] = time.time()
            try:
                return self._write(state, record, entries)
            except CommitConflict:
                state = self.load()
                if record["id"] in state.commit_ids:  # our put landed; its reply was lost
                    return state
            except Exception:
                landed = self._landed(record["id"])
                if landed is not None:
                    return landed
                raise
        raise CommitConflict(
            f"partition {self.partition} of {self.table_path}: gave up after {max_attempts} conflicting commits"
        )

    def _fresh_uploads(self, entries: list[SegmentEntry]) -> list[SegmentEntry]:
        """``entries``, with each upload older than STALE_UPLOAD_SECONDS copied to a new name first.

        Vacuum deletes uploads no commit refers to once they are
        ORPHAN_MIN_SECONDS old; a slow writer (a long rebase, a paused
        process) could otherwise commit a segment vacuum has just deleted.
        SegmentMissing if the upload is gone already: write it again.
        """
        now = time.time()
        if all(now - e.created_at <= STALE_UPLOAD_SECONDS for e in entries):
            return entries
        fresh = []
        for entry in entries:
            if now - entry.created_at <= STALE_UPLOAD_SECONDS:
                fresh.append(entry)
                continue
            new_id = uuid.uuid4().hex
            new_path = f"{entry.path.rsplit('/', 1)[0]}/{new_id}.parquet"
            try:
                self.store.copy(f"{self.table_path}/{entry.path}", f"{self.table_path}/{new_path}")
            except FileNotFoundError:
                raise SegmentMissing(
                    f"partition {self.partition} of {self.table_path}: upload {entry.path} was written "
                    f"{now - entry.created_at:.0f}s ago and is gone (vacuum deletes uploads no commit refers to "
                    f"after {ORPHAN_MIN_SECONDS:g}s); nothing was committed — write the segment again"
                ) from None
            fresh.append(replace(entry, id=new_id, path=new_path, created_at=time.time()))
        return fresh

    def _landed(self, record_id: str) -> PartitionState | None:
        """The latest state if the commit ``record_id`` is in it, after a put that failed uncertainly."""
        try:
            state = self.load()
        except Exception:  # the store is still failing: report the original error
            return None
        return state if record_id in state.commit_ids else None

    def _check(
        self, state: PartitionState, epoch: int | None, record: dict[str, Any], added: list[SegmentEntry]
    ) -> list[dict[str, str]]:
        """Refuse a commit that must not land on ``state``; returns its schema changes."""
        where = f"partition {self.partition} of {self.table_path}"
        if epoch is not None and state.epoch > epoch:
            raise Fenced(
                f"{where} is owned by epoch {state.epoch}; "
                f"this writer's epoch {epoch} is stale — retry through the current owner"
            )
        gone = [s for s in record["removed"] if s not in state.segments]
        if gone:
            raise CommitConflict(
                f"{where}: segment(s) {', '.join(gone[:3])} "
                "were already removed by another commit; nothing was changed"
            )
        again = [b for b in record["batch_ids"] if b in state.batch_ids]
        if again:
            raise CommitConflict(
                f"{where}: batch id(s) {', '.join(again[:3])} were already committed "
                f"(version {state.batch_ids[again[0]]}); a batch is stored once — acknowledge it instead of "
                "committing it again"
            )
        if not added:
            return []
        # unify before writing: a record _apply cannot replay would break every later load
        try:
            schema = unify(([state.schema] if state.schema is not None else []) + [e.schema for e in added])
        except SchemaConflict as exc:
            raise SchemaConflict(f"{where}: {exc}; the commit was refused and nothing was changed") from None
        return schema_changes(state.schema, schema)

    def _write(self, state: PartitionState, record: dict[str, Any], added: list[SegmentEntry]) -> PartitionState:
        """Put ``record`` as the next version; ``added``: the entries it adds, as the caller has them."""
        version = state.version + 1
        data = json.dumps(record).encode()
        self.store.put_if_absent(self.commit_path(version), data)
        self._check_follows(state, version)
        new_state = _apply(state, version, record, added)
        self._bytes_since += len(data)
        # the first checkpoint comes at version K (versions 0..K-1 are the
        # tail before it), then K versions after the last one written
        since = version - max(state.last_checkpoint, 0)
        if since >= self.checkpoint_interval and (
                not self.checkpoint_by_size or self._checkpoint_bytes is None
                or self._bytes_since >= self._checkpoint_bytes or since >= 20 * self.checkpoint_interval):
            new_state = self._checkpoint_after_commit(new_state)
        return new_state

    def _check_follows(self, state: PartitionState, version: int) -> None:
        """Raise CommitConflict if the commit just written on ``state`` at ``version`` is a ghost.

        A writer whose base state predates a vacuum fold can put a version
        whose file the fold already deleted: the put succeeds, but readers
        start from the fold's newer checkpoint and never see it.  Vacuum
        deletes folded commits in ascending version order and stops at the
        first one it keeps, so when the commit ``state`` ends with is still
        there (the same record id: another stale writer may have put a ghost
        in its place) no checkpoint can cover ``version`` yet; otherwise the
        checkpoints decide.  A refused ghost is harmless: no reader applies
        it, and vacuum removes it with the other commits below the checkpoint.
        """
        if version > 0:
            last = _last_commit_id(state)
            try:
                data = self.record_bytes(version - 1)
            except FileNotFoundError:
                data = None
            # a record names its id in its first bytes: no need to parse all of it (a monitor shard's are large)
            if data is not None and last is not None and f'"id": "{last}"'.encode() in _head(data):
                return
            previous = self.record(version - 1, data) if data is not None else None
            if previous is not None and previous.get("id") == last:
                return
        _, checkpoints = self.versions()
        if checkpoints and checkpoints[-1] >= version:
            raise CommitConflict(
                f"partition {self.partition} of {self.table_path}: version {version} was folded into "
                f"checkpoint {checkpoints[-1]} by vacuum before this commit was written; reload and retry"
            )

    def _checkpoint_after_commit(self, state: PartitionState) -> PartitionState:
        """Checkpoint ``state``; a failure is logged, never raised: the commit is durable already."""
        try:
            folded = self.write_checkpoint(state)
        except Exception as exc:
            logger.warning("partition %s of %s: checkpoint at version %s failed (%s); the next commit retries it",
                           self.partition, self.table_path, state.version, exc)
            return state
        return replace(folded, last_checkpoint=state.version)

    def write_checkpoint(self, state: PartitionState) -> PartitionState:
        """Record the whole state at its version, finished sources folded (a lost race to write it is harmless).

        Returns the folded state: the same partition as ``state``, as every
        reader of the checkpoint will see it.
        """
        folded = state.folded()
        data = json.dumps(folded.to_json()).encode()
        try:
            self.store.put_if_absent(self.checkpoint_path(state.version), data)
        except CommitConflict:
            pass
        self._checkpoint_bytes, self._bytes_since = len(data), 0
        return folded
