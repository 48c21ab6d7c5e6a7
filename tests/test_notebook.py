"""The example notebook runs from top to bottom (nbclient, on phantoms) and ends with the reliance verdict."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "audit_your_model.ipynb"


def test_the_example_notebook_runs_and_ends_with_the_verdict(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for name in ("PNEUMOCAM_EXAMPLE_DATA", "PNEUMOCAM_EXAMPLE_MASKS", "PNEUMOCAM_EXAMPLE_SIZE"):
        monkeypatch.delenv(name, raising=False)  # phantoms
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # none committed
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    last = notebook.cells[-1].outputs
    text = "".join(output.get("text", "") for output in last)
    assert "verdict: " in text and "lungs_removed_fill" in text
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
