"""Choosing the implementation of an op for a device: the torch reference or a CUDA provider.

The torch code is the source of truth and runs on every device.  CUDA providers (``cupy``)
live in ``bpsn_ext.kernels`` and are imported only when a CUDA tensor asks for them, never on
CPU.  Selection order under ``"auto"``: ``cupy`` if importable and the tensor is on CUDA, else
``torch``.  The environment variable ``BPSN_EXT_CUDA_IMPLEMENTATION=auto|cupy|torch``
overrides what ``"auto"`` picks (``torch`` forces the reference everywhere).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os

import torch

__all__ = ["BACKENDS", "check_backend", "resolve_backend", "cupy_available"]

BACKENDS = ("auto", "torch", "cupy")
_log = logging.getLogger("bpsn_ext")
_logged: set[str] = set()


def check_backend(name: str) -> str:
    """Validate a backend name given by the user (before any tensor is seen)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "cupy" and not cupy_available():
        raise ImportError(
            "backend='cupy' needs CuPy: pip install 'bpsn-ext[cupy]' (cupy-cuda12x) or "
            "'bpsn-ext[cupy13]' (cupy-cuda13x), on a machine with an NVIDIA GPU"
        )
    return name


def cupy_available() -> bool:
    return importlib.util.find_spec("cupy") is not None


def resolve_backend(requested: str, x: torch.Tensor) -> str:
    """The backend that will run for tensor ``x``: ``"torch"`` or ``"cupy"``.

    An explicit ``"cupy"`` on a CPU tensor raises; ``"auto"`` falls back to torch (logged
    once at INFO) when CuPy or CUDA is missing.
    """
    env = os.environ.get("BPSN_EXT_CUDA_IMPLEMENTATION", "auto")
    if env not in BACKENDS:
        raise ValueError(f"BPSN_EXT_CUDA_IMPLEMENTATION must be one of {BACKENDS}, got {env!r}")
    if requested == "torch" or env == "torch":
        return "torch"
    if requested == "cupy" or env == "cupy":
        if x.device.type != "cuda":
            raise RuntimeError(
                f"backend='cupy' runs on CUDA tensors only, got a tensor on {x.device}; use "
                "backend='torch' (or 'auto') for CPU tensors"
            )
        check_backend("cupy")
        return "cupy"
    if x.device.type == "cuda" and cupy_available():
        return "cupy"
    if x.device.type == "cuda" and "cupy" not in _logged:
        _logged.add("cupy")
        _log.info("bpsn_ext: CuPy not installed, CUDA tensors use the torch implementation")
    return "torch"
