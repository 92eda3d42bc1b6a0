"""Query results as text: a boxed table for people, CSV, JSON lines or Parquet for tools.

Used by the ``petrel`` command line and the demo.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

MAX_CELL = 40


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def render_table(table: pa.Table, max_rows: int = 50) -> str:
    """A boxed, aligned text table of the first ``max_rows`` rows."""
    shown = table.slice(0, max_rows)
    names = shown.column_names
    columns = [[_cell(v) for v in shown.column(i).to_pylist()] for i in range(shown.num_columns)]
    widths = [max([len(n)] + [len(v) for v in col]) for n, col in zip(names, columns)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type) for f in shown.schema]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "│ " + " │ ".join(parts) + " │"

    rule = "─┼─".join("─" * w for w in widths)
    lines = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐", line(names), "├─" + rule + "─┤"]
    for index in range(shown.num_rows):
        lines.append(line([col[index] for col in columns]))
    lines.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    more = table.num_rows - shown.num_rows
    lines.append(f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}" + (f" ({more} not shown)" if more else ""))
    return "\n".join(lines)


def write_result(table: pa.Table, fmt: str, output: str | None) -> None:
    """Print or write ``table`` as a pretty table, CSV, JSON lines or Parquet."""
    if fmt == "parquet":
        if output is None:
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            sys.stdout.buffer.write(buffer.getvalue())
        else:
            pq.write_table(table, output)
        return
    if fmt == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode()
    elif fmt == "json":
        text = "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist())
    else:
        text = render_table(table) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        with open(output, "w") as handle:
            handle.write(text)
