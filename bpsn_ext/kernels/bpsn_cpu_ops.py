"""The native BPSN CPU kernel as ``torch.library`` operators.

``bpsn_ext::bpsn_cpu_forward`` and ``bpsn_ext::bpsn_cpu_backward`` wrap the ctypes calls of
`bpsn_ext.kernels.cpu_native` with fake-tensor (meta) and autograd registrations, so that
eager mode, ``torch.compile`` (``fullgraph=True`` included) and ``torch.export`` all run the
same compiled kernel: the compiler sees one opaque operator instead of breaking the graph.

Shapes: ``x`` ``[T, N, *]`` contiguous, with the channels at some dimension: ``channels`` C
and ``inner`` (the product of the dimensions after the channel one) locate them; ``mask``
``[T, N]`` uint8 (1 = real step) or None; ``decay_f``, ``decay_b``, ``thr`` ``[C]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bpsn_ext.core.bpsn_options import BPSNOptions, BPSNParams, SurrogateArgs
from bpsn_ext.core.masks import as_mask, broadcast_mask
from bpsn_ext.kernels import cpu_native
from bpsn_ext.kernels.launch_args import channel_layout, per_channel

__all__ = ["bpsn_cpu_forward", "bpsn_cpu_backward", "bpsn_native"]


@torch.library.custom_op("bpsn_ext::bpsn_cpu_forward", mutates_args=(), device_types="cpu")
def bpsn_cpu_forward(
    x: Tensor,
    decay_f: Tensor,
    decay_b: Tensor,
    thr: Tensor,
    mask: Tensor | None,
    channels: int,
    inner: int,
    fire_ge: int,
    refractory: int,
    sg_kind: int,
    sg_a: float,
    sg_b: float,
) -> tuple[Tensor, Tensor]:
    """``(spikes, H)`` ``[T, N, *]``: H is the fused membrane before masking.  The surrogate
    (``sg_*``) is used by the backward pass only."""
    x = x.contiguous()
    T, N = x.shape[:2]
    M = x.numel() // T
    spikes, H = torch.empty_like(x), torch.empty_like(x)
    lib = cpu_native._load_default()
    status = getattr(lib, f"bpsn_cpu_forward_{cpu_native._DTYPES[x.dtype]}")(
        x.data_ptr(),
        cpu_native._ptr(mask),
        decay_f.data_ptr(),
        decay_b.data_ptr(),
        thr.data_ptr(),
        spikes.data_ptr(),
        H.data_ptr(),
        None,
        T,
        M,
        N,
        channels,
        inner,
        fire_ge,
        refractory,
        cpu_native._threads(),
    )
    cpu_native._check(status, "forward")
    return spikes, H


@bpsn_cpu_forward.register_fake
def _(x, decay_f, decay_b, thr, mask, channels, inner, fire_ge, refractory, sg_kind, sg_a, sg_b):
    return torch.empty_like(x), torch.empty_like(x)


@torch.library.custom_op("bpsn_ext::bpsn_cpu_backward", mutates_args=(), device_types="cpu")
def bpsn_cpu_backward(
    grad_spikes: Tensor | None,
    grad_h: Tensor | None,
    mask: Tensor | None,
    decay_f: Tensor,
    decay_b: Tensor,
    thr: Tensor,
    H: Tensor,
    channels: int,
    inner: int,
    fire_ge: int,
    refractory: int,
    sg_kind: int,
    sg_a: float,
    sg_b: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``x`` ``[T, N, *]`` and of ``decay_f``, ``decay_b``, ``thr`` ``[C]``."""
    T, N = H.shape[:2]
    M = H.numel() // T
    g, g_const = grad_spikes, 0
    if g is not None:
        g = g.to(H.dtype)
        if all(s == 0 for s in g.stride()):
            g_const = 1  # y.sum().backward(): one value broadcast over [T, N, *]
        else:
            g = g.contiguous()
    gm = None if grad_h is None else grad_h.to(H.dtype).contiguous()
    grad_x = torch.empty_like(H)
    g_lf, g_lb, g_th = (H.new_empty(channels) for _ in range(3))
    lib = cpu_native._load_default()
    status = getattr(lib, f"bpsn_cpu_backward_{cpu_native._DTYPES[H.dtype]}")(
        cpu_native._ptr(g),
        g_const,
        cpu_native._ptr(gm),
        cpu_native._ptr(mask),
        decay_f.data_ptr(),
        decay_b.data_ptr(),
        thr.data_ptr(),
        H.data_ptr(),
        grad_x.data_ptr(),
        g_lf.data_ptr(),
        g_lb.data_ptr(),
        g_th.data_ptr(),
        T,
        M,
        N,
        channels,
        inner,
        fire_ge,
        refractory,
        sg_kind,
        sg_a,
        sg_b,
        cpu_native._threads(),
    )
    cpu_native._check(status, "backward")
    return grad_x, g_lf, g_lb, g_th


@bpsn_cpu_backward.register_fake
def _(
    grad_spikes,
    grad_h,
    mask,
    decay_f,
    decay_b,
    thr,
    H,
    channels,
    inner,
    fire_ge,
    refractory,
    sg_kind,
    sg_a,
    sg_b,
):
    return (
        torch.empty_like(H),
        H.new_empty(channels),
        H.new_empty(channels),
        H.new_empty(channels),
    )


def _setup_context(ctx, inputs, output) -> None:
    x, decay_f, decay_b, thr, mask, channels, inner, fire_ge, refractory, *surrogate = inputs
    ctx.save_for_backward(decay_f, decay_b, thr, output[1], mask)
    ctx.ints = (channels, inner, fire_ge, refractory)
    ctx.surrogate = tuple(surrogate)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_spikes, grad_h):
    decay_f, decay_b, thr, H, mask = ctx.saved_tensors
    channels, inner, fire_ge, refractory = ctx.ints
    sg_kind, sg_a, sg_b = ctx.surrogate
    grads = bpsn_cpu_backward(
        grad_spikes,
        grad_h,
        mask,
        decay_f,
        decay_b,
        thr,
        H,
        channels,
        inner,
        fire_ge,
        refractory,
        sg_kind,
        sg_a,
        sg_b,
    )
    return (*grads, None, None, None, None, None, None, None, None)


bpsn_cpu_forward.register_autograd(_backward, setup_context=_setup_context)


def bpsn_native(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, membrane)`` ``[T, N, *]`` of a BPSN with ``options`` (leak kernel, split
    fusion, refractory or no rule: `bpsn_ext.kernels.dispatch` checks) for a CPU ``x`` whose
    channels are at ``channel_dim``; the same values as the torch path, gradients flowing to
    ``x``, the decays and the threshold.  ``NativeKernelUnavailable`` when it cannot be built.
    """
    T, N = x.shape[:2]
    C, inner = channel_layout(x, channel_dim)
    m = as_mask(mask, T, N, x.device)
    mask_u8 = None if m is None else m.to(torch.uint8).contiguous()
    if N == 0 or x[0].numel() == 0:  # nothing to compute: the torch path handles empty batches
        raise ValueError("the native BPSN CPU kernel needs a non-empty batch")
    decay_f, decay_b, thr = (
        per_channel(p, C, x.dtype) for p in (params.decay_f, params.decay_b, params.v_threshold)
    )
    spikes, H = bpsn_cpu_forward(
        x.contiguous(),
        decay_f,
        decay_b,
        thr,
        mask_u8,
        C,
        inner,
        int(sg.fire_ge),
        options.refractory,
        sg.kind,
        sg.a,
        sg.b,
    )
    if m is None:
        return spikes, H
    return spikes, torch.where(broadcast_mask(m, x.dim()), H, 0.0)  # 0 at padded steps
