"""Renamed modules: the old paths that docs, notebooks and saved models name still import.

Each gives a thin module forwarding to the new one, with a `FutureWarning`; a model pickled
when its class lived under the old path loads as the class of today.
"""

from __future__ import annotations

import importlib
import pickle
import sys

import pytest

import bpsn_ext
from bpsn_ext._moved import MOVED
from bpsn_ext.bpsn_module import BPSN

FRAMEWORK = {"spikingjelly": "spikingjelly", "snntorch": "snntorch"}


def _fresh_import(name: str):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_forwards_to_the_new_module_with_a_warning(old):
    host = old.split(".")[1]
    if host in FRAMEWORK:
        pytest.importorskip(FRAMEWORK[host])
    new = importlib.import_module(MOVED[old])
    with pytest.warns(FutureWarning, match=f"{old} was renamed {MOVED[old]}"):
        alias = _fresh_import(old)
    public = getattr(new, "__all__", None) or [n for n in vars(new) if not n.startswith("_")]
    assert public
    for name in public:
        assert getattr(alias, name) is getattr(new, name)
    assert set(public) <= set(dir(alias))


def test_unknown_paths_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("bpsn_ext.core.no_such_module")
    with pytest.warns(FutureWarning), pytest.raises(AttributeError):
        _ = _fresh_import("bpsn_ext.core.bpsn").no_such_name


def test_a_model_saved_under_the_old_module_path_loads():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), BPSN(4))
    BPSN.__module__ = "bpsn_ext.bpsn"  # how 0.1.0 pickled it
    try:
        with pytest.warns(FutureWarning):
            sys.modules.pop("bpsn_ext.bpsn", None)
            data = pickle.dumps(model)
    finally:
        BPSN.__module__ = "bpsn_ext.bpsn_module"
    assert b"bpsn_ext.bpsn_module" not in data
    sys.modules.pop("bpsn_ext.bpsn", None)
    with pytest.warns(FutureWarning):
        loaded = pickle.loads(data)
    assert type(loaded[1]) is bpsn_ext.BPSN
    x = torch.randn(5, 2, 3)
    assert torch.equal(loaded(x), model(x))
