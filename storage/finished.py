"""Finished sources: what a partition's checkpoint keeps of a source once it has been read to its end.

A replayable source that is read once and then never changes (a file, one
version of it) records how far it got under its name in the commit's
``offsets``; while it is being read that record says which chunk comes
next.  Once it says ``"finished": true`` nothing more is needed from it but
"this version of this source is wholly stored", so a checkpoint folds it:
the record leaves ``offsets`` and a 16-byte digest of ``(source, version)``
joins the partition's :class:`FinishedSources`.

So a table that has taken in 100,000 files keeps 1.6 MB of digests per
partition in its checkpoint instead of about 15 MB of records, and loading
a partition creates no object per file: the digests stay one sorted byte
array until something asks whether a file is among them.  A 128-bit digest makes two different files
looking finished by mistake a 1 in 10^28 event at a million files.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

DIGEST_BYTES = 16
_DTYPE = np.dtype(f"S{DIGEST_BYTES}")


def digest(source: str, version: str) -> bytes:
    """The 16-byte digest a finished ``source`` at ``version`` is kept as."""
    return hashlib.blake2b(f"{source}\0{version}".encode(), digest_size=DIGEST_BYTES).digest()


def is_finished(record: Any) -> bool:
    """Whether an offset record says its source is wholly stored (and names the version it was)."""
    return isinstance(record, dict) and record.get("finished") is True and isinstance(record.get("version"), str)


class FinishedSources:
    """A sorted, immutable set of finished-source digests (see the module docstring)."""

    __slots__ = ("_digests", "_set")

    def __init__(self, digests: np.ndarray | None = None) -> None:
        self._digests = digests if digests is not None else np.empty(0, _DTYPE)
        self._set: frozenset[bytes] | None = None  # built on the first look-up: one pass, then O(1) each

    def __len__(self) -> int:
        return len(self._digests)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FinishedSources) and np.array_equal(self._digests, other._digests)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self.contains(*key)

    def contains(self, source: str, version: str) -> bool:
        """Whether ``source`` at ``version`` was folded in as finished."""
        if not len(self._digests):
            return False
        if self._set is None:
            raw = self._digests.tobytes()
            self._set = frozenset(raw[i: i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES))
        return digest(source, version) in self._set

    def fold(self, offsets: dict[str, Any]) -> tuple[FinishedSources, dict[str, Any]]:
        """(these plus every finished record of ``offsets``, the records of ``offsets`` that are not finished)."""
        done = [digest(source, record["version"]) for source, record in offsets.items() if is_finished(record)]
        if not done:
            return self, offsets
        kept = {source: record for source, record in offsets.items() if not is_finished(record)}
        merged = np.union1d(self._digests, np.array(done, _DTYPE)).astype(_DTYPE)
        return FinishedSources(merged), kept

    def to_json(self) -> str:
        return base64.b64encode(self._digests.tobytes()).decode("ascii")

    @classmethod
    def from_json(cls, text: str | None) -> FinishedSources:
        if not text:
            return cls()
        raw = base64.b64decode(text)
        if len(raw) % DIGEST_BYTES:
            from storage.errors import PetrelError

            raise PetrelError(
                f"a checkpoint's finished sources are {len(raw)} bytes, not a multiple of {DIGEST_BYTES}; "
                "the checkpoint is damaged (read an older one)"
            )
        return cls(np.frombuffer(raw, _DTYPE))
