"""Nesting depth of JSON lines: rows nested too deep are found without slowing the reading of the others.

A row may nest at most ``MAX_DEPTH`` levels of objects and arrays.  JSON
readers recurse once per level: pyarrow's crashes the process on a line
nested some thousands of levels deep, Python's ``json`` raises
RecursionError at about a thousand.  So no reader may see a line nested
much deeper than the limit, and finding such lines must cost little next to
reading the batch (10,000 log lines read in about 30 ms).  Three steps, each
only when the one before cannot clear the batch:

1. :func:`scan_lines`, a bound from one pass over the bytes: a line cannot
   nest deeper than it has opening brackets (``{`` and ``[``, those inside
   strings included).  For ordinary events no line holds more than
   ``MAX_DEPTH`` of them and nothing more is done.
2. A batch with such lines but none holding more than ``READER_SAFE_DEPTH``
   (rows with long arrays of objects) is read, and the nesting of the
   schema it was read into bounds every row's (:func:`schema_depth`).
3. Otherwise :func:`deep_lines` finds the lines too deep exactly, before any
   reader sees them: quotes after an odd run of backslashes are escaped, the
   others open and close strings within their line, brackets outside
   strings step the depth up and down, each line counted from its own
   start.  This is what a JSON reader does up to the first error of a line;
   past an error it stops, so what the scan says there cannot make it recurse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

MAX_DEPTH = 64  # levels of objects and arrays in one row
READER_SAFE_DEPTH = 4 * MAX_DEPTH  # levels any JSON reader goes through safely, on any thread's stack

_NEWLINE, _QUOTE, _BACKSLASH = 10, 34, 92
_OPENING = 123  # "{"; "[" (91) is the same byte with bit 5 clear, so (byte | 32) == 123 finds both
_CLOSING = 125  # "}"; "]" (93) likewise
_CHUNK = 1 << 16
_MARKED = np.zeros(256, dtype=bool)  # the bytes that decide the depth: newline, quote, backslash, brackets
_MARKED[[_NEWLINE, _QUOTE, _BACKSLASH, ord("{"), ord("["), ord("}"), ord("]")]] = True


@dataclass(frozen=True)
class LineScan:
    """What one pass over a JSON-lines batch tells before it is read.

    ``lines`` counts the pieces between newlines, blank ones included;
    ``crowded``: some line holds more than MAX_DEPTH opening brackets, so it
    may nest too deep; ``unsafe``: some line holds more than
    READER_SAFE_DEPTH, so no reader may see the batch before :func:`deep_lines`.
    """

    lines: int
    longest: int
    crowded: bool
    unsafe: bool


def scan_lines(data: bytes) -> LineScan:
    """The line count, longest line and bracket bounds of ``data`` (JSON lines)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    newlines, opening = _positions(codes)
    bounds = np.concatenate(([-1], newlines, [len(codes)]))
    longest = int(np.diff(bounds).max()) - 1
    crowded = unsafe = False
    # more than MAX_DEPTH opening brackets on one line lie closer together than the longest line is long
    if len(opening) > MAX_DEPTH and ((opening[MAX_DEPTH:] - opening[:-MAX_DEPTH]) < longest).any():
        line = np.searchsorted(newlines, opening)  # the line of every opening bracket
        crowded = bool((line[MAX_DEPTH:] == line[:-MAX_DEPTH]).any())
        unsafe = crowded and len(line) > READER_SAFE_DEPTH and bool(
            (line[READER_SAFE_DEPTH:] == line[:-READER_SAFE_DEPTH]).any())
    return LineScan(len(newlines) + 1, longest, crowded, unsafe)


def _positions(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the newlines and the opening brackets are.

    Read in chunks of _CHUNK bytes: temporaries that small are reused by the
    allocator, where ones the size of a batch cost a fresh allocation (page
    faults) each, about as much as the comparisons themselves.
    """
    newlines, opening = [], []
    for start in range(0, len(codes), _CHUNK):
        part = codes[start:start + _CHUNK]
        newlines.append(np.flatnonzero(part == _NEWLINE) + start)
        opening.append(np.flatnonzero((part | 32) == _OPENING) + start)
    if len(newlines) == 1:
        return newlines[0], opening[0]
    return np.concatenate(newlines), np.concatenate(opening)


def schema_depth(schema: pa.Schema) -> int:
    """How deep the rows read into ``schema`` can nest: the row's object, then each struct and list level."""
    return 1 + max((_type_depth(f.type) for f in schema), default=0)


def _type_depth(t: pa.DataType) -> int:
    if pa.types.is_struct(t):
        return 1 + max((_type_depth(t.field(i).type) for i in range(t.num_fields)), default=0)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return 1 + _type_depth(t.value_type)
    if pa.types.is_map(t):
        return 1 + _type_depth(t.item_type)
    return 0


def deep_lines(data: bytes) -> np.ndarray:
    """Indices of the lines of ``data`` (blank ones counted) nested deeper than MAX_DEPTH, ascending.

    Works on the bytes that matter (newlines, quotes, backslashes, brackets),
    in their order: every step is a running sum or maximum over them.
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    marks = np.flatnonzero(_MARKED[codes])
    kinds = codes[marks]
    index = np.arange(len(marks), dtype=np.int64)
    newline = kinds == _NEWLINE
    line_start = np.maximum.accumulate(np.where(newline, index, -1))  # the newline before each mark
    starts = np.maximum(line_start, 0)
    began = line_start >= 0
    quotes = _unescaped(kinds == _QUOTE, kinds == _BACKSLASH, marks, index)
    seen = np.cumsum(quotes, dtype=np.int64)
    # a bracket is inside a string when an odd number of its line's quotes come before it
    inside = ((seen - np.where(began, seen[starts], 0)) & 1).astype(bool)
    folded = kinds | 32
    steps = (folded == _OPENING).astype(np.int64) - (folded == _CLOSING)
    steps[inside] = 0
    depth = np.cumsum(steps)
    within = depth - np.where(began, depth[starts], 0)  # depth within its own line
    return np.unique(np.cumsum(newline, dtype=np.int64)[within > MAX_DEPTH])


def _unescaped(quote: np.ndarray, backslash: np.ndarray, marks: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Which marks are quotes not escaped, i.e. not right after an odd run of backslashes."""
    if not backslash.any():
        return quote
    adjacent = np.zeros(len(marks), dtype=bool)
    adjacent[1:] = marks[1:] == marks[:-1] + 1
    after_backslash = np.zeros(len(marks), dtype=bool)
    after_backslash[1:] = backslash[:-1] & adjacent[1:]
    run_start = backslash & ~after_backslash
    began = np.maximum.accumulate(np.where(run_start, index, -1))  # where the latest run of backslashes began
    escaped = quote & after_backslash & (((index - began) & 1) == 1)
    return quote & ~escaped
