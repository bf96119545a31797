"""Atomic binary checkpoints and RNG-state capture for :mod:`bpsn_ext.train`."""

from __future__ import annotations

import os
import random
from typing import Any

import torch

from bpsn_ext.core.atomic import atomic_open

__all__ = ["atomic_save", "load_checkpoint", "get_rng_state", "set_rng_state"]

try:  # numpy is a dependency of bpsn_ext, but the trainer works without it
    import numpy as np
except ImportError:  # pragma: no cover
    np = None


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to a temporary file in the folder of ``path``, then ``os.replace``.

    The binary counterpart of :func:`bpsn_ext.core.atomic.atomic_open`: readers never see a
    half-written file; on any error (a crash inside ``torch.save`` included) the temporary file
    is removed and the previous ``path`` is left as it was.  Missing folders are created.
    """
    with atomic_open(path, binary=True) as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` (``weights_only=True``: the trainer
    stores only tensors, numbers, strings and containers of them)."""
    return torch.load(os.fspath(path), map_location=map_location, weights_only=True)


def get_rng_state() -> dict:
    """The states of torch (CPU and CUDA), Python ``random`` and numpy's global generators."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if np is not None and "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))
