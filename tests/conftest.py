"""Shared fixtures."""

import importlib
import sys
import types

import pytest


@pytest.fixture
def sj_zoo(monkeypatch):
    """Import a SpikingJelly model-zoo module, e.g. ``sj_zoo("spiking_resnet")``.

    The CNN modules import ``load_state_dict_from_url`` from torchvision at import time, only
    to download pretrained weights.  PyPI's torchvision (a CUDA build) does not import beside
    the CPU torch of these machines, so a stub module provides exactly that one name and
    refuses to download; nothing else of torchvision is provided.
    """

    def refuse(*args, **kwargs):
        raise RuntimeError("bpsn_ext tests never download weights")

    utils = types.ModuleType("torchvision.models.utils")
    utils.load_state_dict_from_url = refuse
    stubs = {
        "torchvision": types.ModuleType("torchvision"),
        "torchvision.models": types.ModuleType("torchvision.models"),
        "torchvision.models.utils": utils,
    }
    for name, mod in stubs.items():
        monkeypatch.setitem(sys.modules, name, mod)

    def load(name: str):
        full = f"spikingjelly.activation_based.model.{name}"
        monkeypatch.delitem(sys.modules, full, False)  # re-import under the stub
        return importlib.import_module(full)

    return load


def pytest_collection_modifyitems(config, items):
    """Run the docs-site build last: it reuses the notebooks `test_notebooks.py` executed
    (cached by `docs/_hooks/notebooks.py`) instead of executing them a second time."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_docs_site.py"))
