"""The notebook runs top to bottom headless on a results folder and tells the headline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.analysis_fixtures import reference_specs, write_run

NOTEBOOK = Path(__file__).resolve().parent.parent / "analysis" / "reports" / "notebooks" / "report.ipynb"


def test_notebook_executes_end_to_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=10))
    monkeypatch.setenv("OFFPATH_RUN", str(run_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
    assert "queued sustains 33% more throughput" in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 5
