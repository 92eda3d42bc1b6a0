"""The ``petrel`` command line: sql, explain, tables, ingest, ingest-stream, demo, compact, stats, monitors, serve, tokens.

The warehouse comes from ``--warehouse`` or ``PETREL_WAREHOUSE`` (default
``./warehouse``), the Ray cluster from ``--ray-address`` or ``RAY_ADDRESS``
(default: a local Ray), so ``ray job submit -- petrel sql "..."`` runs
unchanged against a cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from engine.maintenance.cli import register as register_maintenance
from engine.monitors.cli import register as register_monitors
from engine.render import write_result
from engine.service.server import register as register_service
from engine.streams.cli import register as register_streams
from storage.errors import PetrelError


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
    register_monitors(commands)
    register_streams(commands)
    register_service(commands)
    for command in commands.choices.values():
        _connection_options(command, defaults=False)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import engine

    if getattr(args, "standalone", None) is not None:  # serve, tokens: they open what they need themselves
        try:
            return args.standalone(args)
        except PetrelError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

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
        elif args.command in ("compact", "stats", "monitors", "ingest-stream"):
            return args.run(session, args)
        return 0
    except PetrelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
