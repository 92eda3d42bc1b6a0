"""The query runtime's shape: one operator registry per pass, complete, and fragments that are pure data."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pyarrow as pa

import engine.query.execution.operators  # noqa: F401  (registers the executor's handlers)
import planner.explain  # noqa: F401
import planner.rules  # noqa: F401
from planner.dispatch import TABLES, operators, unhandled
from planner.fragments import Fragment, bucket_fragments, split_stage
from planner.logical import Values
from storage.segment import SegmentEntry

ROOT = Path(__file__).resolve().parents[3]


def test_every_pass_handles_every_operator():
    assert {t.name for t in TABLES} >= {"compile_expressions", "distribute", "explain", "execute", "estimate"}
    assert unhandled() == {}
    assert len(operators()) >= 14


def test_no_isinstance_chains_over_operators_in_the_dispatching_modules():
    """The passes dispatch through the registry: no function tests more than two operator classes in a row."""
    names = {kind.__name__ for kind in operators()}
    for path in ("planner/rules/compile_expressions.py", "planner/rules/distribute.py", "planner/explain.py",
                 "engine/query/execution/operators.py"):
        tree = ast.parse((ROOT / path).read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            tested = set()
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                    kinds = node.args[1]
                    for item in (kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]):
                        if getattr(item, "id", None) in names:
                            tested.add(item.id)
            assert len(tested) <= 3, f"{path}:{function.name} dispatches on {sorted(tested)}"


def _segment(index: int, size: int) -> SegmentEntry:
    return SegmentEntry(id=f"s{index}", path=f"data/s{index}.parquet", partition=0, rows=10, bytes=size,
                        min_time=index, max_time=index, schema=pa.schema([("a", pa.int64())]), columns={})


def test_fragments_are_pure_data_that_pickle_without_ray():
    segments = tuple(_segment(i, 100 + i) for i in range(12))
    placed = split_stage("q1", 1, Values((), ()), segments, ["w0", "w1"], target_bytes=300)
    assert sorted(s.id for _, f in placed for s in f.segments) == sorted(s.id for s in segments)
    assert [f.index for _, f in placed] == list(range(len(placed)))
    for _, fragment in placed:
        assert isinstance(fragment, Fragment)
        assert set(vars(fragment)) == {"query_id", "stage", "index", "plan", "segments", "partition"}
        assert pickle.loads(pickle.dumps(fragment)).segments == fragment.segments
    buckets = bucket_fragments("q1", 2, Values((), ()), 3, ["w0", "w1"], (("a",), 3))
    assert [(w, f.index) for w, f in buckets] == [("w0", 0), ("w1", 1), ("w0", 2)]


def test_planner_never_imports_ray():
    for path in (ROOT / "planner").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("ray") for a in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("ray", "engine")), path
