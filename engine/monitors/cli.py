"""The ``petrel monitors ...`` commands (registered by ``engine.cli``); each calls one session method."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.monitors.definition import MonitorSpec
from storage.errors import InvalidMonitor

_OPTIONS = (
    ("--window", str, "window of each evaluation ('5m')"),
    ("--every", str, "period of the slots ('1m')"),
    ("--delay", str, "how long to wait for late events ('30s')"),
    ("--critical", float, "critical threshold"),
    ("--warning", float, "warning threshold"),
    ("--critical-recovery", float, "value that ends an ALERT (hysteresis)"),
    ("--warning-recovery", float, "value that ends a WARN (hysteresis)"),
    ("--comparator", str, "'>' (default), '>=', '<' or '<='"),
    ("--pending", str, "how long a breach must hold before WARN/ALERT"),
    ("--renotify", str, "repeat the notification this often while alerting"),
    ("--catch-up", str, "how far back missed slots are evaluated after an outage ('10m')"),
)


def register(subparsers: Any) -> None:
    """Add ``monitors`` with its sub-commands to the ``petrel`` command; sets ``args.run(session, args)``."""
    monitors = subparsers.add_parser("monitors", help="define, inspect, backtest and run monitors")
    commands = monitors.add_subparsers(dest="monitor_command", required=True)
    commands.add_parser("list", help="every monitor of the namespace")
    for verb in ("show", "drop", "state", "history"):
        command = commands.add_parser(verb, help=f"{verb} one monitor")
        command.add_argument("name")
    for verb in ("create", "update"):
        command = commands.add_parser(verb, help=f"{verb} a monitor")
        command.add_argument("name")
        command.add_argument("--query", required=verb == "create",
                             help="SELECT <group columns>, <value> FROM <table> [WHERE ...] GROUP BY <group columns>")
        for flag, kind, text in _OPTIONS:
            command.add_argument(flag, type=kind, help=text)
        command.add_argument("--no-data-after", help="a group without data this long goes to --no-data-action")
        command.add_argument("--no-data-action", choices=["alert", "ok", "keep"], default="alert")
        command.add_argument("--notify", action="append", help="webhook:<url> or file:<path> (repeat for several)")
    mute = commands.add_parser("mute", help="stop notifying for a while (the monitor still evaluates)")
    mute.add_argument("name")
    mute.add_argument("--until", help="how long ('2h'); default: until unmuted")
    mute.add_argument("--group", action="append", help="column=value: mute only matching groups")
    unmute = commands.add_parser("unmute", help="lift a monitor's mutes")
    unmute.add_argument("name")
    backtest = commands.add_parser("backtest", help="the transitions a monitor would have made over past data")
    backtest.add_argument("name")
    backtest.add_argument("start", help="ISO time, like 2026-11-02T13:00:00 (UTC)")
    backtest.add_argument("end")
    run = commands.add_parser("run", help="run the monitor service in the foreground (Ctrl-C stops it)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--shards", type=int, help="shards, fixed when monitor history is first created (default 1); another number is refused")
    monitors.set_defaults(run=run_monitors_command)


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for flag, _, _ in _OPTIONS:
        key = flag[2:].replace("-", "_")
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.no_data_after is not None:
        values["no_data"] = {"after": args.no_data_after, "action": args.no_data_action}
    if args.notify:
        values["notify"] = args.notify
    if args.query is not None:
        values["query"] = args.query
    return values


def describe(spec: MonitorSpec) -> str:
    """One line per monitor: name, schedule, thresholds, sinks, mutes."""
    thresholds = ", ".join(f"{k} {spec.comparator} {v:g}" for k, v in (("critical", spec.critical), ("warning", spec.warning))
                           if v is not None)
    muted = f"  muted ({len(spec.mutes)})" if spec.mutes else ""
    return (f"{spec.name}  v{spec.version}  every {spec.every:g}s over {spec.window:g}s (delay {spec.delay:g}s)  "
            f"{thresholds}  -> {', '.join(spec.notify) or 'no sinks'}{muted}")


def run_monitors_command(session: Any, args: argparse.Namespace) -> int:
    from engine.render import render_table

    command = args.monitor_command
    if command == "list":
        for spec in session.monitors():
            print(describe(spec))
    elif command == "show":
        print(json.dumps(session.monitor(args.name).to_record(), indent=2, default=str))
    elif command == "create":
        values = _arguments(args)
        query = values.pop("query")
        if "window" not in values or "every" not in values:
            raise InvalidMonitor("petrel monitors create needs --window and --every")
        print(describe(session.create_monitor(args.name, query, **values)))
    elif command == "update":
        print(describe(session.update_monitor(args.name, **_arguments(args))))
    elif command == "drop":
        session.drop_monitor(args.name)
        print(f"dropped monitor {args.name}")
    elif command == "mute":
        groups = None
        if args.group:
            pairs = [g.split("=", 1) for g in args.group]
            if any(len(p) != 2 for p in pairs):
                raise InvalidMonitor(f"--group {args.group!r}: write each as column=value")
            groups = dict(pairs)
        print(describe(session.mute_monitor(args.name, until=args.until, groups=groups)))
    elif command == "unmute":
        print(describe(session.unmute_monitor(args.name)))
    elif command == "state":
        print(render_table(session.monitor_state(args.name)))
    elif command == "history":
        session.monitor(args.name)
        name = args.name.replace("'", "''")
        print(render_table(session.sql(
            'SELECT "group", seq, slot, from_state, to_state, value, notify, reason FROM _monitor_transitions '
            f"WHERE monitor = '{name}' ORDER BY slot, \"group\", seq"), max_rows=200))
    elif command == "backtest":
        result = session.backtest_monitor(args.name, args.start, args.end)
        print(render_table(result.select(["group", "seq", "slot", "from_state", "to_state", "value", "reason"]),
                           max_rows=200))
    elif command == "run":
        print("monitor service running (Ctrl-C stops it)", file=sys.stderr)
        stats = session.run_monitors(duration=args.duration, shards=args.shards)
        evaluations = sum(s["evaluations"] for s in stats["schedulers"])
        delivered = sum(n["delivered"] for n in stats["notifiers"])
        print(f"evaluations {evaluations:,}, notifications delivered {delivered:,}")
    return 0
