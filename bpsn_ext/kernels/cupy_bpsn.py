"""CuPy provider of the BPSN op: launches the fused kernels of ``bpsn_kernels.cu``.

Importing it registers CuPy as the ``"cuda"`` launcher of the torch operators of
`bpsn_ext.kernels.fused_bpsn_ops` (imported only for CUDA tensors).

Compiled once per device with NVRTC (no fused multiply-add, so the arithmetic follows the torch
reference's rounding), launched on torch's current CUDA stream, outputs allocated by torch.
Covers the default family: leak kernels; split, gate, avg or sum fusion; refractory or no rule;
surrogates ATan, Sigmoid, S2NN, FastSigmoid (ours or SpikingJelly's).  x: fp32, fp16, bf16.
"""

from __future__ import annotations

import functools
import math
from importlib.resources import files

import cupy
import numpy as np
import torch

from bpsn_ext.core.bpsn_options import BPSNOptions, BPSNParams, SurrogateArgs
from bpsn_ext.kernels.fused_bpsn_ops import bpsn_fused, register_launchers
from bpsn_ext.kernels.launch_args import prepare

__all__ = ["bpsn_cupy"]

_TYPES = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}
_BLOCK = 128


@functools.cache
def _module(device_index: int) -> cupy.RawModule:
    source = (files("bpsn_ext.kernels") / "bpsn_kernels.cu").read_text()
    names = [f"bpsn_forward<{t}>" for t in _TYPES.values()]
    names += [f"bpsn_backward<{t}, {g}>" for t in _TYPES.values() for g in _TYPES.values()]
    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(
            code=source, options=("-std=c++17", "--fmad=false"), name_expressions=names
        )
        module.compile()
    return module


def _arr(t: torch.Tensor) -> cupy.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:  # CuPy has no bfloat16: pass the same memory as int16
        t = t.view(torch.int16)
    return cupy.asarray(t)


def _launch(name: str, tensors: tuple, scalars: tuple) -> None:
    """Run ``bpsn_forward<...>`` or ``bpsn_backward<...>`` on torch's current CUDA stream."""
    backward = name == "bpsn_backward"
    x = tensors[1] if backward else tensors[0]  # the backward pass starts with grad_spikes
    types = f"{_TYPES[x.dtype]}, {_TYPES[tensors[0].dtype]}" if backward else _TYPES[x.dtype]
    device_index = x.device.index
    kernel = _module(device_index).get_function(f"{name}<{types}>")
    stream = torch.cuda.current_stream(device_index).cuda_stream
    T, M, N, C, inner, has_mask, fire_ge, refractory, k0, sg_kind, sg_a, sg_b = scalars
    args = tuple(_arr(t) for t in tensors) + (
        *(np.int64(v) for v in (T, M, N, C, inner)),
        *(np.int32(v) for v in (has_mask, fire_ge, refractory)),
        np.float32(k0),
        np.int32(sg_kind),
        np.float32(sg_a),
        np.float32(sg_b),
    )
    with cupy.cuda.Device(device_index), cupy.cuda.ExternalStream(stream):
        kernel((math.ceil(M / _BLOCK),), (_BLOCK,), args)


register_launchers(
    "cuda",
    lambda tensors, scalars: _launch("bpsn_forward", tensors, scalars),
    lambda tensors, scalars: _launch("bpsn_backward", tensors, scalars),
)


def bpsn_cupy(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, membrane)`` of a BPSN with ``options`` for CUDA ``x`` [T, N, *]."""
    if x.dtype not in _TYPES:
        raise TypeError(f"the cupy BPSN kernel takes float32, float16 or bfloat16, got {x.dtype}")
    spikes, membrane = bpsn_fused(prepare(x, mask, params, options, sg, channel_dim))
    return spikes.reshape(x.shape), membrane.reshape(x.shape)
