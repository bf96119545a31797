"""CuPy provider of the fused S4D scan: the kernels of ``ssm_kernels.cu``.

Compiled once per device with NVRTC (no fused multiply-add, as the host build the tests check
against the torch S4D), launched on torch's current CUDA stream, outputs allocated by torch.
Causal S4D, float32 parameters and input.  Importing it registers CuPy as the ``"cuda"``
launcher of the torch operators of `bpsn_ext.kernels.fused_scan_ops`.
"""

from __future__ import annotations

import functools
import math
from importlib.resources import files

import cupy
import numpy as np
import torch

from bpsn_ext.kernels.fused_scan_ops import register_launchers, s4d_scan

__all__ = ["s4d_scan_cupy"]

_BLOCK = 128


@functools.cache
def _module(device_index: int) -> cupy.RawModule:
    source = (files("bpsn_ext.kernels") / "ssm_kernels.cu").read_text()
    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=source, options=("-std=c++17", "--fmad=false"))
        module.compile()
    return module


def _launcher(name: str):
    def launch(tensors: tuple, scalars: tuple) -> None:
        device_index = tensors[0].device.index
        T, N, H, P, has_mask, has_x0, has_gxT = scalars
        if N * H == 0:  # an empty batch: nothing to launch (outputs are empty too)
            return
        args = tuple(cupy.asarray(t.detach()) for t in tensors) + (
            np.int64(T),
            np.int64(N),
            np.int64(H),
            np.int64(P),
            np.int32(has_mask),
            np.int32(has_x0),
            np.int32(has_gxT),
        )
        kernel = _module(device_index).get_function(name)
        stream = torch.cuda.current_stream(device_index).cuda_stream
        with cupy.cuda.Device(device_index), cupy.cuda.ExternalStream(stream):
            kernel((math.ceil(N * H / _BLOCK),), (_BLOCK,), args)

    return launch


register_launchers("cuda", _launcher("s4d_scan_forward"), _launcher("s4d_scan_backward"))


def s4d_scan_cupy(
    x: torch.Tensor,
    state: torch.Tensor | None,
    mask: torch.Tensor | None,
    ssm: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    what: str = "S4D",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, new_state)`` of a causal S4D (``ssm`` = ``(A_bar, B_bar, C, D)``) for CUDA ``x``
    ``[T, N, H]``: the numbers of ``S4D.forward_with_state(x, state, mask)``, computed by the
    fused scan."""
    if x.device.type != "cuda":
        raise RuntimeError(f"the cupy S4D scan runs on CUDA tensors only, got {x.device}")
    return s4d_scan(x, state, mask, ssm, what)
