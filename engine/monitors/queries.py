"""The one seam between monitors and the query engine: SQL text in, Arrow out.

Scheduler actors run their (small, windowed) monitor queries in their own
process: the engine plans them against the warehouse and executes the plan
locally, with no worker pool per scheduler.  Everything else in
``engine.monitors`` calls only ``LocalQueries.sql`` / ``LocalQueries.window``
(or a session's ``sql``), so a change to the query engine's layout touches
this module alone.

Incremental windows (:meth:`LocalQueries.window`): a sliding window mostly
covers segments it covered one slot ago.  Segments are immutable, so the
partial aggregate of a segment that lies wholly inside the window is the
partial aggregate of the *unbounded* query over that segment, whatever the
window's exact bounds; it is cached by (segment id, fingerprint of the
unbounded query).  Only segments that straddle a window edge (read through
the same fragment with the window added to its scan filter), and segments
not seen before, are read; the partials are merged by the plan's own final
step.  The unbounded query is planned once, not at every slot (planning
cost ten times what evaluating a window over cached partials does), and
planned again only when the table's metadata or schema changed.

Blocks: a long window over small segments would still merge thousands of
partials at every slot.  The segments whose first event falls in one span
of 600, 60 or 10 seconds form a block; once the table has moved past it,
the block's partials are merged into one partial per group
(:func:`engine.query.execution.combine.combine`) and cached under the
block's segment ids (a late segment makes another key, never a wrong
answer).  A window merges the largest blocks lying wholly inside it, then
the leftover segments; once a second window asks for the same blocks
(the windows of the next slots hold them until an edge crosses one), they
are merged into one partial and kept.

Edges by second: the shapes' slot offsets put windows' starts on many seconds
of the minute, so the segments at the start of a 30-minute window are needed
again half an hour after they were new, when the cache has long let their
partials go.  A sealed 10 s block across a window's edge (when the window's
bounds are whole seconds) gives instead one partial grouped by the second of
each row's event time too (:func:`_by_second`), made once from its rows;
each window takes the seconds it covers, and the segment across the edge
is not read with a filter.  Only the states of the columns due are
concatenated, and the last segments read are kept decoded
(:class:`RecentSegments`), since every shape chunk of a table reads the same
new and edge segments within seconds.

Late events: a batch holding a few events minutes old makes a segment
minutes wide, across the edges of nearly every window and inside no block.
Such a segment is laid out as its core (the rows of its last seconds, as
narrow as a batch on time, read with that lower bound) and its tail (the
rows before, a few percent of them).  Tails are grouped by when their
segment ends into tail blocks (:meth:`LocalQueries._tail_parts`): a sealed
tail block wholly inside a window gives one cached partial, the rows of
all those across an edge that lie in the window's whole minutes of event
time one more (grown from the last one as tail blocks are sealed), those
in the minute where the window starts one per second, and the rest of the
tails' rows in the window are read together, in one pass.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from sqlglot import exp

from engine.monitors.compile import timestamp_literal
from engine.query.api import QueryEngine
from engine.query.execution.aggregate import HISTOGRAMS
from engine.query.execution.combine import combine
from engine.query.execution.operators import Execution, concat, execute, stored_columns
from engine.query.execution.scan import SegmentReader
from engine.query.executor import run_locally
from planner.expressions.compiler import ExpressionCompiler
from planner.fragments import stage_scan as fragment_scan
from planner.logical import Aggregate, Gather, Plan, Project, Scan
from storage.catalog import Catalog
from storage.errors import PetrelError
from storage.objectstore import ObjectStore

CACHE_ENTRIES = 100_000
# and at most this many bytes of them: at 50,000 events/s a scheduler's partials reached gigabytes, as each new
# segment's states are kept for every shape chunk over its table
CACHE_BYTES = 1 << 30
DROPPED_REMEMBERED = 200_000  # keys a partial cache dropped, remembered to count those made again
RECENT_SEGMENTS = 128  # decoded segments a scheduler keeps (the newest ones and its windows' edges)
BLOCK_LEVELS = (600, 60, 10)  # seconds of event time per pre-merged block, largest first; each divides the one before
INTERIORS_SEEN = 10_000  # windows' block sets remembered, to merge those asked for twice
SEAL_SECONDS = 2  # a block is merged once the table has events this far past its end
# a segment spanning more event time than this (a batch with late events) is taken as its core, the rows of its
# last TAIL_SECONDS if all but one of TAIL_SHARES of its rows are among them, which blocks and windows treat like
# any narrow segment, and its tail, the rows before
TAIL_SECONDS = 10
TAIL_SHARES = (0.1, 0.25)
# tails of the segments ending in one span of this many seconds form a tail block, the largest first: the tails
# of the last minute, not yet in a sealed block of a minute, are in blocks of 10 s
TAIL_BLOCK_LEVELS = (60, 10)
TAIL_BUCKET_SECONDS = 60  # the rows of tail blocks across a window's edge in its whole minutes give one partial
TAIL_BYTES = 512 << 20  # tails' rows a scheduler keeps decoded (the last half hour's at 50,000 events/s, 5% late)
SECOND = "__petrel_second"  # the extra group key of per-second partials (:func:`_by_second`)
RECENT_SECONDS = 3600  # wide segments ending this close to the table's newest event are split (each read once)
SLOW_WINDOW = 1.0  # a window taking this many seconds is kept, with what its time went to (LocalQueries.slow)
SLOW_KEPT = 50
# made ahead (LocalQueries.ahead), for the fragments windows ran in the last AHEAD_USED seconds: the partials of
# segments ending within AHEAD_SECONDS of their table's newest event, and the blocks sealed in that time
AHEAD_SECONDS = 120
AHEAD_USED = 300
AHEAD_EVERY = 1.0  # seconds between two looks for work to make ahead
AHEAD_STARTS = 60  # the blocks held at their starts by the windows starting within this many seconds made ahead


class Work:
    """Seconds spent by kind of work, each kind's own (a block merge's time excludes the partials it reads).

    Called from one thread at a time (the scheduler's step): a kind
    entered inside another is taken out of the outer one's time.
    """

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.prefix = ""  # put before the kinds entered: what work made ahead is told apart by
        self._inner: list[float] = []  # per kind entered: the seconds of the kinds entered inside it

    @contextlib.contextmanager
    def __call__(self, kind: str):
        started = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[self.prefix + kind] += elapsed - self._inner.pop()
            self.counts[self.prefix + kind] += 1
            if self._inner:
                self._inner[-1] += elapsed


def cache_kind(key: tuple) -> str:
    """What a partial cache key holds: "segment", "block 10" (and the other levels), "interior", "seconds", ..."""
    first = key[0]
    if isinstance(first, tuple):  # a block's key: ("block", level, index, segment ids)
        return f"{first[0]} {first[1]}"
    return first if first in _NAMED_KINDS else "segment"


_NAMED_KINDS = frozenset({"interior", "seconds", "tails", "tail seconds", "tail minutes"})


class CacheCounts:
    """What a partial cache holds and drops, by :func:`cache_kind`: which limit is hit, and what is made again.

    ``again`` counts partials made anew after the cache dropped them (the
    last DROPPED_REMEMBERED dropped keys are remembered): the work a larger
    cache, or a better choice of what to drop, would have saved.
    ``lookups`` counts the partials asked for, found or not, at slot time
    ("window", with the segments read across windows' edges) and ahead.
    ``covered`` and ``read`` count, over windows at their slots, the
    segments each covered (a wide segment's core and tail as two) and those
    of them whose rows it aggregated (their partials, blocks or spans were
    not cached, or they lie across an edge): what Husky's hit rate counts,
    as one block found stands for all its segments.
    """

    def __init__(self) -> None:
        self.entries: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()
        self.drops: collections.Counter[str] = collections.Counter()
        self.over: collections.Counter[str] = collections.Counter()  # drops by the limit exceeded
        self.again: collections.Counter[str] = collections.Counter()
        self.lookups: collections.Counter[tuple[str, str, str]] = collections.Counter()  # (when, outcome, kind)
        self.covered = 0
        self.read = 0
        self.tails_covered = 0  # of those, the tails of wide segments (their late rows)
        self.tails_read = 0
        self._dropped: collections.OrderedDict[tuple, None] = collections.OrderedDict()

    def asked(self, kind: str, hit: bool, ahead: bool) -> None:
        self.lookups[("ahead" if ahead else "window", "hits" if hit else "misses", kind)] += 1

    def window(self) -> tuple[int, int]:
        """How many of the partials windows asked for at their slots were cached (made ahead, or kept from earlier
        windows), and how many were asked for, with the segments read across windows' edges."""
        hits = sum(n for (when, outcome, _), n in self.lookups.items() if when == "window" and outcome == "hits")
        return hits, sum(n for (when, _, _), n in self.lookups.items() if when == "window")

    def window_hit_rate(self) -> float | None:
        hits, asked = self.window()
        return hits / asked if asked else None

    def segments(self, covered: int, read: int, tails_covered: int, tails_read: int) -> None:
        """A window at its slot covered ``covered`` segments and aggregated the rows of ``read`` of them (of
        which ``tails_covered`` and ``tails_read`` were tails)."""
        self.covered += covered
        self.read += min(read, covered)
        self.tails_covered += tails_covered
        self.tails_read += min(tails_read, tails_covered)

    def segment_hit_rate(self) -> float | None:
        """The share of the segments windows covered at their slots whose rows they did not aggregate."""
        return 1 - self.read / self.covered if self.covered else None

    def kept(self, key: tuple, size: int) -> None:
        kind = cache_kind(key)
        self.entries[kind] += 1
        self.bytes[kind] += size
        if key in self._dropped:
            del self._dropped[key]
            self.again[kind] += 1

    def left(self, key: tuple, size: int) -> str:
        kind = cache_kind(key)
        self.entries[kind] -= 1
        self.bytes[kind] -= size
        return kind

    def dropped(self, key: tuple, size: int, over: str) -> None:
        self.drops[self.left(key, size)] += 1
        self.over[over] += 1
        self._dropped[key] = None
        if len(self._dropped) > DROPPED_REMEMBERED:
            self._dropped.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        lookups: dict[str, dict[str, dict[str, int]]] = {}
        for (when, outcome, kind), count in self.lookups.items():
            lookups.setdefault(when, {}).setdefault(outcome, {})[kind] = count
        return {"entries": +self.entries, "bytes": +self.bytes, "dropped": dict(self.drops), "over": dict(self.over),
                "again": dict(self.again), "lookups": lookups, "window": self.window(),
                "segments": (self.covered, self.read, self.tails_covered, self.tails_read)}


class LocalQueries:
    """Runs queries of one namespace in this process (snapshot, footer and partial-aggregate caches kept)."""

    def __init__(self, store: ObjectStore, namespace: str, cache_entries: int = CACHE_ENTRIES,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.engine = QueryEngine(store, Catalog(store), namespace)
        self.reader = RecentSegments(store)
        self.partials: collections.OrderedDict[tuple[str, str], pa.Table] = collections.OrderedDict()
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self.partial_bytes = 0  # the Arrow buffers of the cached partials
        self.cache = CacheCounts()
        # segments (cores) and tails whose rows were aggregated at slots (CacheCounts.segments)
        self._aggregated = collections.Counter()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._plans: dict[tuple[str, bool], Plan] = {}
        self._pruned: dict[tuple, tuple[Plan, Plan]] = {}
        self._layouts: dict[str, tuple[tuple, _Layout]] = {}
        self._combinable: dict[str, bool] = {}  # fingerprints whose states cannot be pre-merged
        self._edges: dict[tuple, tuple[Plan, Plan]] = {}
        self._by_second: dict[int, tuple[Plan, Plan | None]] = {}  # fragments also grouped by second (_by_second)
        # tails' rows, and sealed tail blocks' rows sorted by event time (with those times), decoded
        self._tails: collections.OrderedDict[tuple, tuple[pa.Schema, pa.Table, object]] = collections.OrderedDict()
        self.tail_bytes = 0  # the Arrow buffers of the tails' rows kept
        self._interiors: collections.OrderedDict[tuple, None] = collections.OrderedDict()  # asked for once
        # per (kind, span, fingerprint): the last partial of tails' rows in that span made, and the tails it holds
        self._spans: dict[tuple, tuple[tuple, frozenset[str]]] = {}
        self._cuts: dict[str, int | None] = {}  # wide segment -> where its core begins (None: it has no narrow core)
        self.block_hits = 0
        self.block_misses = 0
        self.work = Work()
        # per fingerprint: the fragment windows last ran with it, its table, and when (for LocalQueries.ahead)
        self._used: dict[str, tuple[Plan, str, float]] = {}
        self._made_ahead: set[tuple[str, tuple]] = set()  # (fingerprint, block key) merged ahead already
        # per fingerprint and window length: the last window's start, and the one before (where the next starts)
        self._starts: dict[str, dict[int, tuple[int, int | None]]] = {}
        self._ahead_at = 0.0
        # the slowest windows lately: (when, seconds, table, window seconds, seconds by kind of work)
        self.slow: collections.deque[tuple] = collections.deque(maxlen=SLOW_KEPT)

    def sql(self, query: str, histograms: bool = False) -> pa.Table:
        """``query``'s result (``histograms``: its quantiles over numbers as their merged histograms)."""
        return run_locally(self._plan(query, histograms), self.reader)

    def _plan(self, query: str, histograms: bool = False) -> Plan:
        """``query``'s optimized plan, its quantiles over numbers answered from histograms (:func:`_histograms`).

        The columns its scans read are told to the reader: segments and
        tails are then decoded with the columns some monitor of the table
        reads, not all of a wide table's.
        """
        plan = _histograms(self.engine.plan(query).optimized, histograms)
        for node in plan.walk():
            path = node.source.meta.path if isinstance(node, Scan) else None
            if path is not None and self.reader.need(path, (*stored_columns(node), node.source.meta.time_column)):
                with self._lock:  # the tails' rows kept lack the new columns
                    for key in [key for key in self._tails if key[0] == path]:
                        self.tail_bytes -= self._tails.pop(key)[1].get_total_buffer_size()
        return plan

    def window(self, windowed: str, unbounded: str, start_us: int, end_us: int,
               columns: tuple[str, ...] | None = None, histograms: bool = False) -> pa.Table:
        """``windowed`` (``unbounded`` limited to event times [start_us, end_us)), reusing cached segment partials
        (:meth:`_window`); a window taking SLOW_WINDOW seconds or more is kept in ``slow``, with its work by kind."""
        before = self.work.seconds.copy()
        started = time.perf_counter()
        with self.work("window"):
            result = self._window(windowed, unbounded, start_us, end_us, columns, histograms)
        elapsed = time.perf_counter() - started
        if elapsed >= SLOW_WINDOW:
            spent = {kind: round(seconds, 3) for kind, seconds in (self.work.seconds - before).most_common(6)}
            table = unbounded.partition(" FROM ")[2].split(" ", 1)[0]
            self.slow.append((time.time(), round(elapsed, 3), table, (end_us - start_us) / 1e6, spent))
        return result

    def _window(self, windowed: str, unbounded: str, start_us: int, end_us: int,
                columns: tuple[str, ...] | None, histograms: bool) -> pa.Table:
        """``windowed`` (``unbounded`` limited to event times [start_us, end_us)), reusing cached segment partials.

        The unbounded query is planned once (and again when the table's
        metadata or schema changes); each slot only binds its window: the live segments
        overlapping it come from the table's current snapshot, whole ones
        give their cached partials, edge ones are read through the same
        fragment with the window added to its scan filter.
        """
        planned = (unbounded, histograms)
        whole = self._plans.get(planned)
        if whole is None:
            if len(self._plans) > 10_000:
                self._plans.clear()
            with self.work("plan"):
                whole = self._plans[planned] = self._plan(unbounded, histograms)
        gather = _single_gather(whole)
        scan = fragment_scan(gather.input) if gather is not None else None
        source = self._resolve(scan)  # its latest snapshot
        if scan is not None and not _current(scan, source):
            with self.work("plan"):
                whole = self._plans[planned] = self._plan(unbounded, histograms)  # the table changed under it
            gather = _single_gather(whole)
            scan = fragment_scan(gather.input) if gather is not None else None
            source = self._resolve(scan)
        if scan is None or not _timed(scan):  # a shape this path does not know: plan the window as a whole
            return self._whole(windowed, histograms, "shape")
        fingerprint = hashlib.sha1(f"{scan.source.meta.path}\n{unbounded}".encode()).hexdigest()
        self._used[fingerprint] = (gather.input, scan.source.meta.name, time.monotonic())
        starts = self._starts.setdefault(fingerprint, {})
        last = starts.get(end_us - start_us)
        if last is None or last[0] != start_us:
            if len(starts) > 1_000:
                starts.clear()
            starts[end_us - start_us] = (start_us, None if last is None else last[0])
        pruned, keep = whole, None
        if columns is not None:  # merge only the states of the columns asked for; the partials stay shared
            key = (unbounded, histograms, columns)
            kept = self._pruned.get(key)
            if kept is None or kept[0] is not whole:
                if len(self._pruned) > 10_000:
                    self._pruned.clear()
                kept = self._pruned[key] = (whole, _only(whole, frozenset(columns)) or whole)
            pruned = kept[1]
            final = _final_of(pruned)
            if pruned is not whole and final is not None:  # edges are read for this window alone: its columns only
                keep = frozenset(call.name for call in final.aggregates)

        def edge(low: int | None, high: int | None) -> Plan:
            """The fragment reading rows of event times in [low, high) (None: no bound on that side), for this window.

            A bound a segment does not cross is left out of its filter: the
            segment at the end of every window of a slot is then read with
            one filter, whatever the window's length.  Kept across windows:
            a core's own lower bound, and the bounds of the next slots' windows, come again.
            """
            key = (id(gather.input), keep, low, high)
            kept = self._edges.get(key)
            if kept is None or kept[0] is not gather.input:
                fragment = _replace_scan(gather.input, scan, _window_scan(scan, low, high))
                if len(self._edges) > 20_000:
                    self._edges.clear()
                kept = self._edges[key] = (gather.input, _partial_only(fragment, keep) if keep else fragment)
            return kept[1]

        parts = self._window_parts(gather.input, edge, source, fingerprint, start_us, end_us)
        if not parts:
            parts.append(execute(edge(start_us, end_us), Execution(reader=self.reader, segments=())))
        if pruned is not whole:  # the other columns' states would only be concatenated to be dropped
            parts = _only_states(parts, _final_of(pruned))
        try:
            gathered = concat(parts)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # partial shapes differ: plan the window as a whole
            return self._whole(windowed, histograms, "partials differ")
        run = Execution(reader=self.reader)
        run.gathered[id(gather)] = gathered
        with self.work("final"):
            return execute(pruned, run)

    def _resolve(self, scan: Scan | None):
        """The table ``scan`` reads as of its latest snapshot (None without a scan)."""
        if scan is None:
            return None
        with self.work("resolve"):
            return self.engine.resolve(scan.source.meta.name)

    def _whole(self, windowed: str, histograms: bool, why: str) -> pa.Table:
        """``windowed`` planned and run as a whole query, every segment in its window read (told apart in
        :class:`Work` by ``why``: a slow slot's time is then seen to go there)."""
        with self.work(f"whole window: {why}"):
            return self.sql(windowed, histograms)

    def ahead(self, until: float) -> int:
        """Make ahead, while ``time.monotonic()`` is before ``until``, what the next windows will ask for; how
        many partials it made.

        The first window over a table after new segments land computes
        their partials, for every fragment reading them, and merges the
        blocks sealed since: work that falls on whichever slot comes
        first, and made that slot late by up to seconds (a block of ten
        minutes merged from blocks the cache had let go took two).  A
        scheduler calls this when nothing is due for a while instead: the
        partials of the segments ending within AHEAD_SECONDS of their
        table's newest event, for the fragments windows ran in the last
        AHEAD_USED seconds, and the blocks sealed in that time, smallest
        first (each merged from the ones below, just made); then the
        partials by second of the blocks across where the next windows
        start (:meth:`_seconds`: those rows are half an hour old, read again),
        and the blocks the windows of the next minute hold at their starts
        (:meth:`_starts_ahead`).
        """
        now = time.monotonic()
        if now - self._ahead_at < AHEAD_EVERY:
            return 0
        self._ahead_at = now
        by_table: dict[str, list[tuple[str, Plan]]] = {}
        for fingerprint, (fragment, table, used) in list(self._used.items()):
            if now - used > AHEAD_USED:
                del self._used[fingerprint]
                self._starts.pop(fingerprint, None)
            else:
                by_table.setdefault(table, []).append((fingerprint, fragment))
        if len(self._made_ahead) > 100_000:
            self._made_ahead.clear()
        made = 0
        self.work.prefix = "ahead: "
        try:
            for table, fragments in by_table.items():
                try:
                    layout = self._layout(self.engine.resolve(table))
                except PetrelError:  # dropped, or unreadable now: its windows say so when they come
                    for fingerprint, _ in fragments:
                        self._used.pop(fingerprint, None)
                    continue
                if not layout.timed:
                    continue
                low = layout.latest - AHEAD_SECONDS * 1_000_000
                new = layout.overlapping(low, layout.latest + 1)
                for fingerprint, fragment in fragments:
                    for segment in new:
                        if time.monotonic() >= until:
                            return made
                        held = self._holds((segment.id, fingerprint))
                        if not held and not self._merged(layout, segment, fingerprint):
                            self._partial(fragment, segment, fingerprint)
                            made += 1
                    made += self._blocks_ahead(fragment, layout, fingerprint, low, until)
                for fingerprint, fragment in fragments:
                    made += self._edges_ahead(fragment, layout, fingerprint, until)
                made += self._starts_ahead(fragments, layout, until)
        finally:
            self.work.prefix = ""
        return made

    def _merged(self, layout: _Layout, segment, fingerprint: str) -> bool:
        """Whether ``segment`` is in a block of the smallest level whose partial for ``fingerprint`` is cached.

        Its own partial is then asked for by no window (those holding the
        block take the block's, those with an edge in it its rows by
        second), and a full cache drops it first (:meth:`_demote`): made
        ahead again, as the segments of the last AHEAD_SECONDS were once
        the cache was full, it pushed out the blocks windows do ask for.
        """
        level = BLOCK_LEVELS[-1]
        block = layout.blocks.get((level, segment.min_time // (level * 1_000_000)))
        if block is None or len(block.segments) < 2 or segment.id not in block.key[3]:
            return False
        return self._holds(_block_key(block, fingerprint))

    def _blocks_ahead(self, fragment: Plan, layout: _Layout, fingerprint: str, low: int, until: float) -> int:
        """Merge the blocks of ``layout`` sealed since ``low`` (event time) for ``fingerprint``, smallest first."""
        if not self._mergeable(fragment, fingerprint):
            return 0
        made = 0
        for level in reversed(BLOCK_LEVELS):
            size = level * 1_000_000
            for index in range(low // size - 1, layout.latest // size + 1):
                block = layout.blocks.get((level, index))
                if block is None or (fingerprint, block.key) in self._made_ahead:
                    continue
                if time.monotonic() >= until:
                    return made
                if self._block(fragment, layout, block, fingerprint) is None:
                    return made
                self._made_ahead.add((fingerprint, block.key))
                made += 1
        return made

    def _mergeable(self, fragment: Plan, fingerprint: str) -> bool:
        """Whether ``fragment``'s partial states may be merged ahead of the final step (blocks, partials by second)."""
        return isinstance(fragment, Aggregate) and fragment.mode == "partial" and self._combinable.get(fingerprint, True)

    def _edges_ahead(self, fragment: Plan, layout: _Layout, fingerprint: str, until: float) -> int:
        """The partials by second of the blocks across where the next window of each length of ``fingerprint``
        starts: its last start moved on by the step from the one before."""
        if not self._mergeable(fragment, fingerprint):
            return 0
        made = 0
        for length, start, step in self._stepping(fingerprint):
            following = start + step
            if following % 1_000_000 or length % 1_000_000:  # windows of whole seconds only are taken by second
                continue
            for block in self._across(layout, following, following):
                if self._holds(("seconds", block.key, fingerprint)):
                    continue
                if time.monotonic() >= until:
                    return made
                if self._seconds(fragment, layout.source, block, fingerprint, following, following + length) is None:
                    return made
                made += 1
        return made

    def _stepping(self, fingerprint: str) -> list[tuple[int, int, int]]:
        """Per window length of ``fingerprint``: (length, its last start, the step from the start before), where
        that step is forward and at most AHEAD_USED seconds (the next starts are the last moved on by it)."""
        return [(length, start, start - before) for length, (start, before) in self._starts.get(fingerprint, {}).items()
                if before is not None and 0 < start - before <= AHEAD_USED * 1_000_000]

    def _starts_ahead(self, fragments: list[tuple[str, Plan]], layout: _Layout, until: float) -> int:
        """The blocks the windows of ``fragments`` starting within the next AHEAD_STARTS seconds hold at their
        starts, those not cached, made ahead (in order of event time: the fragments over one table read the same
        segments, decoded once).

        A window holds the 10 s blocks from its start to the next minute,
        then the minute blocks to the next ten minutes.  The start of a
        half-hour window reaches them half an hour after they were new,
        when the cache has long let them go: rebuilt from their segments at
        the slot, they made its windows seconds late (the last quarter of a
        forty-minute run at p99 5.9 s).  The next starts of each window
        length are its last start moved on by the step from the one before.
        """
        wanted: dict[tuple, tuple[_Block, str, Plan]] = {}
        minute, ten = BLOCK_LEVELS[-2] * 1_000_000, BLOCK_LEVELS[-3] * 1_000_000
        for fingerprint, fragment in fragments:
            if not self._mergeable(fragment, fingerprint):
                continue
            for _, start, step in self._stepping(fingerprint):
                first = start + step
                last = max(first, start + AHEAD_STARTS * 1_000_000 // step * step)
                for level, low, high in ((BLOCK_LEVELS[-1], first, -(-last // minute) * minute),
                                         (BLOCK_LEVELS[-2], -(-first // minute) * minute, -(-last // ten) * ten)):
                    size = level * 1_000_000
                    for index in range(low // size, -(-high // size)):
                        block = layout.blocks.get((level, index))
                        if block is not None and block.min_time >= first:
                            wanted.setdefault((block.key, fingerprint), (block, fingerprint, fragment))
        made = 0
        for block, fingerprint, fragment in sorted(wanted.values(), key=lambda job: (job[0].min_time, job[0].level)):
            if self._holds(_block_key(block, fingerprint)):
                continue
            if time.monotonic() >= until:
                break
            if self._block(fragment, layout, block, fingerprint) is not None:
                made += 1
        return made

    def _window_parts(self, fragment: Plan, edge, source, fingerprint: str, start_us: int,
                      end_us: int) -> list[pa.Table]:
        """The partial states covering [start_us, end_us): pre-merged blocks, whole segments' partials, edge reads.

        Sealed blocks lying wholly inside the window stand for their
        segments (the largest first); the segments left over give their
        cached partials, and those straddling an edge are read with the
        window in their scan filter.
        """
        layout = self._layout(source)
        aggregated = self._aggregated.copy()
        combinable = self._mergeable(fragment, fingerprint)
        parts: list[pa.Table] = []
        covered: set[tuple[int, int]] = set()
        merges = False  # whether this fingerprint's states merge (blocks, per-second partials)
        if combinable:
            inside: list[_Block] = []
            for rank, level in enumerate(BLOCK_LEVELS):
                size = level * 1_000_000
                for index in range(start_us // size, (end_us - 1) // size + 1):
                    if any((upper, index * level // upper) in covered for upper in BLOCK_LEVELS[:rank]):
                        continue
                    block = layout.blocks.get((level, index))
                    if block is None or block.min_time < start_us or block.max_time >= end_us:
                        continue
                    inside.append(block)
                    covered.add((level, index))
            parts = self._inside(fragment, layout, inside, fingerprint)
            merges = parts is not None
            if parts is None:  # the states do not merge: every segment on its own
                parts, covered = [], set()
        swept: set[str] = set()  # segments whose rows in the window came from their block's per-second partial
        if merges and start_us % 1_000_000 == 0 and end_us % 1_000_000 == 0:
            for block in self._across(layout, start_us, end_us):
                part = self._seconds(fragment, layout.source, block, fingerprint, start_us, end_us)
                if part is None:
                    break
                parts.append(part)
                swept.update(segment.id for segment in block.segments)
        overlapping = layout.overlapping(start_us, end_us)
        for segment in overlapping:
            if covered and any((level, segment.min_time // (level * 1_000_000)) in covered for level in BLOCK_LEVELS):
                continue
            if segment.id in swept:
                continue
            low, high = segment.min_time < start_us, segment.max_time >= end_us
            if not (low or high):
                parts.append(self._partial(fragment, segment, fingerprint))
            else:  # a core keeps its own lower bound: the rows below it are its segment's tail
                floor = segment.min_time if isinstance(segment, _Core) else None
                read = edge(start_us if low else floor, end_us if high else None)
                self.cache.asked("edge", False, ahead=False)
                self._aggregating(1)
                with self.work("edge"):
                    parts.append(execute(read, Execution(reader=self.reader, segments=(_stored(segment),))))
        parts += self._tail_parts(fragment, edge, layout, fingerprint, start_us, end_us)
        for segment in layout.untimed:
            parts.append(execute(edge(start_us, end_us), Execution(reader=self.reader, segments=(segment,))))
        tails = sum(_tail_overlaps(tail, start_us, end_us) for block in layout.tail_blocks_overlapping(start_us, end_us)
                    for tail in block.segments) + sum(_tail_overlaps(tail, start_us, end_us)
                                                      for tail in layout.open_tails)
        self._aggregating(len(layout.untimed))
        read = self._aggregated - aggregated
        self.cache.segments(len(overlapping) + tails + len(layout.untimed), read.total(), tails, read["tails"])
        return parts

    def _aggregating(self, segments: int, tails: bool = False) -> None:
        """Count ``segments`` (cores; ``tails``: tails) whose rows are aggregated now, if at a slot (not ahead)."""
        if not self.work.prefix:
            self._aggregated["tails" if tails else "segments"] += segments

    def _inside(self, fragment: Aggregate, layout: _Layout, blocks: list[_Block],
                fingerprint: str) -> list[pa.Table] | None:
        """The partial states of ``blocks`` (all wholly inside a window), as one kept partial where windows share
        them; None if they cannot be merged.

        The windows of the next slots (seconds apart, as shapes' offsets
        spread them) hold the same blocks until an edge crosses one: their
        merge is kept, once a second window asks for it (a window whose
        blocks come once, as one monitor's sliding by its whole period, is
        not merged twice), and so are the blocks themselves (the next
        windows' merges are made from them).

        So are the minute blocks of each ten-minute block: the window's
        start will move into it, and its minutes are then asked for again.
        Untouched since the ten-minute block was merged from them, a full
        cache had dropped them; every window of a quarter of an hour or
        more rebuilt them from segments at the slot where its start crossed
        into the block (12 s of one slot, every ten minutes).
        """
        for block in blocks:
            if block.level == BLOCK_LEVELS[0]:
                for child in _children(layout, block):
                    self._cached(_block_key(child, fingerprint), asked=False)  # kept as recently used
        key = ("interior", tuple(block.key for block in blocks), fingerprint) if len(blocks) > 1 else None
        merged = self._cached(key) if key is not None else None
        if merged is not None:
            self.block_hits += 1
            for block in blocks:
                self._cached(_block_key(block, fingerprint), asked=False)
            return [merged]
        parts = [self._block(fragment, layout, block, fingerprint) for block in blocks]
        if None in parts:
            return None
        if key is None or not self._asked_again(key):
            return parts
        with self.work("interior"):
            merged = combine(concat(parts), fragment.keys, fragment.aggregates)
        if merged is None:
            return None
        self.block_misses += 1
        self._keep(key, merged)
        return [merged]

    @staticmethod
    def _across(layout: _Layout, start_us: int, end_us: int) -> list[_Block]:
        """The sealed blocks of the smallest level with events on both sides of the window's start or end."""
        level = BLOCK_LEVELS[-1]
        size = level * 1_000_000
        found: list[_Block] = []
        for bound in (start_us, end_us):
            for index in (bound // size - 1, bound // size):  # a block's last segment may run into the next span
                block = layout.blocks.get((level, index))
                if block is not None and block.min_time < bound <= block.max_time and block not in found:
                    found.append(block)
        return found

    def _seconds(self, fragment: Plan, source, block: _Block, fingerprint: str, start_us: int,
                 end_us: int) -> pa.Table | None:
        """The partial states of ``block``'s rows in [start_us, end_us) (whole seconds), from the block's partial
        grouped by second too (cached); None where the fragment cannot be grouped so.

        The windows of the next slots start a second apart: each takes a
        later slice of the same per-second partial, where the segments at
        its start were aggregated again (the cache no longer held the
        partials of segments half an hour old) and the one across the
        edge read again.
        """
        key = ("seconds", block.key, fingerprint)
        table = self._cached(key)
        if table is None:
            plan = self._second_plan(fragment)
            if plan is None:
                return None
            with self.work("seconds"):
                table = _by_seconds(execute(plan, Execution(reader=self.reader,
                                                            segments=(_Rows(self._rows_of(source, block)),))))
            self._aggregating(len(block.segments))
            self.block_misses += 1
            self._keep(key, table)
        else:
            self.block_hits += 1
        low, high = np.searchsorted(table.column(SECOND).to_numpy(), [start_us // 1_000_000, end_us // 1_000_000])
        return table.slice(low, high - low).drop_columns([SECOND])

    def _second_plan(self, fragment: Plan) -> Aggregate | None:
        """:func:`_by_second` of ``fragment``, made once."""
        plan = self._by_second.get(id(fragment))
        if plan is None or plan[0] is not fragment:
            if len(self._by_second) > 10_000:
                self._by_second.clear()
            plan = self._by_second[id(fragment)] = (fragment, _by_second(fragment))
        return plan[1]

    def _rows_of(self, source, block: _Block) -> pa.Table:
        """The rows of ``block``'s segments (of a core, those from its first event on), decoded."""
        column = source.meta.time_column
        kind = source.schema.field(column).type
        tables = []
        for segment in block.segments:
            floor = None
            if isinstance(segment, _Core):
                floor = pc.field(column) >= _time(segment.min_time, kind)
            tables.append(self.reader.read(source.meta.path, source.schema, (_stored(segment),),
                                           self.reader.columns(source.meta.path, source.schema), floor))
        return pa.concat_tables(tables)

    def _asked_again(self, key: tuple) -> bool:
        """Whether ``key`` was asked for before (remembered for the last INTERIORS_SEEN keys)."""
        with self._lock:
            if key in self._interiors:
                return True
            self._interiors[key] = None
            if len(self._interiors) > INTERIORS_SEEN:
                self._interiors.popitem(last=False)
            return False

    def _tail_parts(self, fragment: Plan, edge, layout: _Layout, fingerprint: str, start_us: int,
                    end_us: int) -> list[pa.Table]:
        """The partial states of the tails (late rows) of wide segments in [start_us, end_us).

        A sealed tail block lying wholly inside the window gives its cached
        partial.  The rows of the blocks across an edge that lie in the
        window's whole minutes give one partial, kept: the windows of the
        next slots have the same whole minutes until an edge crosses a
        minute.  Those in the minute before them (where the window starts)
        give one more, grouped by second too, of which each window takes
        the seconds from its start on.  The rows left (the window's last
        minute, and the tails not yet in a sealed block) are slices of rows
        sorted by event time, read together, in one pass.
        """
        parts: list[pa.Table] = []
        pieces: list[pa.Table] = []
        source = layout.source
        size = TAIL_BUCKET_SECONDS * 1_000_000
        first, last = -(-start_us // size) * size, end_us // size * size  # the window's whole minutes
        whole = first < last
        # the start's minute by second: for whole seconds, and a fragment that can be grouped by them
        lead = whole and start_us % 1_000_000 == 0 and self._second_plan(fragment) is not None
        minutes, leading, crossing, starting = [], [], [], []
        for block in layout.tail_blocks_overlapping(start_us, end_us):
            if start_us <= block.min_time and block.max_time <= end_us:
                parts.append(self._tail_block(fragment, source, block, fingerprint))
                continue
            rows, times = self._block_rows(source, block)
            bounds = np.searchsorted(times, [first - size if lead else start_us, start_us, first, last, end_us]) \
                if whole else np.searchsorted(times, [start_us, start_us, start_us, start_us, end_us])
            if bounds[3] > bounds[2]:
                minutes.append(rows.slice(bounds[2], bounds[3] - bounds[2]))
                crossing.append(block)
            if lead and bounds[2] > bounds[1]:  # rows in the window before its whole minutes
                leading.append(rows.slice(bounds[0], bounds[2] - bounds[0]))
                starting.append(block)
            elif bounds[2] > bounds[1]:
                pieces.append(rows.slice(bounds[1], bounds[2] - bounds[1]))
                self._aggregating(len(block.segments), tails=True)
            if bounds[4] > bounds[3]:
                pieces.append(rows.slice(bounds[3], bounds[4] - bounds[3]))
                self._aggregating(len(block.segments), tails=True)
        if minutes:
            parts.append(self._tail_span(fragment, source, crossing, minutes, first, last, fingerprint))
        if leading:
            by_second = self._tail_span(fragment, source, starting, leading, first - size, first, fingerprint,
                                        seconds=True)
            low = np.searchsorted(by_second.column(SECOND).to_numpy(), start_us // 1_000_000)
            parts.append(by_second.slice(low).drop_columns([SECOND]))
        if any(_tail_overlaps(tail, start_us, end_us) for tail in layout.open_tails):
            if layout.open_rows is None or not self.reader.holds(source.meta.path, source.schema,
                                                                 layout.open_rows[0]):  # once per snapshot
                layout.open_rows = self._sorted(source, [self._tail_rows(source, tail) for tail in layout.open_tails])
            rows, times = layout.open_rows
            low, high = np.searchsorted(times, [start_us, end_us])
            if high > low:
                pieces.append(rows.slice(low, high - low))
                self._aggregating(len(layout.open_tails), tails=True)
        if pieces:
            with self.work("tail pieces"):
                rows = _Rows(pa.concat_tables(pieces))
                parts.append(execute(edge(None, None), Execution(reader=self.reader, segments=(rows,))))
        return parts

    def _tail_span(self, fragment: Plan, source, crossing: list[_Block], spans: list[pa.Table], low: int,
                   high: int, fingerprint: str, seconds: bool = False) -> pa.Table:
        """The partial states of ``spans``, the rows in [low, high) of the tail blocks ``crossing`` a window's
        edge (cached; ``seconds``: grouped by second too, sorted by it).

        Every ten seconds a new tail block is sealed, and for windows of a
        few minutes each crosses the start: the set changes, and all those
        rows were aggregated again.  Built instead from the last partial of
        the same span, where every tail it holds is still among these,
        merged with the rows of the tails since (blocks that stopped
        crossing hold no rows in the span: they end before the window).
        """
        kind = "tail seconds" if seconds else "tail minutes"
        key = (kind, tuple(block.key for block in crossing), low, high, fingerprint)
        cached = self._cached(key)
        if cached is not None:
            self.block_hits += 1
            return cached
        plan = self._second_plan(fragment) if seconds else fragment
        tails = frozenset(tail.id for block in crossing for tail in block.segments)
        earlier = self._spans.get((kind, low, high, fingerprint))
        before = self._cached(earlier[0], asked=False) if earlier is not None and earlier[1] <= tails else None
        merged = None
        with self.work("tail span"):
            if before is not None and isinstance(plan, Aggregate):
                column = source.meta.time_column
                kind_of = source.schema.field(column).type
                within = (pc.field(column) >= _time(low, kind_of)) & (pc.field(column) < _time(high, kind_of))
                new = [self._tail_rows(source, tail) for block in crossing for tail in block.segments
                       if tail.id not in earlier[1]]
                rows = ds.dataset(pa.concat_tables(new)).to_table(filter=within) if new else None
                if rows is None or not rows.num_rows:
                    merged = before
                else:
                    self._aggregating(len(new), tails=True)
                    added = execute(plan, Execution(reader=self.reader, segments=(_Rows(rows),)))
                    merged = combine(concat([before, added]), plan.keys, plan.aggregates)
                    if merged is not None and seconds:
                        merged = _by_seconds(merged)
            if merged is None:
                self._aggregating(len(tails), tails=True)
                merged = execute(plan, Execution(reader=self.reader, segments=(_Rows(pa.concat_tables(spans)),)))
                if seconds:
                    merged = _by_seconds(merged)
        self.block_misses += 1
        self._keep(key, merged)
        with self._lock:
            if len(self._spans) > 10_000:
                self._spans.clear()
            self._spans[(kind, low, high, fingerprint)] = (key, tails)
        return merged

    def _tail_block(self, fragment: Plan, source, block: _Block, fingerprint: str) -> pa.Table:
        """The partial states of all the rows of ``block``'s tails (cached: the block is sealed)."""
        return self._computed(("tails", block.key, fingerprint), fragment,
                              lambda: _Rows(self._block_rows(source, block)[0]), len(block.segments))

    def _computed(self, key: tuple, fragment: Plan, rows, tails: int) -> pa.Table:
        """The partial states ``fragment`` gives over ``rows()`` (the rows of ``tails`` tails, in memory), cached
        under ``key``."""
        cached = self._cached(key)
        if cached is not None:
            self.block_hits += 1
            return cached
        self._aggregating(tails, tails=True)
        with self.work("tail block"):
            cached = execute(fragment, Execution(reader=self.reader, segments=(rows(),)))
        self.block_misses += 1
        self._keep(key, cached)
        return cached

    def _block_rows(self, source, block: _Block) -> tuple[pa.Table, np.ndarray]:
        """The rows of ``block``'s tails sorted by event time, and those times (in microseconds)."""
        key = (source.meta.path, block.key)
        kept = self._kept_tail(key, source)
        if kept is not None:
            return kept
        with self.work("tail rows"):
            return self._keep_tail(key, source.schema, *self._sorted(source, [self._tail_rows(source, tail)
                                                                              for tail in block.segments]))

    @staticmethod
    def _sorted(source, tails: list[pa.Table]) -> tuple[pa.Table, np.ndarray]:
        """``tails`` in one table sorted by event time, and those times in microseconds."""
        rows = pa.concat_tables(tails)
        column = source.meta.time_column
        rows = rows.take(pc.sort_indices(rows, [(column, "ascending")])).combine_chunks()
        return rows, _micros(rows.column(column))

    def _tail_rows(self, source, tail: _Tail) -> pa.Table:
        """A tail's rows (kept: the tails of the last minutes are read by every window)."""
        key = (source.meta.path, tail.id)
        kept = self._kept_tail(key, source)
        if kept is not None:
            return kept[0]
        column = source.meta.time_column
        kind = source.schema.field(column).type
        cut = _time(tail.cut, kind)
        with self.work("tail rows"):
            rows = self.reader.read(source.meta.path, source.schema, (tail.segment,),
                                    self.reader.columns(source.meta.path, source.schema), pc.field(column) < cut)
        return self._keep_tail(key, source.schema, rows, None)[0]

    def _kept_tail(self, key: tuple, source) -> tuple[pa.Table, object] | None:
        """The rows kept under ``key`` (and their times), if read with ``source``'s schema and the columns needed."""
        with self._lock:
            kept = self._tails.get(key)
            if kept is None or not kept[0].equals(source.schema) or \
                    not self.reader.holds(source.meta.path, source.schema, kept[1]):
                return None
            self._tails.move_to_end(key)
            return kept[1], kept[2]

    def _keep_tail(self, key: tuple, schema: pa.Schema, rows: pa.Table, times) -> tuple[pa.Table, object]:
        """Keep ``rows`` (with ``times``) under ``key``, dropping the least recently used past TAIL_BYTES."""
        with self._lock:
            old = self._tails.pop(key, None)
            if old is not None:
                self.tail_bytes -= old[1].get_total_buffer_size()
            self._tails[key] = (schema, rows, times)
            self.tail_bytes += rows.get_total_buffer_size()
            while len(self._tails) > 1 and self.tail_bytes > TAIL_BYTES:
                _, (_, dropped, _) = self._tails.popitem(last=False)
                self.tail_bytes -= dropped.get_total_buffer_size()
        return rows, times

    def _cut(self, source, segment) -> int | None:
        """Where a wide segment's core begins: the event time after which all but TAIL_SHARES of its rows lie, if
        that is within TAIL_SECONDS of its last event; None if no such core (a batch spread evenly over time).

        Read once per segment (decoded, as its partial is read next).
        """
        if segment.id in self._cuts:
            return self._cuts[segment.id]
        column = source.meta.time_column
        times = _micros(self.reader.read(source.meta.path, source.schema, (segment,), [column]).column(column))
        times = times[~np.isnan(times)] if times.dtype.kind == "f" else times
        cut = None
        for share in TAIL_SHARES:
            rank = int(len(times) * share)
            if rank:
                time = np.partition(times, rank)[rank]
                if segment.max_time - time <= TAIL_SECONDS * 1_000_000:
                    cut = int(time)
                    break
        if len(self._cuts) > 200_000:
            self._cuts.clear()
        self._cuts[segment.id] = cut
        return cut

    def _layout(self, source) -> _Layout:
        """The blocks of ``source``'s segments (made again when the table's snapshot moved)."""
        name = source.meta.name
        kept = self._layouts.get(name)
        if kept is None or kept[0] is not source.segments:
            cut = lambda segment: self._cut(source, segment)  # noqa: E731
            with self.work("layout"):
                layout = _Layout.after(kept[1], source.segments, source, cut) if kept is not None else None
            if layout is None:
                with self.work("layout anew"):
                    layout = _Layout(source.segments, source, cut)
            kept = self._layouts[name] = (source.segments, layout)
        return kept[1]

    def _block(self, fragment: Aggregate, layout: _Layout, block: _Block, fingerprint: str) -> pa.Table | None:
        """The partial states of ``block``'s segments merged into one row per group (cached); None if they cannot be."""
        if len(block.segments) == 1:  # nothing to merge: the segment's own partial
            return self._partial(fragment, block.segments[0], fingerprint)
        key = _block_key(block, fingerprint)
        cached = self._cached(key)
        if cached is not None:
            self.block_hits += 1
            return cached
        rank = BLOCK_LEVELS.index(block.level)
        if rank + 1 < len(BLOCK_LEVELS):  # from the blocks one level down, themselves cached
            parts = [self._block(fragment, layout, child, fingerprint) for child in _children(layout, block)]
            if any(part is None for part in parts):
                return None
        elif 2 * sum(not self._holds((segment.id, fingerprint)) for segment in block.segments) > len(block.segments):
            # most of its segments' partials are gone (the start of a half-hour window reaches the block half an
            # hour after it was new): one pass over its rows, not about twenty one-segment aggregations, each
            # partial then kept (pushing others out) only to be merged
            parts = None
        else:
            parts = [self._partial(fragment, segment, fingerprint) for segment in block.segments]
        if parts is None:
            self._aggregating(len(block.segments))
            with self.work(f"block {block.level} rows"):
                merged = execute(fragment, Execution(reader=self.reader,
                                                     segments=(_Rows(self._rows_of(layout.source, block)),)))
        else:
            try:
                with self.work(f"block {block.level}"):
                    merged = combine(concat(parts), fragment.keys, fragment.aggregates)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # partial shapes differ: merge the segments one by one
                merged = None
            if merged is None:
                self._combinable[fingerprint] = False
                return None
        self.block_misses += 1
        self._keep(key, merged)
        if rank + 1 == len(BLOCK_LEVELS):  # its segments' partials are in it now: the first a full cache drops
            self._demote([(segment.id, fingerprint) for segment in block.segments])
        return merged

    def _partial(self, fragment: Plan, segment, fingerprint: str) -> pa.Table:
        """The partial states of a whole segment, or of a wide segment's core (cached)."""
        key = (segment.id, fingerprint)
        cached = self._cached(key)
        if cached is not None:
            self.hits += 1
            return cached
        if isinstance(segment, _Core):
            scan = fragment_scan(fragment)
            fragment = _replace_scan(fragment, scan, _window_scan(scan, segment.min_time, None))
        self._aggregating(1)
        with self.work("segment"):
            cached = execute(fragment, Execution(reader=self.reader, segments=(_stored(segment),)))
        self.misses += 1
        self._keep(key, cached)
        return cached

    def _cached(self, key: tuple, asked: bool = True) -> pa.Table | None:
        """The partial cached under ``key`` (kept as recently used); ``asked``: counted as a lookup, at slot time
        or ahead as :class:`Work` is (not: a look at what is there)."""
        with self._lock:
            cached = self.partials.get(key)
            if cached is not None:
                self.partials.move_to_end(key)
            if asked:
                self.cache.asked(cache_kind(key), cached is not None, ahead=bool(self.work.prefix))
            return cached

    def _holds(self, key: tuple) -> bool:
        """Whether a partial is cached under ``key``: looked at, not used, so left where it is in the drop order (the
        look-ahead each second moved the partials of segments merged into blocks back from the front)."""
        with self._lock:
            return key in self.partials

    def _demote(self, keys: list[tuple]) -> None:
        """Put the partials under ``keys`` first in line to be dropped.

        Used recently is not needed next: a segment's partial, once merged
        into its block, is read again only if the block is dropped.  Under
        plain LRU a full cache (its gigabyte reached five minutes into a run
        at 100,000 monitors) dropped instead the minute blocks of the
        current ten minutes, untouched since they were made, and the
        ten-minute block's seal rebuilt them from segments read again.
        """
        with self._lock:
            for key in keys:
                if key in self.partials:
                    self.partials.move_to_end(key, last=False)

    def _keep(self, key: tuple, table: pa.Table) -> None:
        """Cache ``table`` under ``key``, dropping the least recently used past CACHE_ENTRIES or ``cache_bytes``."""
        size = table.get_total_buffer_size()
        with self._lock:
            old = self.partials.pop(key, None)
            if old is not None:
                old_size = old.get_total_buffer_size()
                self.partial_bytes -= old_size
                self.cache.left(key, old_size)
            self.cache.kept(key, size)
            self.partials[key] = table
            self.partial_bytes += size
            while len(self.partials) > 1 and (len(self.partials) > self.cache_entries
                                              or self.partial_bytes > self.cache_bytes):
                over = "entries" if len(self.partials) > self.cache_entries else "bytes"
                dropped_key, dropped = self.partials.popitem(last=False)
                dropped_size = dropped.get_total_buffer_size()
                self.partial_bytes -= dropped_size
                self.cache.dropped(dropped_key, dropped_size, over)

    @property
    def hit_rate(self) -> float | None:
        """The share of cached partials (of segments, or blocks of them) served from the cache."""
        served = self.hits + self.block_hits
        total = served + self.misses + self.block_misses
        return served / total if total else None


class RecentSegments(SegmentReader):
    """A segment reader that keeps the last segments it read whole, decoded, and answers reads of them from memory.

    Every shape chunk over a table reads each new segment (its partial
    states) and the segments at its windows' edges: the same few segments,
    once per chunk, within seconds.  Decoding the Parquet file once and
    filtering the decoded rows for each chunk costs a fraction of reading
    the file again.  Reads of several segments, or with a limit or a memory
    bound, go to the file as before.

    A segment is decoded with the columns the plans over its table read
    (:meth:`need`), all of them until a plan has said: a wide table's
    monitors read a few of its hundred columns.
    """

    def __init__(self, store: ObjectStore, entries: int = RECENT_SEGMENTS) -> None:
        super().__init__(store)
        self.entries = entries
        self._decoded: collections.OrderedDict[tuple[str, str], tuple[pa.Schema, pa.Table]] = collections.OrderedDict()
        self._decoded_lock = threading.Lock()
        self._needed: dict[str, frozenset[str]] = {}  # table path -> the columns plans over it read
        # an edge segment's rows as one filter keeps them (with the decoded table they came from)
        self._filters: collections.OrderedDict[tuple, tuple[pa.Table, pa.Table]] = collections.OrderedDict()

    def read(self, table_path, schema, segments, columns, filter=None, limit=None, stats=None, check=None,
             stored=None, charge=None, options=None, dictionary=()) -> pa.Table:
        # a kept segment comes back decoded: ``dictionary`` is a wish callers also take plain columns for
        if len(segments) == 1 and isinstance(segments[0], _Rows):
            return ds.dataset(segments[0].table).to_table(columns=columns, filter=filter)
        if len(segments) != 1 or limit is not None or charge is not None:
            return super().read(table_path, schema, segments, columns, filter, limit, stats, check, stored, charge,
                                options, dictionary)
        key = (table_path, segments[0].id)
        with self._decoded_lock:
            kept = self._decoded.get(key)
            if kept is not None and kept[0].equals(schema) and self.holds(table_path, schema, kept[1]):
                self._decoded.move_to_end(key)
            else:
                kept = None
        if kept is None:
            kept = (schema, super().read(table_path, schema, segments, self.columns(table_path, schema), None, None,
                                         stats))
            with self._decoded_lock:
                self._decoded[key] = kept
                while len(self._decoded) > self.entries:
                    self._decoded.popitem(last=False)
        if isinstance(columns, (list, tuple)):  # no dataset scan needed: a third of the time for an edge's rows
            return (kept[1] if filter is None else self._filtered(key, kept[1], filter)).select(list(columns))
        return ds.dataset(kept[1]).to_table(columns=columns, filter=filter)

    def need(self, table_path: str, columns) -> bool:
        """Decode ``table_path``'s segments with ``columns`` too from now on; whether that widened them (those
        decoded before are dropped: read again as needed)."""
        with self._decoded_lock:
            needed = self._needed.get(table_path, frozenset())
            if needed.issuperset(columns):
                return False
            self._needed[table_path] = needed.union(columns)
            for key in [key for key in self._decoded if key[0] == table_path]:
                del self._decoded[key]
            return True

    def columns(self, table_path: str, schema: pa.Schema) -> list[str]:
        """The columns of ``schema`` that ``table_path``'s segments are decoded with: those plans read, else all."""
        needed = self._needed.get(table_path)
        return list(schema.names) if needed is None else [name for name in schema.names if name in needed]

    def holds(self, table_path: str, schema: pa.Schema, table: pa.Table) -> bool:
        """Whether ``table`` (rows of ``table_path`` decoded) has every column of ``schema`` the plans over it read."""
        return set(self.columns(table_path, schema)).issubset(table.column_names)

    def _filtered(self, key: tuple[str, str], table: pa.Table, filter: pc.Expression) -> pa.Table:
        """``table``'s rows ``filter`` keeps (kept: every shape chunk over the table reads the segment at the end
        of its window with the same filter within a second)."""
        key = (*key, str(filter))
        with self._decoded_lock:
            kept = self._filters.get(key)
            if kept is not None and kept[0] is table:  # (not a segment decoded again for another schema)
                self._filters.move_to_end(key)
                return kept[1]
        rows = table.filter(filter)
        with self._decoded_lock:
            self._filters[key] = (table, rows)
            while len(self._filters) > self.entries:
                self._filters.popitem(last=False)
        return rows


@dataclass(frozen=True)
class _Block:
    """The segments of a table whose first event falls in one span of ``level`` seconds (the ``index``-th)."""

    level: int
    index: int
    segments: tuple
    min_time: int
    max_time: int
    key: tuple

    @classmethod
    def of(cls, level: int, index: int, segments: list) -> _Block:
        return cls(level, index, tuple(segments), min(s.min_time for s in segments),
                   max(s.max_time for s in segments), ("block", level, index, tuple(s.id for s in segments)))


@dataclass(frozen=True)
class _Core:
    """The last seconds of event time of a wide segment: its rows from ``min_time`` on, read with that bound.

    A batch with a few late events makes a segment minutes wide, across the
    edge of nearly every window; its core is as narrow as a batch of
    events on time, and the rows before it (its tail) are read apart.
    """

    segment: object
    id: str
    min_time: int
    max_time: int


class _Rows:
    """Rows in memory that a fragment reads as its one segment (:class:`RecentSegments` serves them)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.id = f"rows-{id(table)}"
        self.rows = table.num_rows
        self.min_time = self.max_time = None


def _block_key(block: _Block, fingerprint: str) -> tuple:
    """Where ``block``'s merged partial is cached (a block of one segment is that segment's partial)."""
    return (block.segments[0].id, fingerprint) if len(block.segments) == 1 else (block.key, fingerprint)


def _children(layout: _Layout, block: _Block) -> list[_Block]:
    """The blocks one level below ``block`` that it is merged from (none for the smallest level)."""
    rank = BLOCK_LEVELS.index(block.level)
    if rank + 1 == len(BLOCK_LEVELS):
        return []
    step = block.level // BLOCK_LEVELS[rank + 1]
    found = (layout.blocks.get((BLOCK_LEVELS[rank + 1], index)) for index in range(block.index * step,
                                                                                   (block.index + 1) * step))
    return [child for child in found if child is not None]


def _stored(segment):
    """The stored segment a layout entry reads."""
    return segment.segment if isinstance(segment, _Core) else segment


@dataclass(frozen=True)
class _Tail:
    """The rows of a wide segment before its core: event times in [min_time, cut), most of them late events."""

    segment: object
    id: str
    min_time: int
    cut: int
    max_time: int  # the segment's last event: tails are blocked by it, as segments end roughly when ingested


def _by_start(entry) -> tuple[int, str]:
    return entry.min_time, entry.id


def _by_end(block: _Block) -> int:
    return (block.index + 1) * block.level


def _tail_overlaps(tail: _Tail, start_us: int, end_us: int) -> bool:
    return tail.min_time < end_us and tail.cut > start_us


def _micros(times: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Event times as integer microseconds."""
    kind = times.type
    return np.asarray(times.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False))


class _Layout:
    """A snapshot's segments by first event time, and its sealed blocks at every level of BLOCK_LEVELS.

    A block is sealed once the table holds events at least SEAL_SECONDS past
    its span: later segments rarely land in it, and one that does changes
    the block's segment set, and so its cache key.  A wide segment is laid
    out as its core; its tail goes to the sealed tail block of the span of
    TAIL_BLOCK_LEVELS[0] seconds its last event falls in, or else of the
    next level's, or else stays open.
    """

    def __init__(self, segments: tuple, source=None, cut=lambda segment: None) -> None:
        self.source = source
        self.ids = {s.id for s in segments}
        self.latest = max((s.max_time for s in segments if s.max_time is not None), default=0)
        timed, tails = self._split(segments, self.latest, cut)
        self.timed = sorted(timed, key=_by_start)
        self.untimed = [s for s in segments if s.min_time is None]
        self.starts = [s.min_time for s in self.timed]
        self.span = max((s.max_time - s.min_time for s in self.timed), default=0)
        self.blocks: dict[tuple[int, int], _Block] = {}
        self.tail_blocks: list[_Block] = []
        self.tail_ends: list[int] = []
        self.open_tails: list = []
        self.open_rows: tuple[pa.Table, np.ndarray] | None = None  # theirs, sorted by event time (made when asked)
        self.newest_tail = 0  # the last event of the timed segments: what tail blocks are sealed against
        if not self.timed:
            return
        self.newest_tail = max(s.max_time for s in self.timed)
        self._tails(tails, self.newest_tail)
        self._seal()

    @classmethod
    def after(cls, previous: _Layout, segments: tuple, source, cut) -> _Layout | None:
        """``previous`` moved on to ``segments``, a later snapshot of its table holding every segment it held;
        None where new segments fall in its sealed blocks (or segments are gone): lay it out anew.

        A snapshot comes every half second per table, and laying one out
        anew walks every segment of the table's history (its blocks at
        every level): the new segments are placed and the blocks sealed
        since are made, the rest is ``previous``'s.
        """
        ids = {s.id for s in segments}
        if not previous.timed or not previous.ids <= ids:
            return None
        added = [s for s in segments if s.id not in previous.ids]
        latest = max([previous.latest, *(s.max_time for s in added if s.max_time is not None)])
        timed, tails = cls._split(added, latest, cut)
        smallest = BLOCK_LEVELS[-1] * 1_000_000
        floor = (previous.starts[-1] - SEAL_SECONDS * 1_000_000) // smallest * smallest  # sealed blocks end here
        tail_size = TAIL_BLOCK_LEVELS[-1] * 1_000_000
        tail_floor = (previous.newest_tail - SEAL_SECONDS * 1_000_000) // tail_size * tail_size
        if any(s.min_time < floor for s in timed) or any(t.max_time < tail_floor for t in tails):
            return None
        layout = cls.__new__(cls)
        layout.source, layout.ids, layout.latest = source, ids, latest
        kept = bisect.bisect_left(previous.starts, floor)  # the timed entries before stay where they are
        layout.timed = previous.timed[:kept] + sorted(previous.timed[kept:] + timed, key=_by_start)
        layout.starts = [s.min_time for s in layout.timed]
        layout.untimed = previous.untimed + [s for s in added if s.min_time is None]
        layout.span = max([previous.span, *(s.max_time - s.min_time for s in timed)])
        layout.blocks = dict(previous.blocks)
        layout.open_rows = None
        layout.newest_tail = max([previous.newest_tail, *(s.max_time for s in timed)])
        # the tails of sealed minutes stay in their blocks; those of smaller blocks may now make a minute's
        largest = TAIL_BLOCK_LEVELS[0]
        playing = [t for b in previous.tail_blocks if b.level != largest for t in b.segments]
        layout._tails(playing + previous.open_tails + tails, layout.newest_tail,
                      [b for b in previous.tail_blocks if b.level == largest])
        layout._seal(previous.starts[-1])
        return layout

    @staticmethod
    def _split(segments, latest: int, cut) -> tuple[list, list]:
        """The timed entries of ``segments`` (each, or the core of a wide one) and the tails of the wide ones."""
        wide = TAIL_SECONDS * 1_000_000
        # only near the newest events, where windows slide: a month of backfilled batches is not read to lay it out
        recent = latest - RECENT_SECONDS * 1_000_000
        timed, tails = [], []
        for segment in segments:
            if segment.min_time is None:
                continue
            start = cut(segment) if segment.max_time - segment.min_time > wide and segment.max_time >= recent else None
            if start is None:
                timed.append(segment)
            else:
                timed.append(_Core(segment, f"{segment.id}#core", start, segment.max_time))
                tails.append(_Tail(segment, f"{segment.id}#tail", segment.min_time, start, segment.max_time))
        return timed, tails

    def _seal(self, newest_before: int | None = None) -> None:
        """Make the blocks sealed now at each level (those sealed when the newest start was ``newest_before``
        are made already)."""
        newest = self.starts[-1]
        for level in BLOCK_LEVELS:
            size = level * 1_000_000
            sealed = (newest - SEAL_SECONDS * 1_000_000) // size  # blocks before this index are sealed
            before = (newest_before - SEAL_SECONDS * 1_000_000) // size if newest_before is not None else None
            if before is not None and sealed <= before:
                continue
            first = bisect.bisect_left(self.starts, before * size) if before is not None else 0
            last = bisect.bisect_left(self.starts, sealed * size, first)
            members: dict[int, list] = {}
            for segment in self.timed[first:last]:
                members.setdefault(segment.min_time // size, []).append(segment)
            for index, inside in members.items():
                self.blocks[(level, index)] = _Block.of(level, index, inside)

    def _tails(self, tails: list, newest: int, sealed_before: list[_Block] = ()) -> None:
        """Tails into sealed blocks: of TAIL_BLOCK_LEVELS[0] seconds, then the rest into the smaller ones (with
        ``sealed_before``, blocks made already)."""
        blocks = list(sealed_before)
        tails = sorted(tails, key=lambda t: (t.max_time, t.id))
        for level in TAIL_BLOCK_LEVELS:
            size = level * 1_000_000
            sealed = (newest - SEAL_SECONDS * 1_000_000) // size
            members: dict[int, list] = {}
            rest = []
            for tail in tails:
                index = tail.max_time // size
                if index < sealed:
                    members.setdefault(index, []).append(tail)
                else:
                    rest.append(tail)
            for index, inside in members.items():  # each tail's rows lie in [its first event, its cut)
                blocks.append(_Block(level, index, tuple(inside), min(t.min_time for t in inside),
                                     max(t.cut for t in inside), ("tails", level, index, tuple(t.id for t in inside))))
            tails = rest
        self.open_tails = tails
        # by when their segments end: a tail's rows lie before its segment's last event
        self.tail_blocks = sorted(blocks, key=_by_end)
        self.tail_ends = [_by_end(b) * 1_000_000 for b in self.tail_blocks]

    def overlapping(self, start_us: int, end_us: int) -> list:
        """The timed segments (and cores) with events in [start_us, end_us)."""
        low = bisect.bisect_left(self.starts, start_us - self.span)
        high = bisect.bisect_left(self.starts, end_us)
        return [s for s in self.timed[low:high] if s.max_time >= start_us]

    def tail_blocks_overlapping(self, start_us: int, end_us: int) -> list[_Block]:
        """The sealed tail blocks with tail rows possibly in [start_us, end_us) (``max_time``: the last cut)."""
        first = bisect.bisect_right(self.tail_ends, start_us)  # blocks of segments ending before the window are out
        return [block for block in self.tail_blocks[first:] if block.min_time < end_us and block.max_time > start_us]


def _histograms(plan: Plan, kept: bool = False) -> Plan:
    """``plan`` with each ``approx_quantile`` over numbers made an ``approx_quantile_dd``.

    A monitor's quantile is computed from log-bucket histograms
    (:mod:`engine.query.execution.sketches`), within 1% of the true
    quantile's value: their states merge by adding counts, for every group
    at once, where a KLL sketch per group and column is built, serialized
    and merged one by one.  A shared scan holds a quantile column per
    monitor variant, over every row of every new segment, and merges them at
    every slot: sketches made quantile monitors the most costly by far.
    Quantiles of times and dates, and of DISTINCT values, stay KLL sketches
    (a relative error is no use on a timestamp).

    ``kept``: the final merge returns each merged histogram itself (a list
    of entries, see ``dd_histogram``) instead of its quantile; the partial
    states are the same either way.
    """
    names = set()
    for node in plan.walk():
        if isinstance(node, Aggregate) and node.mode != "final" and node.schema is not None:
            for call in node.aggregates:
                if call.func == "approx_quantile" and not call.distinct and call.arg in node.schema.names:
                    kind = node.schema.field(call.arg).type
                    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
                        names.add(call.name)
    return _with_histograms(plan, names, kept) if names else plan


def _with_histograms(plan: Plan, names: set[str], kept: bool) -> Plan:
    inputs = tuple(_with_histograms(child, names, kept) for child in plan.inputs)
    if inputs:
        plan = plan.with_inputs(*inputs)
    if isinstance(plan, Aggregate):
        func = "dd_histogram" if kept and plan.mode != "partial" else "approx_quantile_dd"
        plan = replace(plan, aggregates=tuple(replace(call, func=func) if call.name in names else call
                                              for call in plan.aggregates))
        if plan.mode != "final":
            plan = _masked(plan)
    return plan


def _masked(plan: Aggregate) -> Aggregate:
    """``plan`` with each histogram over ``CASE WHEN c THEN x END`` (what a FILTER clause becomes) made a
    histogram of ``x`` over the rows where ``c`` holds.

    A shared scan holds one filtered quantile per monitor variant (a
    hundred, one per excluded host): each was a column of its own, the
    value copied where the condition held, and its bucket codes taken
    again.  Now the condition alone is projected (a boolean), the value
    once, and its codes are made once for all of them.
    """
    project = plan.input
    if not isinstance(project, Project) or project.compiled is None or not isinstance(project.input, Scan):
        return plan
    schema = project.input.source.schema
    index = {name: i for i, name in enumerate(project.names)}
    uses: dict[str, int] = {}
    for call in plan.aggregates:
        for name in (call.arg, *call.by):
            uses[name] = uses.get(name, 0) + 1
    names, exprs, compiled = list(project.names), list(project.exprs), list(project.compiled)
    types = list(plan.schema.types) if plan.schema is not None and len(plan.schema) == len(names) else None
    values: dict[str, str] = {}  # value column -> its projected name
    calls = []
    for call in plan.aggregates:
        position = index.get(call.arg) if call.func in HISTOGRAMS and not call.by else None
        parts = _case_parts(exprs[position]) if position is not None else None
        if parts is None or uses[call.arg] > 1 or call.arg in plan.keys or parts[1] not in schema.names:
            calls.append(call)
            continue
        condition, column = parts
        try:
            mask = ExpressionCompiler(schema).predicate(condition)
        except PetrelError:
            calls.append(call)
            continue
        value = values.get(column)
        if value is None:
            value = values[column] = f"__dd_value_{len(values)}"
            names.append(value)
            exprs.append(exp.column(column))
            compiled.append(pc.field(column))
            if types is not None:
                types.append(schema.field(column).type)
        exprs[position], compiled[position] = condition, mask
        if types is not None:
            types[position] = pa.bool_()
        calls.append(replace(call, arg=value, by=(call.arg,)))
    if not values:
        return plan
    project = replace(project, names=tuple(names), exprs=tuple(exprs), compiled=tuple(compiled))
    return replace(plan, input=project, aggregates=tuple(calls),
                   schema=pa.schema(list(zip(names, types))) if types is not None else plan.schema)


def _case_parts(node: exp.Expression) -> tuple[exp.Expression, str] | None:
    """(c, x) of ``CASE WHEN c THEN x END`` with ``x`` a column; None for any other expression."""
    if not isinstance(node, exp.Case) or node.this is not None or len(node.args.get("ifs") or []) != 1:
        return None
    default = node.args.get("default")
    if default is not None and not isinstance(default, exp.Null):
        return None
    branch = node.args["ifs"][0]
    true = branch.args.get("true")
    if not isinstance(true, exp.Column):
        return None
    return branch.this, true.name


def _current(scan: Scan, source) -> bool:
    """Whether ``scan`` was planned against the table as ``source`` has it now (metadata and schema)."""
    meta, schema = getattr(source, "meta", None), getattr(source, "schema", None)
    return meta == scan.source.meta and schema is not None and schema.equals(scan.source.schema)


def _timed(scan: Scan) -> bool:
    """Whether ``scan``'s table has a timestamp time column (a window bounds it)."""
    schema, column = scan.source.schema, scan.source.meta.time_column
    return column in schema.names and pa.types.is_timestamp(schema.field(column).type)


def _window_scan(scan: Scan, start_us: int | None, end_us: int | None) -> Scan:
    """``scan`` (of a :func:`_timed` table) also keeping only event times in [start_us, end_us) (None: no bound
    on that side)."""
    meta = scan.source.meta
    kind = scan.source.schema.field(meta.time_column).type
    if start_us is None and end_us is None:
        return scan
    column = pc.field(meta.time_column)
    sql = exp.column(meta.time_column)
    # the text is compiled again where a read leaves part of the filter for later (string keys read as
    # dictionaries): it must say what the expression does, in SQL
    conditions = []
    if start_us is not None:
        conditions.append((column >= _time(start_us, kind),
                           exp.GTE(this=sql.copy(), expression=timestamp_literal(start_us / 1e6))))
    if end_us is not None:
        conditions.append((column < _time(end_us, kind),
                           exp.LT(this=sql.copy(), expression=timestamp_literal(end_us / 1e6))))
    window, text = conditions[0]
    for expression, condition in conditions[1:]:
        window, text = window & expression, exp.and_(text, condition)
    return replace(
        scan,
        filter=exp.and_(scan.filter, text) if scan.filter is not None else text,
        compiled=(scan.compiled & window) if scan.compiled is not None else window,
        time_range=(start_us, None if end_us is None else end_us - 1),
    )


def _time(micros: int, kind: pa.DataType) -> pa.Scalar:
    """A time in microseconds as a scalar of the time column's type ``kind``."""
    return pa.scalar(micros, pa.timestamp("us", tz=kind.tz)).cast(kind)


def _by_second(fragment: Plan) -> Aggregate | None:
    """``fragment`` (a partial aggregate over a projection of its scan) also grouped by the second of each row's
    event time, as column SECOND (NULL for a NULL time); None for any other fragment."""
    if not (isinstance(fragment, Aggregate) and fragment.mode == "partial" and isinstance(fragment.input, Project)
            and fragment.input.compiled is not None and isinstance(fragment.input.input, Scan)):
        return None
    project = fragment.input
    column = project.input.source.meta.time_column
    if SECOND in project.names or column not in project.input.source.schema.names:
        return None
    kind = project.input.source.schema.field(column).type
    micros = pc.field(column).cast(pa.timestamp("us", tz=kind.tz), safe=False).cast(pa.int64()).cast(pa.float64())
    second = pc.floor(pc.divide(micros, 1e6)).cast(pa.int64())  # whole seconds, earlier ones below zero too
    project = replace(project, names=(*project.names, SECOND), exprs=(*project.exprs, exp.column(column)),
                      compiled=(*project.compiled, second))
    schema = fragment.schema
    if schema is not None and len(schema) == len(fragment.input.names):
        schema = schema.append(pa.field(SECOND, pa.int64()))
    return replace(fragment, input=project, keys=(*fragment.keys, SECOND), schema=schema)


def _by_seconds(states: pa.Table) -> pa.Table:
    """Per-second partial states sorted by their second (those of rows without a time dropped: in no window)."""
    second = states.column(SECOND)
    if second.null_count:
        states = states.filter(pc.is_valid(second))
    return states.take(pc.sort_indices(states.column(SECOND))).combine_chunks()


def _only(plan: Plan, keep: frozenset[str]) -> Plan | None:
    """``plan``'s part above its gather computing only the output columns ``keep``; None where it cannot tell.

    The gather and everything below it are the same objects, so gathered
    partials (looked up by the gather's identity) still apply.
    """
    if isinstance(plan, Project):
        index = [i for i, name in enumerate(plan.names) if name in keep]
        needed = frozenset(column.name for i in index for column in plan.exprs[i].find_all(exp.Column))
        child = _only(plan.input, needed)
        if child is None:
            return None
        compiled = tuple(plan.compiled[i] for i in index) if plan.compiled is not None else None
        return replace(plan, input=child, names=tuple(plan.names[i] for i in index),
                       exprs=tuple(plan.exprs[i] for i in index), compiled=compiled)
    if isinstance(plan, Aggregate) and plan.mode == "final" and isinstance(plan.input, Gather):
        return replace(plan, aggregates=tuple(call for call in plan.aggregates if call.name in keep))
    return None


def _partial_only(fragment: Plan, keep: frozenset[str]) -> Plan:
    """The partial aggregate ``fragment`` computing only the aggregates named ``keep`` (and the inputs they read).

    Only a partial aggregate over a projection (or straight over its scan)
    is pruned; any other fragment comes back as it is.
    """
    if not isinstance(fragment, Aggregate) or fragment.mode != "partial":
        return fragment
    calls = tuple(call for call in fragment.aggregates if call.name in keep)
    if len(calls) == len(fragment.aggregates):
        return fragment
    below = fragment.input
    if isinstance(below, Project):
        needed = set(fragment.keys) | {c.arg for c in calls if c.arg is not None} | {b for c in calls for b in c.by}
        index = [i for i, name in enumerate(below.names) if name in needed]
        compiled = tuple(below.compiled[i] for i in index) if below.compiled is not None else None
        below = replace(below, names=tuple(below.names[i] for i in index), exprs=tuple(below.exprs[i] for i in index),
                        compiled=compiled)
    elif not isinstance(below, Scan):
        return fragment
    return replace(fragment, aggregates=calls, input=below)


def _final_of(plan: Plan) -> Aggregate | None:
    """The final aggregate right above the plan's gather, if there is one."""
    for node in plan.walk():
        if isinstance(node, Aggregate) and node.mode == "final" and isinstance(node.input, Gather):
            return node
    return None


def _only_states(parts: list[pa.Table], final: Aggregate | None) -> list[pa.Table]:
    """``parts`` keeping only the group keys and the partial states ``final`` merges (``<aggregate>__<state>``)."""
    if final is None:
        return parts
    keys = set(final.keys)
    calls = {call.name for call in final.aggregates}
    out, chosen = [], {}
    for part in parts:
        names = tuple(part.column_names)
        wanted = chosen.get(names)
        if wanted is None:
            wanted = chosen[names] = [n for n in names if n in keys or n.rsplit("__", 1)[0] in calls]
        out.append(part.select(wanted) if wanted and len(wanted) < len(names) else part)
    return out


def _replace_scan(plan: Plan, old: Scan, new: Scan) -> Plan:
    """``plan`` with the scan ``old`` replaced by ``new`` (a fragment is a chain of one-input operators)."""
    if plan is old:
        return new
    child = getattr(plan, "input", None)
    if child is None:
        return plan
    return replace(plan, input=_replace_scan(child, old, new))


def _single_gather(plan: Plan) -> Gather | None:
    """The plan's only exchange, if it has exactly one (a scan below it); else None."""
    gathers = [node for node in plan.walk() if isinstance(node, Gather)]
    return gathers[0] if len(gathers) == 1 else None
