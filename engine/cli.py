"""The ``petrel`` command line: sql, explain, tables, ingest, ingest-stream, demo, compact, stats.

The warehouse comes from ``--warehouse`` or ``PETREL_WAREHOUSE`` (default
``./warehouse``), the Ray cluster from ``--ray-address`` or ``RAY_ADDRESS``
(default: a local Ray), so ``ray job submit -- petrel sql "..."`` runs
unchanged against a cluster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import sys
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.maintenance.cli import register as register_maintenance
from engine.streams.cli import register as register_streams
from storage.errors import PetrelError

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


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--warehouse, --ray-address, --namespace; a command's own copies override the main ones only when given."""
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--warehouse", default=default(os.environ.get("PETREL_WAREHOUSE", "./warehouse")),
                        help="warehouse root: a folder or s3://bucket/prefix (env PETREL_WAREHOUSE)")
    parser.add_argument("--ray-address", default=default(os.environ.get("RAY_ADDRESS")),
                        help="Ray cluster to attach to (env RAY_ADDRESS); default: start a local Ray")
    parser.add_argument("--namespace", default=default(os.environ.get("PETREL_NAMESPACE", "default")),
                        help="namespace (tenant) to work in (env PETREL_NAMESPACE)")


def parser() -> argparse.ArgumentParser:
    """The argument parser; the connection options go before or after the command."""
    main = argparse.ArgumentParser(prog="petrel", description="Petrel: an event store and distributed SQL engine.")
    _connection_options(main, defaults=True)
    commands = main.add_subparsers(dest="command", required=True)

    sql = commands.add_parser("sql", help="run a query and print its rows")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    sql.add_argument("--output", "-o", help="write the result to this file instead of stdout")
    sql.add_argument("--dialect", default="duckdb", help="SQL dialect of the query (duckdb, postgres, ...)")
    sql.add_argument("--timeout", type=float, help="seconds after which the query is cancelled")

    explain = commands.add_parser("explain", help="show a query's logical and distributed plans")
    explain.add_argument("query")
    explain.add_argument("--analyze", action="store_true", help="run it and add rows, bytes and time per stage")
    explain.add_argument("--dialect", default="duckdb")

    commands.add_parser("tables", help="list the tables of the namespace")

    ingest = commands.add_parser("ingest", help="ingest JSON-lines, CSV or Parquet files into a table")
    ingest.add_argument("table")
    ingest.add_argument("files", nargs="+")
    ingest.add_argument("--time-column", default="timestamp", help="time column when the table is created")
    ingest.add_argument("--partitions", type=int, default=1, help="partitions when the table is created")
    ingest.add_argument("--no-progress", action="store_true")

    demo = commands.add_parser("demo", help="generate, ingest and query a day of web/service events")
    demo.add_argument("--rows", type=int, default=500_000)

    register_maintenance(commands)
    register_streams(commands)
    for command in commands.choices.values():
        _connection_options(command, defaults=False)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import engine

    try:
        # a command is short-lived: no background maintenance loop for it
        session = engine.connect(args.warehouse, namespace=args.namespace, ray_address=args.ray_address,
                                 maintenance=False)
    except PetrelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.command == "sql":
            write_result(session.sql(args.query, dialect=args.dialect, timeout=args.timeout), args.format, args.output)
        elif args.command == "explain":
            print(session.explain(args.query, analyze=args.analyze, dialect=args.dialect))
        elif args.command == "tables":
            for name in session.tables():
                meta = session.table(name)
                print(f"{name}\t(time column {meta.time_column}, {meta.partitions} partition{'s' if meta.partitions != 1 else ''})")
        elif args.command == "ingest":
            if args.table not in session.tables():
                session.create_table(args.table, time_column=args.time_column, partitions=args.partitions)
            receipt = session.ingest_files(args.table, list(args.files), progress=not args.no_progress)
            print(receipt)
        elif args.command == "demo":
            from engine.demo import run_demo

            run_demo(session, rows=args.rows)
        elif args.command in ("compact", "stats", "ingest-stream"):
            return args.run(session, args)
        return 0
    except PetrelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
