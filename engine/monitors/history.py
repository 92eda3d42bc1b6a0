"""The ``_monitor_transitions`` table: history, committed state and outbox in one commit.

``_monitor_transitions`` is a warehouse table like any other (query it with
``db.sql``).  Its partition *p* is the commit log of monitor shard *p*
(monitors are sharded by a stable hash of their name).  One commit of a
shard carries, atomically:

- a segment with the transitions of the slots it applies (``added``);
- the new state of every monitor it touches, in the commit's ``offsets``
  (``offsets[monitor]``: last slot applied, groups, skips), so the state is
  exactly as new as the history;
- the notification outbox: ``offsets["_outbox"]``, the transitions of this
  commit that must be delivered (the notifier reads it from the record).

A monitor's group keys are most of its state's bytes (a JSON object per
group), and monitors of one shape share them: a state names its keys by a
digest, and each distinct list of keys is kept once, in
``offsets["_keys/<digest>"]``, written with the first commit that uses it and
cleared (set to null) by the commit after which no state uses it.

The state processor owns a shard under an epoch (``PartitionLog.claim``), so
a processor that was replaced (a zombie after a kill) is fenced, and a slot
older than or equal to the monitor's last applied slot changes nothing: the
idempotency key (monitor, slot) is applied once.
"""

from __future__ import annotations

import collections
import hashlib
import time
import zlib
from typing import Any, Iterable

import pyarrow as pa

from engine.monitors.definition import MonitorSpec
from engine.monitors.state import MonitorState, SlotOutcome, Transition, apply_slot, record_skip
from storage.catalog import Catalog, TableMeta
from storage.log import PartitionLog, PartitionState, adds_nothing
from storage.objectstore import ObjectStore
from storage.segment import write_segment

TRANSITIONS_TABLE = "_monitor_transitions"
OUTBOX = "_outbox"
KEYS = "_keys/"  # offsets[KEYS + digest]: a list of group keys that monitor states name by its digest
DEFAULT_SHARDS = 1

TRANSITIONS_SCHEMA = pa.schema([
    ("monitor", pa.string()),
    ("group", pa.string()),
    ("seq", pa.int64()),
    ("slot", pa.timestamp("us", tz="UTC")),
    ("from_state", pa.string()),
    ("to_state", pa.string()),
    ("value", pa.float64()),
    ("notify", pa.bool_()),
    ("muted", pa.bool_()),
    ("reason", pa.string()),
    ("monitor_version", pa.int64()),
    ("key", pa.string()),
    ("committed_at", pa.timestamp("us", tz="UTC")),
])


def shard_of(monitor: str, shards: int) -> int:
    """The shard (partition of ``_monitor_transitions``) a monitor belongs to."""
    return zlib.crc32(monitor.encode()) % shards


def ensure_table(catalog: Catalog, namespace: str, shards: int = DEFAULT_SHARDS) -> TableMeta:
    """The namespace's ``_monitor_transitions`` table, created on first use."""
    return catalog.create_table(namespace, TRANSITIONS_TABLE, schema=TRANSITIONS_SCHEMA, time_column="slot",
                                sort_key=["monitor"], partitions=shards, exist_ok=True)


def transitions_table(transitions: list[Transition], committed_at: float) -> pa.Table:
    """Transitions as rows of ``_monitor_transitions``."""
    micros = lambda seconds: int(round(seconds * 1_000_000))  # noqa: E731
    columns = {
        "monitor": [t.monitor for t in transitions],
        "group": [t.group for t in transitions],
        "seq": [t.seq for t in transitions],
        "slot": [micros(t.slot) for t in transitions],
        "from_state": [t.from_state for t in transitions],
        "to_state": [t.to_state for t in transitions],
        "value": [t.value for t in transitions],
        "notify": [t.notify for t in transitions],
        "muted": [t.muted for t in transitions],
        "reason": [t.reason for t in transitions],
        "monitor_version": [t.version for t in transitions],
        "key": [t.key for t in transitions],
        "committed_at": [micros(committed_at)] * len(transitions),
    }
    return pa.table({name: pa.array(values, TRANSITIONS_SCHEMA.field(name).type) for name, values in columns.items()},
                    schema=TRANSITIONS_SCHEMA)


class ShardLog:
    """Reads and commits the state of one monitor shard."""

    def __init__(self, store: ObjectStore, meta: TableMeta, shard: int) -> None:
        self.store = store
        self.meta = meta
        self.shard = shard
        self.log = PartitionLog(store, meta.path, shard, checkpoint_by_size=True)  # commits touch few of its states
        self.state: PartitionState = PartitionState(partition=shard)
        self.epoch: int | None = None
        # monitor states as committed, parsed once: a slot's apply reads the states its own commits made
        self._parsed: dict[str, MonitorState] = {}
        self._keys: _Keysets | None = None  # the key lists committed, and which states use them (made on use)

    def claim(self) -> int:
        """Own the shard under a new epoch; every earlier owner is fenced from now on."""
        self.state = self.log.claim()
        self._forget()
        self.epoch = self.state.epoch
        return self.epoch

    def load(self) -> PartitionState:
        self.state = self.log.load()
        self._forget()
        return self.state

    def _forget(self) -> None:
        """Drop what was parsed from the state: it is read again from what is committed."""
        self._parsed = {}
        self._keys = None

    def monitor_state(self, monitor: str) -> MonitorState:
        """The committed state of ``monitor`` (treat it as read-only: it is shared with later calls; only
        :meth:`apply` changes it, in place)."""
        parsed = self._parsed.get(monitor)
        if parsed is None:
            parsed = self._parsed[monitor] = MonitorState.from_json(
                _with_keys(self.state.offsets.get(monitor), self.state.offsets))
        return parsed

    def monitor_states(self) -> dict[str, MonitorState]:
        offsets = self.state.offsets
        return {name: MonitorState.from_json(_with_keys(record, offsets)) for name, record in offsets.items()
                if not name.startswith("_") and record}

    def apply(self, specs: dict[str, MonitorSpec], outcomes: Iterable[SlotOutcome],
              skips: Iterable[tuple[str, list[float], str]] = ()) -> list[Transition]:
        """Apply slot outcomes (and record skipped slots) in one commit; returns the transitions committed.

        Outcomes of slots already applied (or of monitors no longer defined)
        change nothing.  Raises Fenced when a newer processor owns the shard.
        The parsed states are moved on in place (copying every group of every
        monitor at every slot was a fifth of a processor's time); if the
        commit fails, they are parsed again from what is committed.
        """
        try:
            return self._apply(specs, outcomes, skips)
        except BaseException:
            self._forget()
            raise

    def _apply(self, specs: dict[str, MonitorSpec], outcomes: Iterable[SlotOutcome],
               skips: Iterable[tuple[str, list[float], str]]) -> list[Transition]:
        states: dict[str, MonitorState] = {}
        transitions: list[Transition] = []
        applied: list[str] = []
        for monitor, slots, reason in skips:  # skipped slots are older than the ones evaluated with them
            state = states.get(monitor) or self.monitor_state(monitor)
            fresh = [s for s in slots if state.slot is None or s > state.slot]
            if fresh:
                states[monitor] = record_skip(state, fresh, reason)
        for outcome in sorted(outcomes, key=lambda o: (o.monitor, o.slot)):
            spec = specs.get(outcome.monitor)
            if spec is None:
                continue
            state = states.get(outcome.monitor) or self.monitor_state(outcome.monitor)
            new, made = apply_slot(spec, state, outcome, in_place=True)
            if new is state:
                continue
            states[outcome.monitor] = new
            transitions.extend(made)
            applied.append(f"{outcome.monitor}@{outcome.slot:.0f}")
        if not states:
            return []
        now = time.time()
        version = self.state.version
        added = []
        if transitions:
            added.append(write_segment(self.store, self.meta.path, transitions_table(transitions, now),
                                       partition=self.shard, time_column="slot", sort_key=("monitor",)))
        if self._keys is None:
            self._keys = _Keysets(self.state.offsets)
        offsets: dict[str, Any] = {name: self._keys.named(name, state.to_json()) for name, state in states.items()}
        offsets.update(self._keys.changes())
        offsets[OUTBOX] = [{**t.to_json(), "sinks": list(specs[t.monitor].notify), "committed_at": now}
                           for t in transitions]
        offsets["_applied"] = applied
        self.state = self.log.commit(self.state, epoch=self.epoch, added=added, offsets=offsets, kind="monitor")
        if self.state.version == version + 1:  # right on top of what this log had read
            self._parsed.update(states)
        else:  # the commit rebased over others: parse what is committed afresh
            self._forget()
        return transitions


class _Keysets:
    """The key lists a shard's states name by digest: which are committed, and how many states use each."""

    def __init__(self, offsets: dict[str, Any]) -> None:
        self.digests: dict[tuple[str, ...], str] = {}  # a committed key list -> its digest
        self.used: collections.Counter[str] = collections.Counter()  # digest -> states naming it
        self.of: dict[str, str] = {}  # monitor -> the digest its committed state names
        self._new: dict[str, list[str]] = {}  # to commit with the next record
        for name, value in offsets.items():
            if name.startswith(KEYS) and value is not None:
                self.digests[tuple(value)] = name[len(KEYS):]
            elif not name.startswith("_") and value:
                keys = (value.get("columns") or {}).get("keys")
                if isinstance(keys, str):
                    self.of[name] = keys
                    self.used[keys] += 1

    def named(self, monitor: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` (a state's JSON, just made: changed in place) with its keys named by digest; a list not
        committed yet is to be."""
        columns = record["columns"]
        keys = tuple(columns["keys"])
        digest = self.digests.get(keys)
        if digest is None:
            digest = hashlib.blake2b("\n".join(keys).encode(), digest_size=12).hexdigest()
            self.digests[keys] = digest
            self._new[digest] = columns["keys"]
        old = self.of.get(monitor)
        if old != digest:
            self.of[monitor] = digest
            self.used[digest] += 1
            if old is not None:
                self.used[old] -= 1
        columns["keys"] = digest
        return record

    def changes(self) -> dict[str, Any]:
        """The offsets to commit: the new key lists, and null for those no state names any more."""
        changes: dict[str, Any] = {KEYS + digest: keys for digest, keys in self._new.items()}
        self._new = {}
        unused = {digest for digest, count in self.used.items() if count <= 0}
        if unused:  # forgotten too: a state naming one of them again commits it again
            for digest in unused:
                del self.used[digest]
                changes[KEYS + digest] = None
            self.digests = {keys: digest for keys, digest in self.digests.items() if digest not in unused}
        return changes


def _with_keys(record: dict[str, Any] | None, offsets: dict[str, Any]) -> dict[str, Any] | None:
    """A committed state with its keys as a list (states name a committed key list by digest)."""
    columns = (record or {}).get("columns")
    if columns is None or not isinstance(columns.get("keys"), str):
        return record
    return {**record, "columns": {**columns, "keys": offsets[KEYS + columns["keys"]]}}


def read_outbox(log: PartitionLog, version: int) -> list[dict[str, Any]]:
    """The outbox of commit ``version`` of a shard (empty for commits that are not the processor's).

    A commit with an outbox has transitions, so it adds their segment: a
    commit adding none (most of them) is passed over from its first bytes,
    without parsing the states it carries.
    """
    data = log.record_bytes(version)
    if adds_nothing(data):
        return []
    record = log.record(version, data)
    if record.get("kind") != "monitor":
        return []
    return list((record.get("offsets") or {}).get(OUTBOX) or [])
