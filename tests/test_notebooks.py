"""The committed notebooks execute offline, show their figures, and keep their outputs on GitHub.

Each notebook runs in a fresh kernel of this interpreter (nbclient maps the ``python3`` kernel to
``sys.executable``), from ``notebooks/`` as its working directory. The LlamaIndex notebook has its own
test next to its integration (``integrations/llamaindex/tests``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
pytest.importorskip("matplotlib", reason="the notebooks plot with matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Offline and small by design (< 30 s each on a quiet machine); the bound is loose because the
# test machines are shared and a slow run is not a broken notebook.
TIME_LIMIT_S = 120

CASES = {
    # notebook: (imports it needs beyond the core, text its outputs must show, figures at least)
    "langgraph_agent.ipynb": (("langgraph", "langchain_openai", "promptcache_langgraph"), "less)", 1),
    "audit_request_log.ipynb": ((), "of the oracle's cached share", 2),
}


def _images(nb: object) -> int:
    return sum(
        1
        for c in nb.cells  # type: ignore[attr-defined]
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )


def _texts(nb: object) -> str:
    out = []
    for c in nb.cells:  # type: ignore[attr-defined]
        for o in c.get("outputs", []):
            out.append(o.get("text", ""))
            out.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


@pytest.mark.parametrize("name", list(CASES))
def test_committed_notebook_keeps_its_figures(name: str) -> None:
    """Saved with executed outputs, so GitHub shows the plots without running anything."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert _images(nb) >= CASES[name][2]
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", list(CASES))
def test_notebook_executes(name: str) -> None:
    needs, expected, figures = CASES[name]
    for mod in needs:
        pytest.importorskip(mod)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for c in nb.cells:  # run from a clean slate: the committed outputs must be reproduced, not kept
        if c.cell_type == "code":
            c.outputs = []
    t0 = time.monotonic()
    nbclient.NotebookClient(
        nb, timeout=TIME_LIMIT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    elapsed = time.monotonic() - t0
    assert elapsed < TIME_LIMIT_S
    assert expected in _texts(nb)
    assert _images(nb) >= figures
