"""Execute every ``examples/*.ipynb`` with nbclient, as a user would, and fail on any error.

* The kernel is ``python3`` of the running interpreter (checked: the kernel's ``sys.prefix``
  must be this environment's), the working directory is the repository root, and
  ``BPSN_EXAMPLES_FAST=1`` selects tiny sizes; the inline matplotlib backend keeps plots off
  screen and in the outputs.
* In the primary environment the executed notebook is cached for the docs build
  (``docs/_hooks/notebooks.py``), which then executes nothing again: ``conftest.py`` runs
  ``test_docs_site.py`` last.
* Every notebook runs in the primary environment (SpikingJelly 2.0.0 / snnTorch 1.0.0, or one
  without SpikingJelly). Notebooks whose metadata has ``{"bpsn_ext": {"all_envs": true}}``
  (the framework-swap notebooks 01 and 02, whose whole point is the two framework
  generations) also run in the other environments. Set ``BPSN_NOTEBOOKS=all`` to run every
  notebook everywhere.
* Notebooks are stored without outputs (checked in every environment, it costs nothing).
"""

from __future__ import annotations

import os
import re
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "examples").glob("*.ipynb"))
NOTEBOOK_TIMEOUT_S = 300  # whole notebook; each must finish in < ~2 min on 2 CPU cores
_PREFIX_MARK = "BPSN_KERNEL_PREFIX="
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours of IPython tracebacks


def _primary_env() -> bool:
    try:
        return version("spikingjelly").startswith("2.")
    except PackageNotFoundError:
        return True


def _runs_here(nb) -> bool:
    if os.environ.get("BPSN_NOTEBOOKS") == "all" or _primary_env():
        return True
    return bool(nb.metadata.get("bpsn_ext", {}).get("all_envs", False))


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_examples_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_"):
        assert any(n.startswith(prefix) for n in names), f"no examples/{prefix}*.ipynb in {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} have stored outputs; clear them"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, monkeypatch: pytest.MonkeyPatch):
    nb = nbformat.read(path, as_version=4)
    if not _runs_here(nb):
        pytest.skip("runs in the SpikingJelly 2.0.0 environment only (see the module docstring)")
    n_cells = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print('{_PREFIX_MARK}' + sys.prefix)"))

    monkeypatch.setenv("BPSN_EXAMPLES_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S

    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        resources={"metadata": {"path": str(REPO)}},
        shutdown_kernel="immediate",  # saves ~1 s a notebook; nothing is left to flush
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{_ANSI.sub('', str(err))}", pytrace=False)
    except nbclient.exceptions.CellTimeoutError:
        pytest.fail(f"{path.name} ran past {NOTEBOOK_TIMEOUT_S} s", pytrace=False)

    text = "".join(o.get("text", "") for o in nb.cells[n_cells].outputs)
    prefix = text.split(_PREFIX_MARK, 1)[-1].strip()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (
        f"the python3 kernel ran in {prefix!r}, not in this environment ({sys.prefix!r}); "
        f"check `jupyter kernelspec list`"
    )
    errors = [o for c in _code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs {[e.ename for e in errors]}"
    if _primary_env():
        nb.cells = nb.cells[:n_cells]
        _docs_hook().store(path, nb)


def _docs_hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bpsn_docs_notebooks", REPO / "docs" / "_hooks" / "notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
