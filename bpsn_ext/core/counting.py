"""Operation counters that should see a neuron as one operator.

An operation counter built on a `torch.utils._python_dispatch.TorchDispatchMode` (SpikingJelly
2.0's ``DispatchCounterMode``) counts the ATen operators a module runs.  BPSN's torch paths
(chunked scan, FFT, dense matmul) run different operators for the same neuron, and a compiled
kernel runs one opaque operator; so under a registered counting mode BPSN runs its torch path
out of the counter's sight and reports itself as one operator with a known cost instead (the
counts are registered by `bpsn_ext.energy.sj_op_counts`).  Other dispatch modes (fake tensors
under ``torch.compile``) are left alone.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

__all__ = ["register_counting_mode", "counting_mode_active", "COUNTING_MODES"]

COUNTING_MODES: list[type] = []


def register_counting_mode(cls: type) -> None:
    """Treat dispatch modes of ``cls`` as operation counters (idempotent)."""
    if cls not in COUNTING_MODES:
        COUNTING_MODES.append(cls)


def counting_mode_active() -> bool:
    """Whether a registered counting mode is on the dispatch-mode stack (never while
    ``torch.compile`` traces: a compiled graph is not counted this way)."""
    if not COUNTING_MODES or torch.compiler.is_compiling():
        return False
    kinds = tuple(COUNTING_MODES)
    return any(isinstance(mode, kinds) for mode in _get_current_dispatch_mode_stack())
