"""The walkthrough notebook executes top to bottom on the embedded model."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="embedded model not installed")
def test_walkthrough_notebook_executes():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # the public API only: no internal module, no SQL
    assert "import workflow as tnt" in source
    assert not re.search(r"workflow\.(store|runner|graph|classify|llm)|\bSELECT\b|\.query\(", source)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "coverage:" in outputs
    assert "TextClassifier(" in outputs  # the exported artifact loaded without the database
    assert "Error" not in "".join(o.get("ename", "") for c in nb.cells for o in c.get("outputs", []))
