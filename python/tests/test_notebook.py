"""examples/notebook.ipynb executed from top to bottom (its outputs are not committed)."""

import nbformat
from nbclient import NotebookClient

from conftest import REPO


def test_the_notebook_runs():
    path = REPO / "examples" / "notebook.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "(72, 96, 3) float32" in printed
