"""The 22 TPC-H query texts kept in this repository (``queries.sql`` beside this module)."""

from __future__ import annotations

import re
from pathlib import Path

QUERY_FILE = Path(__file__).resolve().with_name("queries.sql")


def queries(path: Path = QUERY_FILE) -> dict[int, str]:
    """Query number -> SQL text (without the trailing semicolon), split at the ``-- TPC-H Qn`` lines."""
    parts = re.split(r"-- TPC-H Q(\d+)\n", path.read_text())[1:]
    return {int(n): q.strip().rstrip(";") for n, q in zip(parts[::2], parts[1::2])}
