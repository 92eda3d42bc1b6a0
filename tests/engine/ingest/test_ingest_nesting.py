"""Too-deep JSON lines are found from the bytes exactly, whatever their strings hold, and never reach a reader."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ingest.nesting import MAX_DEPTH, READER_SAFE_DEPTH, deep_lines, scan_lines
from engine.ingest.parse import parse_json_lines

NEAR_LIMIT = [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, READER_SAFE_DEPTH + 1]
TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\n\t/é', max_size=12)


def depth(value) -> int:
    """Levels of objects and arrays in ``value``, as a JSON row counts them."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(levels: int, text: str, wide: int) -> dict:
    """A row ``levels`` deep with ``text`` at every level and ``wide`` shallow objects beside the nesting."""
    value: object = text
    for level in range(levels - 1):
        value = [text, value] if level % 2 else {"t": text, "v": value}
    return {"t": text, "items": [{"k": text} for _ in range(wide)], "v": value}


rows = st.builds(
    nested,
    st.one_of(st.integers(1, 8), st.sampled_from(NEAR_LIMIT)),
    TRICKY_TEXT,
    st.sampled_from([0, 2, MAX_DEPTH + 5]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=12), st.booleans())
def test_the_lines_found_too_deep_are_exactly_the_rows_nested_deeper_than_the_limit(values, ascii_only):
    data = "\n".join(json.dumps(v, ensure_ascii=ascii_only) for v in values).encode()
    expected = [i for i, v in enumerate(values) if depth(v) > MAX_DEPTH]
    assert deep_lines(data).tolist() == expected
    scan = scan_lines(data)
    assert scan.lines == len(values)
    assert scan.longest == max(len(line) for line in data.split(b"\n"))
    assert scan.crowded or not expected  # the bound never misses a deep line
    parsed = parse_json_lines(data, 1 << 20)  # (mixed lists may refuse other rows, for their types)
    assert sorted(i for i, reason in parsed.rejected.items() if "nested more than" in reason) == expected


def test_escaped_quotes_and_closing_brackets_in_strings_do_not_hide_a_deep_row():
    hiding = [
        {"s": "]" * 500, "a": json.loads("[" * 100 + "]" * 100)},
        {"s": 'x\\"]]]]' * 50, "a": json.loads("[" * 100 + "]" * 100)},
        {"s": "\\\\", "a": json.loads("[" * 100 + "]" * 100)},
    ]
    shallow = [{"s": '"[[[[' * 40}, {"s": "\\" * 7 + "[" * 100}, {"a": [[1]] * 200}]
    data = "\n".join(json.dumps(v) for v in hiding + shallow).encode()
    assert deep_lines(data).tolist() == [0, 1, 2]
    parsed = parse_json_lines(data, 1 << 20)
    assert sorted(parsed.rejected) == [0, 1, 2] and sum(p.table.num_rows for p in parsed.pieces) == 3


def test_wide_shallow_rows_are_read_in_one_go_and_a_row_over_the_limit_is_refused_among_them():
    wide = [{"n": i, "items": [{"k": j} for j in range(100)]} for i in range(50)]
    data = "\n".join(json.dumps(v) for v in wide).encode()
    scan = scan_lines(data)
    assert scan.crowded and not scan.unsafe
    parsed = parse_json_lines(data, 1 << 20)
    assert parsed.rejected == {} and len(parsed.pieces) == 1 and parsed.pieces[0].table.num_rows == 50
    deep = json.dumps({"a": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)})  # the object and 64 arrays
    at_limit = json.dumps({"a": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))})
    parsed = parse_json_lines(b"\n".join([data, deep.encode(), at_limit.encode(), b""]), 1 << 20)
    assert list(parsed.rejected) == [50] and "nested more than" in parsed.rejected[50]
    assert np.concatenate([p.rows for p in parsed.pieces]).tolist() == [*range(50), 51]


def test_blank_lines_keep_the_row_numbers_the_client_knows():
    deep = json.dumps({"a": json.loads("[" * 300 + "]" * 300)}).encode()
    parsed = parse_json_lines(b"\n\n" + b'{"a": 1}\n  \n' + deep + b"\n\n" + b'{"a": 2}\n', 1 << 20)
    assert list(parsed.rejected) == [1] and parsed.total == 3


def test_a_row_deep_enough_to_crash_the_reader_behind_closing_brackets_in_a_string_is_refused():
    # run apart: if the check missed it, pyarrow's reader would take the whole process down
    script = (
        "from engine.ingest.parse import parse_json_lines\n"
        "row = b'{\"s\": \"' + b']' * 20000 + b'\", \"a\": ' + b'[' * 20000 + b']' * 20000 + b'}'\n"
        "parsed = parse_json_lines(b'{\"x\": 1}\\n' + row + b'\\n{\"x\": 2}', 1 << 20)\n"
        "print(sorted(parsed.rejected), sum(p.table.num_rows for p in parsed.pieces))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[1]", "2"]
