"""Source offsets: how far a replayable source has got, committed with the rows it gave.

An append may carry :class:`Offset` s.  The owner commits them in the same
commit as the append's segments (and batch id), so the rows and "the source
got this far" land together or not at all.  Before buffering an append the
owner asks each offset whether the partition's log already covers it
(:meth:`Offset.covered_by`, given what the log recorded for that source);
an append whose every offset is covered is acknowledged without writing.
The owner knows nothing else about an offset: what a position means and how
two of them compare belong to the kind.

Kinds:

- :class:`FileOffset` — chunk k of a file identified by its URL and version
  (ETag, or size and modification time), see ``files``;
- :class:`SequenceRange` — messages ``first..last`` of an ordered stream
  (a NATS JetStream consumer's stream sequence; a Kafka partition's offsets
  are the same shape, one source per topic-partition);
- :class:`StreamBatch` — one batch of a stream lane (``engine.streams``): a
  sequence range that also records where the batch began and whether some
  of its rows were rejected.

A new kind subclasses :class:`Offset`: ``record`` (the JSON the log keeps
under ``source``, merged with what it kept before) and ``covered_by``.

A record that says ``"finished": true`` (with the ``"version"`` it was) is
folded by the log's next checkpoint into the partition's finished sources
(``storage.finished``) and leaves ``offsets``; an offset of such a source is
then covered through :meth:`Offset.folded_in`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.finished import FinishedSources


@dataclass(frozen=True)
class Offset:
    """A position of one source; subclasses say what it means."""

    source: str

    def covered_by(self, recorded: Any) -> bool:
        """Whether ``recorded`` (what the log holds for this source, or None) already includes this position."""
        raise NotImplementedError

    def record(self, recorded: Any) -> Any:
        """The JSON the log keeps for this source once this position is committed on top of ``recorded``."""
        raise NotImplementedError

    def folded_in(self, finished: FinishedSources) -> bool:
        """Whether a checkpoint folded this source into ``finished`` at a point covering this position."""
        return False


@dataclass(frozen=True)
class Position(Offset):
    """An opaque position: covered only by the very same recorded value."""

    value: Any = None

    def covered_by(self, recorded: Any) -> bool:
        return recorded is not None and recorded == self.value

    def record(self, recorded: Any) -> Any:
        return self.value


@dataclass(frozen=True)
class SequenceRange(Offset):
    """Messages ``first..last`` (inclusive) of an ordered stream: covered once ``last`` is recorded.

    The log keeps ``{"kind": "sequence", "last": n}``: the highest sequence
    committed.  A stream source resumes after it and hands the owner its
    messages in order, so a range at or below it is a replay.
    """

    first: int = 0
    last: int = 0

    def covered_by(self, recorded: Any) -> bool:
        return isinstance(recorded, dict) and recorded.get("kind") == "sequence" and recorded["last"] >= self.last

    def record(self, recorded: Any) -> Any:
        before = recorded["last"] if isinstance(recorded, dict) and recorded.get("kind") == "sequence" else -1
        return {"kind": "sequence", "last": max(before, self.last)}


@dataclass(frozen=True)
class StreamBatch(SequenceRange):
    """A stream lane's batch ``first..last``: covered like a :class:`SequenceRange`.

    The log keeps ``{"kind": "sequence", "last": n, "first": f, "rejected":
    bool}``: a consumer starting again reads a batch whose rejected rows did
    not land in the rejected-rows table again from ``first``.
    """

    rejected: bool = False

    def record(self, recorded: Any) -> Any:
        kept = super().record(recorded)
        if kept["last"] == self.last:
            kept = {**kept, "first": self.first, "rejected": self.rejected}
        return kept


@dataclass(frozen=True)
class FileOffset(Offset):
    """Chunk ``chunk`` (0-based) of one version of a file, of ``layout``'s cutting; ``last``: the file's last chunk.

    The log keeps ``{"version": ..., "chunk": k + 1, "done": bool, "layout": ...,
    "rejected": bool, "finished": bool}``: chunks reached, whether that was the
    whole file, how it was cut, and whether chunk k had rejected rows.  A
    file done without rejected rows in its last chunk is ``finished``: a
    checkpoint folds it into the partition's finished sources, where it
    still covers every chunk of this version (a done file whose last chunk
    had rejected rows keeps its record: ``files`` reads it to check that
    those rows landed in the rejected-rows table).  A chunk of another
    version of the file (rewritten under the same name) is never covered by
    this one's record (see ``files``: the version is the ETag, or size and
    modification time).
    """

    version: str = ""
    chunk: int = 0
    last: bool = False
    layout: dict = field(default_factory=dict, compare=False)
    rejected: bool = False

    def covered_by(self, recorded: Any) -> bool:
        if not isinstance(recorded, dict) or recorded.get("version", "") != self.version:
            return False
        return bool(recorded.get("done")) or recorded.get("chunk", 0) > self.chunk

    def record(self, recorded: Any) -> Any:
        return {"version": self.version, "chunk": self.chunk + 1, "done": self.last, "layout": self.layout,
                "rejected": self.rejected, "finished": self.last and not self.rejected}

    def folded_in(self, finished: FinishedSources) -> bool:
        return finished.contains(self.source, self.version)


def covered(
    offsets: tuple[Offset, ...] | list[Offset], recorded: dict[str, Any], finished: FinishedSources | None = None
) -> bool:
    """Whether the log's ``recorded`` offsets (and ``finished`` sources) cover every one of ``offsets``.

    False when there are none.
    """
    return bool(offsets) and all(
        o.covered_by(recorded.get(o.source)) or (finished is not None and o.folded_in(finished)) for o in offsets
    )


def records(offsets: list[Offset], recorded: dict[str, Any]) -> dict[str, Any]:
    """What a commit of ``offsets`` (in order) writes into the log, given the ``recorded`` ones."""
    out: dict[str, Any] = {}
    for offset in offsets:
        out[offset.source] = offset.record(out.get(offset.source, recorded.get(offset.source)))
    return out
