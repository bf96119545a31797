"""The fused BPSN kernels of ``bpsn_kernels.cu`` as torch operators, for any launcher.

``bpsn_ext::bpsn_fused_forward`` and ``bpsn_ext::bpsn_fused_backward`` are
``torch.library.custom_op`` s with fake and autograd registrations, the interface of the native
and Triton kernels.  Who launches the kernel code is registered per device type
(`register_launchers`): `bpsn_ext.kernels.cupy_bpsn` registers CuPy for ``"cuda"`` when it is
imported (only for CUDA tensors); the tests register the host C++ build of the same source for
``"cpu"``, so the operators, their autograd and ``torch.library.opcheck`` run without a GPU.

Launchers take ``(tensors, scalars)`` in the order of the ``.cu`` entry points: forward
``(x, mask, decay_f, decay_b, w_f, w_b, thr, spikes, membrane, hf, hb)``, backward
``(grad_spikes, x, mask, decay_f, decay_b, w_f, w_b, thr, membrane, hf, hb, delta, acc,
grad_x, 5 partial sums)``, scalars ``(T, M, N, C, inner, has_mask, fire_ge, refractory, k0,
sg_kind, sg_a, sg_b)``.  Shapes: ``x`` ``[T, M]``, parameters ``[C]`` float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bpsn_ext.kernels.launch_args import KernelArgs, Launchers, channel_sums

__all__ = ["register_launchers", "bpsn_fused", "bpsn_fused_forward", "bpsn_fused_backward"]

LAUNCHERS = Launchers("fused BPSN kernel")
register_launchers = LAUNCHERS.register
_launcher = LAUNCHERS.launcher


@torch.library.custom_op("bpsn_ext::bpsn_fused_forward", mutates_args=())
def bpsn_fused_forward(
    x2: Tensor,
    mask_u8: Tensor,
    params: list[Tensor],
    sizes: list[int],
    flags: list[int],
    consts: list[float],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(spikes, membrane, hf, hb)`` ``[T, M]``; ``params`` = ``[decay_f, decay_b, w_f,
    w_b, thr]``, ``sizes`` = ``[T, M, N, C, inner]``, ``flags`` = ``[has_mask, fire_ge,
    refractory, sg_kind]``, ``consts`` = ``[k0, sg_a, sg_b]``."""
    spikes, membrane = torch.empty_like(x2), torch.empty_like(x2)
    hf = torch.empty(x2.shape, device=x2.device, dtype=torch.float32)
    hb = torch.empty_like(hf)
    tensors = (x2, mask_u8, *params, spikes, membrane, hf, hb)
    _launcher(x2, 0)(tensors, _scalars(sizes, flags, consts))
    return spikes, membrane, hf, hb


@bpsn_fused_forward.register_fake
def _(x2, mask_u8, params, sizes, flags, consts):
    hf = x2.new_empty(x2.shape, dtype=torch.float32)
    return torch.empty_like(x2), torch.empty_like(x2), hf, torch.empty_like(hf)


def _scalars(sizes, flags, consts) -> tuple:
    has_mask, fire_ge, refractory, sg_kind = flags
    k0, sg_a, sg_b = consts
    return (*sizes, has_mask, fire_ge, refractory, k0, sg_kind, sg_a, sg_b)


@torch.library.custom_op("bpsn_ext::bpsn_fused_backward", mutates_args=())
def bpsn_fused_backward(
    grad_spikes: Tensor,
    x2: Tensor,
    mask_u8: Tensor,
    params: list[Tensor],
    saved: list[Tensor],
    sizes: list[int],
    flags: list[int],
    consts: list[float],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``x2`` ``[T, M]`` and of the five parameters ``[C]``; ``saved`` =
    ``[membrane, hf, hb]`` of the forward pass."""
    T, M, _, C, inner = sizes
    g = grad_spikes.contiguous()
    if g.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        g = g.float()
    hf = saved[1]
    delta, acc, grad_x = torch.empty_like(hf), torch.empty_like(hf), torch.empty_like(x2)
    partial = [torch.empty(M, device=x2.device, dtype=torch.float32) for _ in range(5)]
    tensors = (g, x2, mask_u8, *params, *saved, delta, acc, grad_x, *partial)
    _launcher(x2, 1)(tensors, _scalars(sizes, flags, consts))
    return (grad_x, *(channel_sums(p, C, inner) for p in partial))


@bpsn_fused_backward.register_fake
def _(grad_spikes, x2, mask_u8, params, saved, sizes, flags, consts):
    C = sizes[3]
    return (torch.empty_like(x2), *(x2.new_empty(C, dtype=torch.float32) for _ in range(5)))


def _setup_context(ctx, inputs, output) -> None:
    x2, mask_u8, params, sizes, flags, consts = inputs
    _, membrane, hf, hb = output
    ctx.save_for_backward(x2, mask_u8, *params, membrane, hf, hb)
    ctx.options = (sizes, flags, consts)
    ctx.mark_non_differentiable(membrane, hf, hb)  # the kernel differentiates the spikes only


def _backward(ctx, grad_spikes, _grad_membrane, _grad_hf, _grad_hb):
    x2, mask_u8, *params, membrane, hf, hb = ctx.saved_tensors
    grads = bpsn_fused_backward(grad_spikes, x2, mask_u8, params, [membrane, hf, hb], *ctx.options)
    return grads[0], None, list(grads[1:]), None, None, None


bpsn_fused_forward.register_autograd(_backward, setup_context=_setup_context)


def bpsn_fused(a: KernelArgs) -> tuple[Tensor, Tensor]:
    """``(spikes, membrane)`` ``[T, M]`` of the prepared arguments ``a``.  The kernel
    differentiates the spikes only: the membrane is a non-differentiable output
    (``requires_grad=False``); the Triton kernels and torch differentiate both."""
    c = a.cfg
    spikes, membrane, _, _ = bpsn_fused_forward(
        a.x2,
        a.mask_u8,
        [a.decay_f, a.decay_b, a.w_f, a.w_b, a.thr],
        list(a.shape),
        [int(a.has_mask), c["fire_ge"], c["refractory"], c["sg_kind"]],
        [float(c["k0"]), c["sg_a"], c["sg_b"]],
    )
    return spikes, membrane
