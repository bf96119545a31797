"""Old module paths, kept importable after the modules were renamed (issue: one name per idea).

Two kinds of user code name a module by its path: imports copied from the docs and notebooks
of 0.1.0, and whole models saved with `torch.save(model)`, whose pickles record each class's
module (`bpsn_ext.bpsn.BPSN`).  For those paths only, `import OLD` gives a thin module that
forwards every attribute to the renamed one and warns once (`FutureWarning`).  No file carries
the old name, so no two modules share a file name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    # modules whose classes a saved model may name
    "bpsn_ext.bpsn": "bpsn_ext.bpsn_module",
    "bpsn_ext.spikingjelly.bpsn": "bpsn_ext.spikingjelly.bpsn_node",
    "bpsn_ext.spikingjelly.single_step": "bpsn_ext.spikingjelly.single_step_node",
    "bpsn_ext.spikingjelly.layers": "bpsn_ext.spikingjelly.ssm_layers",
    "bpsn_ext.snntorch.bpsn": "bpsn_ext.snntorch.bpsn_leaky",
    "bpsn_ext.snntorch.single_step": "bpsn_ext.snntorch.single_step_leaky",
    "bpsn_ext.snntorch.layers": "bpsn_ext.snntorch.ssm_leaky",
    "bpsn_ext.models.lra": "bpsn_ext.models.lra_classifier",
    # modules the 0.1.0 docs and notebooks told readers to import from
    "bpsn_ext.core.bpsn": "bpsn_ext.core.bpsn_functional",
    "bpsn_ext.core.ssm": "bpsn_ext.core.diagonal_ssm",
    "bpsn_ext.apps.glue": "bpsn_ext.apps.glue_commands",
}


class _Alias(types.ModuleType):
    """A module that reads every attribute from `target`."""

    def __init__(self, name: str, target: types.ModuleType) -> None:
        super().__init__(name, f"renamed: import {target.__name__} instead")
        self._target = target

    def __getattr__(self, attr: str):
        return getattr(self._target, attr)

    def __dir__(self) -> list[str]:
        return dir(self._target)


def _first_outside_importlib() -> int:
    """The `stacklevel` that points a warning at the line that imported, not at importlib.

    `warnings` itself steps over importlib's bootstrap frames, so only the others count.
    """
    frame, level = sys._getframe(2), 1  # the caller of `create_module`
    while frame is not None and "importlib" in frame.f_code.co_filename:
        if "_bootstrap" not in frame.f_code.co_filename:
            level += 1
        frame = frame.f_back
    return level + 1


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec) -> types.ModuleType:
        warnings.warn(
            f"{spec.name} was renamed {self.new}; import from there (or from its package)",
            FutureWarning,
            stacklevel=_first_outside_importlib(),
        )
        return _Alias(spec.name, importlib.import_module(self.new))

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Consulted after the normal finders, so it only ever answers for a missing old path."""

    def find_spec(self, name, path=None, target=None):
        new = MOVED.get(name)
        return None if new is None else importlib.util.spec_from_loader(name, _AliasLoader(new))


def install() -> None:
    """Put the finder at the end of `sys.meta_path` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
