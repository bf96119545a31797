"""Where the Triton operator tests run: under Triton's interpreter (``TRITON_INTERPRET=1``) on
CPU tensors, else on a CUDA device; without either they skip, and ``triton`` is not imported."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRET or not torch.cuda.is_available() else "cuda"
needs_triton_device = pytest.mark.skipif(
    not INTERPRET and not torch.cuda.is_available(),
    reason="Triton kernels need a CUDA device or Triton's interpreter (set TRITON_INTERPRET=1 "
    "to run them on CPU tensors)",
)


def triton_operator(module: str, name: str):
    """``module.name`` (imports ``triton``); skips the test where ``triton`` is missing."""
    pytest.importorskip("triton", reason="triton is not installed (pip install triton)")
    return getattr(importlib.import_module(module), name)
