"""EXPLAIN: the logical plan, the distributed plan, and (with ANALYZE) what ran.

The distributed plan lists stages bottom up: each exchange's fragment
stage (what every fragment does, and how many segments the scan kept and
pruned by time, by statistics and by limit), then the coordinator stage.
ANALYZE adds rows, bytes and seconds per stage and per worker, from the
measurements the engine hands in as plain dictionaries.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from planner.dispatch import OperatorTable
from planner.logical import (
    Aggregate, Broadcast, Filter, Gather, Join, Limit, Memory, Plan, Project, Scan, SetOp, Shuffle, Sort, Values, Window,
)


def _fmt_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="duckdb")


DESCRIBE: OperatorTable[str] = OperatorTable("explain", fallback=lambda plan: type(plan).__name__)


def describe(plan: Plan) -> str:
    """One line for one operator."""
    return DESCRIBE(plan)


@DESCRIBE.register(Scan)
def _scan(plan: Scan) -> str:
    parts = [f"Scan {plan.source.meta.namespace}.{plan.source.name}"]
    parts.append(f"columns=[{', '.join(plan.columns)}]")
    if plan.filter is not None:
        parts.append(f"filter={_sql(plan.filter)}")
    if plan.time_range is not None:
        parts.append(f"time_range=[{_time(plan.time_range[0])}, {_time(plan.time_range[1])}]")
    if plan.limit is not None:
        parts.append(f"limit={plan.limit}")
    if plan.pruning is not None:
        p = plan.pruning
        parts.append(f"segments={p.kept}/{p.total} (pruned: {p.by_time} by time, {p.by_stats} by stats, {p.by_limit} by limit)")
    return " ".join(parts)


@DESCRIBE.register(Filter)
def _filter(plan: Filter) -> str:
    return f"Filter {_sql(plan.condition)}"


@DESCRIBE.register(Project)
def _project(plan: Project) -> str:
    items = [n if isinstance(e, exp.Column) and e.name == n else f"{n} := {_sql(e)}" for n, e in zip(plan.names, plan.exprs)]
    return f"Project {', '.join(items)}"


@DESCRIBE.register(Aggregate)
def _aggregate(plan: Aggregate) -> str:
    calls = ", ".join(f"{a.name} := {a.describe()}" for a in plan.aggregates)
    keys = f" by {', '.join(plan.keys)}" if plan.keys else ""
    mode = "" if plan.mode == "single" else f" [{plan.mode}]"
    return f"Aggregate{mode}{keys}" + (f": {calls}" if calls else " (distinct)")


@DESCRIBE.register(Sort)
def _sort(plan: Sort) -> str:
    text = f"Sort {', '.join(k.describe() for k in plan.keys)}"
    return text + (f" [top {plan.limit}]" if plan.limit is not None else "")


@DESCRIBE.register(Limit)
def _limit(plan: Limit) -> str:
    return f"Limit {plan.limit if plan.limit is not None else 'ALL'}" + (f" OFFSET {plan.offset}" if plan.offset else "")


@DESCRIBE.register(Gather)
def _gather(plan: Gather) -> str:
    return "Exchange: gather"


@DESCRIBE.register(Values)
def _values(plan: Values) -> str:
    return f"Values {len(plan.rows)} row(s)"


@DESCRIBE.register(Memory)
def _memory(plan: Memory) -> str:
    return f"Memory {plan.name} ({plan.table.num_rows} rows)"


@DESCRIBE.register(Join)
def _join(plan: Join) -> str:
    equals = " IS NOT DISTINCT FROM " if plan.null_equal else " = "
    keys = " AND ".join(f"{a}{equals}{b}" for a, b in zip(plan.left_keys, plan.right_keys))
    on = " AND ".join(t for t in (keys, _sql(plan.condition) if plan.condition is not None else "") if t)
    text = f"Join {plan.kind.upper()}" + (f" ON {on}" if on else "")
    if plan.strategy != "local" or plan.reason:
        text += f" [{plan.strategy}: {plan.reason}]"
    return text


@DESCRIBE.register(SetOp)
def _set_operation(plan: SetOp) -> str:
    return f"{plan.kind.upper()}{'' if plan.distinct else ' ALL'}"


@DESCRIBE.register(Window)
def _window(plan: Window) -> str:
    return "Window " + "; ".join(c.describe() for c in plan.calls)


@DESCRIBE.register(Broadcast)
def _broadcast(plan: Broadcast) -> str:
    return f"Exchange: broadcast {plan.key} (one object shared by every fragment)"


@DESCRIBE.register(Shuffle)
def _shuffle(plan: Shuffle) -> str:
    return f"Exchange: hash shuffle {plan.key} on {', '.join(plan.keys)} into {plan.buckets} buckets"


def _time(micros: int | None) -> str:
    if micros is None:
        return "-inf"
    import datetime as dt

    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")


def render_tree(plan: Plan, depth: int = 0) -> list[str]:
    lines = ["  " * depth + describe(plan)]
    for child in plan.inputs:
        lines.extend(render_tree(child, depth + 1))
    return lines


def stages(plan: Plan) -> list[tuple[str, list[tuple[int, Plan]]]]:
    """(kind, (depth, operator) top down) per stage: fragment stages first (bottom up), the coordinator last."""
    found: list[tuple[str, list[tuple[int, Plan]]]] = []

    def body(node: Plan, depth: int = 0) -> list[tuple[int, Plan]]:
        ops = [(depth, node)]
        if isinstance(node, (Gather, Broadcast, Shuffle)) and depth > 0:
            return ops
        for child in node.inputs:
            ops += body(child, depth + 1)
        return ops

    def visit(node: Plan) -> None:
        for child in node.inputs:
            visit(child)
        if isinstance(node, Gather):
            found.append(("fragments", body(node.input)))
        elif isinstance(node, Shuffle):
            found.append(("shuffle", body(node.input)))

    visit(plan)
    found.append(("coordinator", body(plan)))
    return found


def explain(logical: Plan, optimized: Plan, analysis: dict[str, Any] | None = None) -> str:
    """The text of EXPLAIN [ANALYZE]."""
    lines = ["Logical plan:"]
    lines += ["  " + line for line in render_tree(logical)]
    lines.append("Distributed plan:")
    stage_stats = {s["stage"]: s for s in (analysis or {}).get("stages", [])}
    plan_stages = stages(optimized)
    for number, (kind, ops) in enumerate(plan_stages, start=1):
        if kind == "fragments":
            title = f"Stage {number} (fragments on workers, results gathered to the coordinator)"
        elif kind == "shuffle":
            title = f"Stage {number} (fragments on workers, results hash-partitioned for the next stage)"
        else:
            title = f"Stage {number} (coordinator)"
        lines.append(f"  {title}:")
        for depth, op in ops:
            lines.append("    " + "  " * depth + describe(op))
        if analysis is not None and kind != "coordinator" and number in stage_stats:
            lines += _analyze_stage(stage_stats[number])
        if analysis is not None and kind == "coordinator":
            lines.append(f"    -> rows={analysis.get('final_rows', 0)} time={analysis.get('final_seconds', 0.0) * 1000:.1f} ms")
    if analysis is not None:
        lines.append(
            f"Total: {analysis.get('total_seconds', 0.0) * 1000:.1f} ms "
            f"(planning {analysis.get('planning_seconds', 0.0) * 1000:.1f} ms)"
        )
    return "\n".join(lines)


def _analyze_stage(stage: dict[str, Any]) -> list[str]:
    fragments = stage.get("fragments", [])
    segments = sum(f["segments"] for f in fragments)
    rows_read = sum(f["rows_read"] for f in fragments)
    bytes_read = sum(f["bytes_read"] for f in fragments)
    rows_out = sum(f["rows_out"] for f in fragments)
    lines = [
        f"    -> fragments={len(fragments)} segments_scanned={segments} rows_read={rows_read} "
        f"bytes_read={bytes_read} ({_fmt_bytes(bytes_read)}) rows_out={rows_out} "
        f"time={stage.get('seconds', 0.0) * 1000:.1f} ms retries={stage.get('retries', 0)}"
        + (f" cancelled_early={stage['cancelled_early']}" if stage.get("cancelled_early") else "")
    ]
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for fragment in fragments:
        by_worker.setdefault(fragment["worker"], []).append(fragment)
    for worker, items in sorted(by_worker.items()):
        lines.append(
            f"       worker {worker}: fragments={len(items)} segments={sum(f['segments'] for f in items)} "
            f"rows_read={sum(f['rows_read'] for f in items)} bytes_read={sum(f['bytes_read'] for f in items)} "
            f"rows_out={sum(f['rows_out'] for f in items)} "
            f"time={max(f['seconds'] for f in items) * 1000:.1f} ms footer_cache_hits={sum(f['footer_hits'] for f in items)}"
        )
    return lines
