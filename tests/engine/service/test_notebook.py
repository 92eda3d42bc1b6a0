"""The quickstart notebook runs top to bottom in a real Jupyter kernel, and its results display as HTML."""

from __future__ import annotations

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[3]
NOTEBOOK = ROOT / "examples" / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_without_errors(ray_session, monkeypatch):
    # the kernel attaches to this suite's Ray instead of starting one more
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError naming the cell when any cell fails
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {kind for o in outputs for kind in o.get("data", {})}
    assert "image/png" in kinds  # the time-series plot
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<table" in h for h in html)  # pandas results
    assert any(h.startswith("<pre") and "scan" in h.lower() for h in html)  # the plan, preformatted
    plain = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert any("ALERT" in p and "checkout" in p for p in plain)  # the monitor's backtest caught the incident
    text = "".join(o.get("text", "") for o in outputs)
    assert "line 1, column" in text
