"""The example notebooks run top to bottom and print their key results.

Each notebook in ``notebooks/`` is executed in memory with nbclient, from the notebooks directory
(as a reader runs it), in an ipykernel of *this* interpreter (a private kernel spec, so a ``python3``
kernel registered elsewhere on the machine cannot stand in). Nothing is written back to the
repository. The kernel runs with ``PURELEARN_NOTEBOOK_QUICK=1``: each notebook's ``QUICK`` flag trains
fewer epochs (or on fewer images) and measures memory at fewer sequence lengths, through the same code;
the saved outputs are those of the full run. About a minute in all on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")
manager = pytest.importorskip("jupyter_client.manager")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
KERNEL = "purelearn-tests"

#: Lines each notebook must print, besides running without an error.
KEY_OUTPUTS = {
    "01_quickstart.ipynb": ["inputs unchanged: True", "same inputs, same outputs: True", "identical numbers: True",
                            "after write-back, max |torch - purelearn|"],
    "02_online_vs_offline.ipynb": [f"{algo:5s} test accuracy" for algo in ("fptt", "ottt", "sltt", "bptt")] + [
                                   "online learners flat: True | BPTT grows with T: True",
                                   "FPTT flat in T (per step and in windows): True | BPTT grows with T: True"],
    "03_sweeps.ipynb": ["vmapped rows equal single runs: True", "36 configurations in one vmapped run"],
    "04_shd_layout.ipynb": ["every unit fires 5 times in every sample: True", "fptt above chance: True",
                            "online flat in T: True | BPTT grows with T: True"],
}
#: How many figures each notebook shows.
FIGURES = {"01_quickstart.ipynb": 0, "02_online_vs_offline.ipynb": 2, "03_sweeps.ipynb": 2, "04_shd_layout.ipynb": 2}


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Kernel specs holding only one, which runs ipykernel with ``sys.executable``, in quick mode."""
    root = tmp_path_factory.mktemp("kernels")
    (root / KERNEL).mkdir()
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "purelearn tests", "language": "python", "env": {"PURELEARN_NOTEBOOK_QUICK": "1"}}
    (root / KERNEL / "kernel.json").write_text(json.dumps(spec))
    return kernelspec.KernelSpecManager(kernel_dirs=[str(root)])


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _text(nb: object) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out:
                parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def _figures(nb: object) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_every_notebook_has_its_key_outputs_listed() -> None:
    assert {p.name for p in NOTEBOOKS} == set(KEY_OUTPUTS) == set(FIGURES)


def test_saved_notebooks_are_executed_and_small() -> None:
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{path.name}: save it executed, with outputs"
        assert not any(out.output_type == "error" for c in code for out in c.outputs), path.name
        assert path.stat().st_size < 300_000, f"{path.name} is {path.stat().st_size} bytes"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_prints_its_results(path: Path, kernel_spec_manager: object) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # start from clean outputs, so what is checked below is this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    before = _listing(NOTEBOOK_DIR)
    km = manager.KernelManager(kernel_name=KERNEL, kernel_spec_manager=kernel_spec_manager)
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, record_timing=False,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    text = _text(nb)
    for line in KEY_OUTPUTS[path.name]:
        assert line in text, f"{path.name} did not print {line!r}"
    assert "Traceback" not in text
    assert _figures(nb) == FIGURES[path.name]
    assert _listing(NOTEBOOK_DIR) == before, "the notebook wrote files next to itself"
