"""Parsing: whatever a client sends, as Arrow tables tagged with input row numbers.

Inputs: a pyarrow Table or RecordBatch (the fast path, no copy), a list of
dicts, a pandas DataFrame, or JSON-lines bytes/text.  JSON lines are read by
``pyarrow.json`` in one go; only when that fails are the lines bisected, so
the good lines still go through the fast reader and just the failing lines
are looked at one by one (and rejected with a reason when they are not JSON
objects).  Row numbers count the rows the client sent (for JSON lines: the
non-blank lines), so a rejection names the row the client knows.

Two kinds of rows are refused before anything parses them:

- a row nested deeper than ``MAX_DEPTH`` levels (objects and arrays): the
  JSON reader would exhaust its stack on it (pyarrow's crashes the
  process at a depth of about 10,000, Python's raises RecursionError);
- a row whose flattening would give one name two values
  (``{"a": {"b": 1}, "a.b": 2}``): nothing is dropped silently.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from engine.ingest.timestamps import describe
from storage.errors import IngestError

_BISECT_LEAF = 32
_MIN_BLOCK = 1 << 20
MAX_DEPTH = 64  # levels of objects and arrays in one row


class RowRefused(Exception):
    """Internal: a row refused while it is being read, with the reason to report."""


@dataclass
class Piece:
    """Rows that parsed together: an Arrow table and the input row number of each row."""

    table: pa.Table
    rows: np.ndarray
    sizes_checked: bool = False


@dataclass
class Parsed:
    """A client's batch, parsed: pieces of rows, rows refused already, and the raw rows."""

    pieces: list[Piece]
    rejected: dict[int, str]
    total: int
    raw: Callable[[int], str] = field(repr=False, default=lambda i: "")


def parse(data: Any, max_row_bytes: int, hints: pa.Schema | None = None, time_column: str | None = None) -> Parsed:
    """Turn ``data`` into :class:`Parsed`; IngestError when the input kind is unknown.

    ``hints`` (the table's schema) picks the type of a column whose values are
    mixed; values of the ``time_column`` may mix text, numbers and datetimes.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return Parsed([Piece(data, np.arange(data.num_rows, dtype=np.int64))], {}, data.num_rows, _arrow_raw(data))
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return parse_json_lines(raw, max_row_bytes, hints, time_column)
    if type(data).__module__.startswith("pandas") and type(data).__name__ == "DataFrame":
        return _parse_pandas(data, hints, time_column)
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, (list, tuple)) or (hasattr(data, "__iter__") and not isinstance(data, (set, frozenset))):
        return parse_dicts(list(data), hints, time_column=time_column)
    raise IngestError(
        f"cannot ingest a {type(data).__name__}; pass a pyarrow Table or RecordBatch, a list of dicts, "
        "a pandas DataFrame, or JSON-lines bytes"
    )


# -- Arrow and pandas ---------------------------------------------------------------

def _arrow_raw(table: pa.Table) -> Callable[[int], str]:
    return lambda i: json.dumps(table.slice(i, 1).to_pylist()[0], default=str)


def _parse_pandas(frame: Any, hints: pa.Schema | None, time_column: str | None) -> Parsed:
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return parse_dicts(frame.to_dict("records"), hints, time_column=time_column)
    return Parsed([Piece(table, np.arange(table.num_rows, dtype=np.int64))], {}, table.num_rows, _arrow_raw(table))


# -- lists of dicts -------------------------------------------------------------

def flatten_row(row: dict, prefix: str = "", out: dict | None = None, depth: int = 1) -> dict:
    """A nested dict as one level, its keys joined with dots (``http.status_code``).

    Raises :class:`RowRefused` when the row is nested deeper than MAX_DEPTH
    or two of its fields flatten to one name with a value each.
    """
    out = {} if out is None else out
    if depth > MAX_DEPTH:
        raise RowRefused(_too_deep(depth))
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flatten_row(value, name + ".", out, depth + 1)
            continue
        if isinstance(value, (list, tuple)) and _depth(value, depth + 1) > MAX_DEPTH:
            raise RowRefused(_too_deep(MAX_DEPTH + 1))
        if out.get(name) is not None and value is not None:
            raise RowRefused(collision(name))
        if value is not None or name not in out:
            out[name] = value
    return out


def collision(name: str) -> str:
    """The reason a row is refused when two of its fields flatten to ``name``."""
    return (f"field {name!r} is given twice: once as a dotted key and once as a nested object "
            f"(both flatten to {name!r}); send one of them or rename the other")


def _too_deep(depth: int) -> str:
    return f"row is nested more than {MAX_DEPTH} levels deep; flatten it (the limit is {MAX_DEPTH})"


def _depth(value: Any, depth: int) -> int:
    """How deep ``value`` nests (lists and dicts), counting from ``depth``; stops past MAX_DEPTH."""
    deepest = depth
    stack = [(value, depth)]
    while stack and deepest <= MAX_DEPTH:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def parse_dicts(
    rows: list,
    hints: pa.Schema | None = None,
    row_numbers: np.ndarray | None = None,
    time_column: str | None = None,
) -> Parsed:
    """Rows given as dicts (nested ones flattened); a value that fits no column type rejects its row."""
    numbers = np.arange(len(rows), dtype=np.int64) if row_numbers is None else row_numbers
    rejected: dict[int, str] = {}
    flat, kept = [], []
    for position, row in enumerate(rows):
        if isinstance(row, dict):
            try:
                flat.append(flatten_row(row))
            except RowRefused as refused:
                rejected[int(numbers[position])] = str(refused)
                continue
            kept.append(position)
        else:
            rejected[int(numbers[position])] = f"row is a {type(row).__name__} ({describe(row)}), not an object"
    raw = lambda i: _dump(rows[int(np.searchsorted(numbers, i))])  # noqa: E731
    if not flat:
        return Parsed([], rejected, len(rows), raw)
    names = list(dict.fromkeys(name for row in flat for name in row))
    bad = np.zeros(len(flat), dtype=bool)
    columns = []
    for name in names:
        values = [row.get(name) for row in flat]
        hint = hints.field(name).type if hints is not None and name in hints.names else None
        if name == time_column:
            column, failed = _time_column(values), {}
        else:
            column, failed = _column(name, values, hint)
        for i, reason in failed.items():
            if not bad[i]:
                bad[i] = True
                rejected[int(numbers[kept[i]])] = reason
        columns.append(column)
    table = pa.Table.from_arrays(columns, names=names)
    rows_kept = numbers[np.asarray(kept, dtype=np.int64)]
    if bad.any():
        keep = ~bad
        table = table.filter(pa.array(keep))
        rows_kept = rows_kept[keep]
    return Parsed([Piece(table, rows_kept)], rejected, len(rows), raw)


def _dump(row: Any) -> str:
    try:
        return json.dumps(row, default=str)
    except (RecursionError, ValueError):  # nested too deep to write back, or circular
        return repr(row)[:4096]


def _time_column(values: list) -> pa.Array:
    """Times may mix ISO text, epoch numbers and datetimes; as text, each is read later."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    return pa.array(
        [None if v is None else v if isinstance(v, str) else v.isoformat() if hasattr(v, "isoformat") else str(v)
         for v in values],
        type=pa.string(),
    )


def _column(name: str, values: list, hint: pa.DataType | None) -> tuple[pa.Array, dict[int, str]]:
    """One column from Python values; values that do not fit its type are reported."""
    try:
        return pa.array(values), {}
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    target = hint
    failed: dict[int, str] = {}
    fitted = []
    for i, value in enumerate(values):
        if value is None:
            fitted.append(None)
            continue
        try:
            scalar = pa.scalar(value)
            if target is None:
                target = scalar.type
            if not scalar.type.equals(target):
                if not (_numeric(scalar.type) and _numeric(target)):
                    raise TypeError("different kinds")
                scalar = scalar.cast(target)
            fitted.append(scalar.as_py())
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError):
            expected = f"{target}" if target is not None else "a value Arrow can store"
            failed[i] = (
                f"field {name!r}: value {describe(value)} of type {type(value).__name__} does not fit; "
                f"expected {expected}"
            )
            fitted.append(None)
    return pa.array(fitted, type=target), failed


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


# -- JSON lines ---------------------------------------------------------------------

def _read_json(data: bytes) -> pa.Table:
    options = pajson.ReadOptions(use_threads=False, block_size=max(_MIN_BLOCK, len(data) + 1))
    return pajson.read_json(io.BytesIO(data), read_options=options)


def _longest_line(data: bytes) -> int:
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    bounds = np.concatenate(([-1], newlines, [len(data)]))
    return int(np.diff(bounds).max()) - 1


def parse_json_lines(
    data: bytes, max_row_bytes: int, hints: pa.Schema | None = None, time_column: str | None = None
) -> Parsed:
    """JSON lines (one object per non-blank line), with per-line rejections."""
    state: dict[str, list[bytes]] = {}

    def lines() -> list[bytes]:
        if "lines" not in state:
            state["lines"] = [line for line in data.split(b"\n") if line.strip()]
        return state["lines"]

    def raw(i: int) -> str:
        return lines()[i].decode("utf-8", errors="replace").rstrip("\r")

    if not data.strip():
        return Parsed([], {}, 0, raw)
    deep = _too_deep_lines(data)
    if not deep and (len(data) <= max_row_bytes or _longest_line(data) <= max_row_bytes):
        try:
            table = _read_json(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            table = None
        if table is not None:
            expected = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            if table.num_rows == expected or table.num_rows == len(lines()):
                piece = Piece(table, np.arange(table.num_rows, dtype=np.int64), sizes_checked=True)
                return Parsed([piece], {}, table.num_rows, raw)
    every = lines()
    rejected: dict[int, str] = {}
    kept: list[int] = []
    deep_lines = {i for i, line in enumerate(every) if deep and _line_depth(line) > MAX_DEPTH}
    for i, line in enumerate(every):
        if i in deep_lines:
            rejected[i] = _too_deep(MAX_DEPTH + 1)
        elif len(line) > max_row_bytes:
            rejected[i] = f"row is {len(line)} bytes; the limit is {max_row_bytes} bytes — split it or raise max_row_bytes"
        else:
            kept.append(i)
    pieces: list[Piece] = []
    loose: list[tuple[int, Any]] = []
    _bisect_lines(every, kept, pieces, loose, rejected)
    if loose:
        numbers = np.asarray([i for i, _ in loose], dtype=np.int64)
        extra = parse_dicts([row for _, row in loose], hints, numbers, time_column)
        pieces.extend(extra.pieces)
        rejected.update(extra.rejected)
    for piece in pieces:
        piece.sizes_checked = True
    return Parsed(pieces, rejected, len(every), raw)


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]\n")


def _too_deep_lines(data: bytes) -> bool:
    """Whether some line may nest deeper than MAX_DEPTH (a quick upper bound: brackets in strings count too)."""
    kept = data.translate(None, _NOT_BRACKETS)  # brackets and newlines only: one pass in C, a small result
    if len(kept) <= MAX_DEPTH:
        return False
    marks = np.frombuffer(kept, dtype=np.uint8)
    newline = marks == 10
    depth = np.cumsum(np.where((marks == 123) | (marks == 91), 1, np.where(newline, 0, -1)).astype(np.int64))
    last_newline = np.maximum.accumulate(np.where(newline, np.arange(len(marks)), -1))
    base = np.where(last_newline >= 0, depth[np.maximum(last_newline, 0)], 0)  # the depth its line began at
    return bool(np.any(depth - base > MAX_DEPTH))


def _line_depth(line: bytes) -> int:
    """How deep one line nests, brackets inside strings not counted (stops past MAX_DEPTH)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 92:  # backslash
                escaped = True
            elif byte == 34:
                in_string = False
        elif byte == 34:
            in_string = True
        elif byte in (123, 91):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif byte in (125, 93):
            depth -= 1
    return deepest


def _bisect_lines(lines: list[bytes], kept: list[int], pieces: list[Piece], loose: list, rejected: dict) -> None:
    """Read ``kept`` lines with the fast reader, halving around the lines it refuses."""
    if not kept:
        return
    if len(kept) > _BISECT_LEAF:
        try:
            table = _read_json(b"\n".join(lines[i] for i in kept))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            table = None
        if table is not None and table.num_rows == len(kept):
            pieces.append(Piece(table, np.asarray(kept, dtype=np.int64)))
            return
        mid = len(kept) // 2
        _bisect_lines(lines, kept[:mid], pieces, loose, rejected)
        _bisect_lines(lines, kept[mid:], pieces, loose, rejected)
        return
    for i in kept:
        try:
            value = json.loads(lines[i])
        except (ValueError, UnicodeDecodeError) as exc:
            rejected[i] = f"row is not valid JSON ({exc}): {describe(lines[i].decode('utf-8', 'replace'))}"
            continue
        if isinstance(value, dict):
            loose.append((i, value))
        else:
            rejected[i] = f"row is a JSON {type(value).__name__} ({describe(value)}), not an object"
