"""CuPy provider of the BPSN op: the fused kernels of ``bpsn_kernels.cu``.

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
from bpsn_ext.kernels.launch_args import channel_sums, prepare

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


def _launch(kernel, M: int, device_index: int, tensors: tuple, scalars: tuple) -> None:
    stream = torch.cuda.current_stream(device_index).cuda_stream
    with cupy.cuda.Device(device_index), cupy.cuda.ExternalStream(stream):
        kernel((math.ceil(M / _BLOCK),), (_BLOCK,), tuple(_arr(t) for t in tensors) + scalars)


def _scalars(shape: tuple, has_mask: bool, cfg: dict) -> tuple:
    T, M, N, C, inner = shape
    return (
        np.int64(T),
        np.int64(M),
        np.int64(N),
        np.int64(C),
        np.int64(inner),
        np.int32(has_mask),
        np.int32(cfg["fire_ge"]),
        np.int32(cfg["refractory"]),
        np.float32(cfg["k0"]),
        np.int32(cfg["sg_kind"]),
        np.float32(cfg["sg_a"]),
        np.float32(cfg["sg_b"]),
    )


class _BPSNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, mask_u8, lam_f, lam_b, w_f, w_b, thr, shape, has_mask, cfg):
        T, M = shape[0], shape[1]
        dev = x2.device.index
        spikes, membrane = torch.empty_like(x2), torch.empty_like(x2)
        hf = torch.empty(T, M, device=x2.device, dtype=torch.float32)
        hb = torch.empty_like(hf)
        kernel = _module(dev).get_function(f"bpsn_forward<{_TYPES[x2.dtype]}>")
        tensors = (x2, mask_u8, lam_f, lam_b, w_f, w_b, thr, spikes, membrane, hf, hb)
        _launch(kernel, M, dev, tensors, _scalars(shape, has_mask, cfg))
        ctx.save_for_backward(x2, mask_u8, lam_f, lam_b, w_f, w_b, thr, membrane, hf, hb)
        ctx.shape, ctx.has_mask, ctx.cfg = shape, has_mask, cfg
        ctx.mark_non_differentiable(membrane)
        return spikes, membrane

    @staticmethod
    def backward(ctx, grad_spikes, _grad_membrane):
        x2, mask_u8, lam_f, lam_b, w_f, w_b, thr, membrane, hf, hb = ctx.saved_tensors
        _T, M, _N, C, inner = ctx.shape
        dev = x2.device.index
        g = grad_spikes.contiguous()
        if g.dtype not in _TYPES:
            g = g.float()
        delta, acc = torch.empty_like(hf), torch.empty_like(hf)
        grad_x = torch.empty_like(x2)
        partial = [torch.empty(M, device=x2.device, dtype=torch.float32) for _ in range(5)]
        kernel = _module(dev).get_function(f"bpsn_backward<{_TYPES[x2.dtype]}, {_TYPES[g.dtype]}>")
        tensors = (
            g,
            x2,
            mask_u8,
            lam_f,
            lam_b,
            w_f,
            w_b,
            thr,
            membrane,
            hf,
            hb,
            delta,
            acc,
            grad_x,
            *partial,
        )
        _launch(kernel, M, dev, tensors, _scalars(ctx.shape, ctx.has_mask, ctx.cfg))
        g_lf, g_lb, g_wf, g_wb, g_th = (channel_sums(p, C, inner) for p in partial)
        return grad_x, None, g_lf, g_lb, g_wf, g_wb, g_th, None, None, None


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
    a = prepare(x, mask, params, options, sg, channel_dim)
    spikes, membrane = _BPSNFunction.apply(
        a.x2, a.mask_u8, a.decay_f, a.decay_b, a.w_f, a.w_b, a.thr, a.shape, a.has_mask, a.cfg
    )
    return spikes.reshape(x.shape), membrane.reshape(x.shape)
