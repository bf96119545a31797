"""Triton provider of the BPSN op: forward and backward kernels as torch operators.

``bpsn_ext::bpsn_triton_forward`` and ``bpsn_ext::bpsn_triton_backward`` are
``torch.library.custom_op`` s that launch the kernels below, with fake (meta) and autograd
registrations: eager mode, ``torch.compile(fullgraph=True)`` and ``torch.library.opcheck`` see
one opaque operator.  (``triton_op`` + ``wrap_triton`` would let the compiler look inside, but
its traced fake implementation does not run under Triton's CPU interpreter, which is how the
tests execute these very kernels on CPU tensors: ``TRITON_INTERPRET=1``.)

One program per block of ``BLOCK`` neurons (columns of the ``[T, M]`` view of a contiguous
``[T, N, *]`` input); every program runs all T steps, so the channel axis may be anywhere: the
neurons are laid out ``[outer, C, inner]`` and neuron ``j`` has channel ``(j // inner) % C``
and sample ``j // (M // N)``.  No permuted copy is made.

Covers leak kernels; ``split``, ``gate``, ``avg`` and ``sum`` fusion (as per-channel weights
``w_f``, ``w_b`` of the two branches, ``k0`` the lag-0 correction of ``sum``); the
``refractory`` (any period), ``none`` and ``soft_reset`` rules (with ``detach_reset``); masks;
the ATan / Sigmoid / S2NN / FastSigmoid surrogates.  Forward: ``hb`` backwards in time, then
``hf``, the fused membrane and the spikes forwards.  Backward (``delta_t = dL/dH_t``): pass A
(time ascending) the refractory gate or the reset trace ``R``; pass B (descending) the reset
adjoint, ``delta`` and the forward-branch adjoint; pass C (ascending) the backward-branch
adjoint.  Parameter gradients are per-neuron partial sums, reduced per channel in torch (in a
fixed order, so the result does not depend on the launch).  Arithmetic follows the torch
reference operation for operation, so under the interpreter spikes are bit-identical to it.

Shapes: ``x`` ``[T, N, *]`` float32 or float64 contiguous; ``mask`` ``[T, N]`` uint8 or None;
``decay_f``, ``decay_b``, ``w_f``, ``w_b``, ``thr`` ``[C]`` of ``x.dtype``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from bpsn_ext.core.bpsn_options import BPSNOptions, BPSNParams, SurrogateArgs
from bpsn_ext.core.masks import as_mask
from bpsn_ext.kernels.launch_args import channel_layout, per_channel, weights

__all__ = [
    "bpsn_triton",
    "bpsn_triton_forward",
    "bpsn_triton_backward",
    "RUNAWAY_IDS",
    "BLOCK",
    "NUM_WARPS",
]

RUNAWAY_IDS = {"none": 0, "refractory": 1, "soft_reset": 2}
BLOCK = 64
# 2 warps cover a BLOCK of 64 lanes; the membrane is rounded after every multiply and add (no
# fused multiply-add), as in the torch reference and the CPU kernel, so spikes agree bitwise
NUM_WARPS = 2


@triton.jit
def _surrogate_grad(d, a, b, SG_KIND: tl.constexpr):
    """The surrogate derivative at ``d = H - thr``, operation for operation as the torch one."""
    if SG_KIND == 0:  # ATan: a = alpha / 2, b = pi * alpha / 2
        ax = b * d
        return a / (1 + ax * ax)
    elif SG_KIND == 1:  # Sigmoid
        s = 1 / (1 + tl.exp(-(d * a)))
        return (1 - s) * s * a
    elif SG_KIND == 2:  # S2NN
        s = 1 / (1 + tl.exp(-(a * d)))
        return tl.where(d < 0, a * s * (1 - s), b / (tl.where(d < 0, 0.0, d) + 1))
    else:  # FastSigmoid
        q = a * tl.abs(d) + 1
        return 1 / (q * q)


@triton.jit
def _fires(d, FIRE_GE: tl.constexpr):
    if FIRE_GE:
        return d >= 0
    else:
        return d > 0


@triton.jit
def _refractory(raw, since, period):
    """One step of the run-based refractory rule: ``(keep, since)``."""
    keep = raw & ((since < 0) | (since >= period))
    since = tl.where(keep, 0, tl.where(raw, since + 1, -1))
    return keep, since


@triton.jit
def _step_input(x_ptr, mask_ptr, t, j, n, live, M, N, HAS_MASK: tl.constexpr):
    """``(valid, x_t)`` of step ``t``: the input, 0 at padded steps."""
    xv = tl.load(x_ptr + t * M + j, mask=live, other=0.0)
    if HAS_MASK:
        valid = tl.load(mask_ptr + t * N + n, mask=live, other=0) != 0
        xv = tl.where(valid, xv, 0.0)
    else:
        valid = live
    return valid, xv


@triton.jit
def _lanes(lf_ptr, lb_ptr, wf_ptr, wb_ptr, thr_ptr, M, C, inner, per_sample, BLOCK: tl.constexpr):
    """This program's neurons ``j`` (of ``M``), which are live, their sample ``n`` and the
    parameters of their channel: decays, branch weights and threshold."""
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = j < M
    n, c = j // per_sample, (j // inner) % C
    lf = tl.load(lf_ptr + c, mask=live, other=0.0)
    lb = tl.load(lb_ptr + c, mask=live, other=0.0)
    wf = tl.load(wf_ptr + c, mask=live, other=0.0)
    wb = tl.load(wb_ptr + c, mask=live, other=0.0)
    th = tl.load(thr_ptr + c, mask=live, other=0.0)
    return j, live, n, lf, lb, wf, wb, th


@triton.jit
def _bpsn_forward_kernel(
    x_ptr, mask_ptr, lf_ptr, lb_ptr, wf_ptr, wb_ptr, thr_ptr,
    s_ptr, mem_ptr, hf_ptr, hb_ptr,
    T, M, N, C, inner, per_sample, period, k0,
    HAS_MASK: tl.constexpr, FIRE_GE: tl.constexpr, RUNAWAY: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    j, live, n, lf, lb, wf, wb, th = _lanes(
        lf_ptr, lb_ptr, wf_ptr, wb_ptr, thr_ptr, M, C, inner, per_sample, BLOCK
    )
    hb = tl.zeros([BLOCK], dtype=lf.dtype)
    for i in range(T):  # the backward branch, last step first
        t = T - 1 - i
        valid, xv = _step_input(x_ptr, mask_ptr, t, j, n, live, M, N, HAS_MASK)
        hb = lb * hb + xv
        tl.store(hb_ptr + t * M + j, hb, mask=live)
    hf = tl.zeros([BLOCK], dtype=lf.dtype)
    reset = tl.zeros([BLOCK], dtype=lf.dtype)
    s_prev = tl.zeros([BLOCK], dtype=lf.dtype)
    since = tl.full([BLOCK], -1, tl.int32)
    for t in range(T):
        valid, xv = _step_input(x_ptr, mask_ptr, t, j, n, live, M, N, HAS_MASK)
        hf = lf * hf + xv
        tl.store(hf_ptr + t * M + j, hf, mask=live)
        hb_t = tl.load(hb_ptr + t * M + j, mask=live, other=0.0)
        h = wf * hf + wb * hb_t - k0 * xv
        if RUNAWAY == 2:  # soft reset of the fused membrane
            reset = lf * (reset + s_prev)
            h = h - th * reset
        keep = valid & _fires(h - th, FIRE_GE)
        if RUNAWAY == 1:
            keep, since = _refractory(keep, since, period)
        s = tl.where(keep, 1.0, 0.0).to(lf.dtype)
        s_prev = s
        tl.store(s_ptr + t * M + j, s, mask=live)
        tl.store(mem_ptr + t * M + j, tl.where(valid, h, 0.0), mask=live)


@triton.jit
def _pass_a(
    g_ptr, gm_ptr, x_ptr, mask_ptr, hf_ptr, hb_ptr, delta_ptr, j, n, live,
    lf, wf, wb, th, T, M, N, period, k0, sg_a, sg_b,
    HAS_MASK: tl.constexpr, HAS_G: tl.constexpr, HAS_GM: tl.constexpr, FIRE_GE: tl.constexpr,
    RUNAWAY: tl.constexpr, SG_KIND: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Time ascending: ``delta`` (no reset) or the reset trace ``R`` (soft reset) into
    ``delta_ptr``; returns the threshold gradient of the no-reset rules."""
    g_th = tl.zeros([BLOCK], dtype=lf.dtype)
    since = tl.full([BLOCK], -1, tl.int32)
    reset = tl.zeros([BLOCK], dtype=lf.dtype)
    s_prev = tl.zeros([BLOCK], dtype=lf.dtype)
    for t in range(T):
        valid, xv = _step_input(x_ptr, mask_ptr, t, j, n, live, M, N, HAS_MASK)
        hf = tl.load(hf_ptr + t * M + j, mask=live, other=0.0)
        hb = tl.load(hb_ptr + t * M + j, mask=live, other=0.0)
        h = wf * hf + wb * hb - k0 * xv
        if RUNAWAY == 2:
            reset = lf * (reset + s_prev)
            s_prev = tl.where(valid & _fires(h - th * reset - th, FIRE_GE), 1.0, 0.0).to(lf.dtype)
            tl.store(delta_ptr + t * M + j, reset, mask=live)
        else:
            raw = valid & _fires(h - th, FIRE_GE)
            gate = valid
            if RUNAWAY == 1:  # a raw spike removed by the rule passes no gradient
                keep, since = _refractory(raw, since, period)
                gate = valid & (keep | (raw == 0))
            d = tl.zeros([BLOCK], dtype=lf.dtype)
            if HAS_G:
                g = tl.load(g_ptr + t * M + j, mask=live, other=0.0)
                d = tl.where(gate, g * _surrogate_grad(h - th, sg_a, sg_b, SG_KIND), 0.0)
            g_th -= d
            if HAS_GM:
                d += tl.where(valid, tl.load(gm_ptr + t * M + j, mask=live, other=0.0), 0.0)
            tl.store(delta_ptr + t * M + j, d, mask=live)
    return g_th


@triton.jit
def _reset_adjoint(
    g_ptr, gm_ptr, s_ptr, delta_ptr, t, j, live, valid, h, lf, th, rho, sg_a, sg_b,
    M, HAS_G: tl.constexpr, HAS_GM: tl.constexpr, DETACH: tl.constexpr, SG_KIND: tl.constexpr,
):  # fmt: skip
    """Soft reset, step t (time descending): ``(delta_t, rho_t, dthr_t, ddecay_f_t)`` from
    ``rho = dL/dR_{t+1}``; R_t is read from ``delta_ptr`` (pass A put it there)."""
    reset = tl.load(delta_ptr + t * M + j, mask=live, other=0.0)
    u = h - th * reset
    ds = tl.zeros_like(h)
    if HAS_G:
        ds = tl.load(g_ptr + t * M + j, mask=live, other=0.0)
    if not DETACH:
        ds += lf * rho  # s_t enters R_{t+1} = lf (R_t + s_t)
    ds = tl.where(valid, ds * _surrogate_grad(u - th, sg_a, sg_b, SG_KIND), 0.0)
    nu = ds
    if HAS_GM:
        nu += tl.where(valid, tl.load(gm_ptr + t * M + j, mask=live, other=0.0), 0.0)
    d_th = -ds - nu * reset
    # dR_t/ddecay_f = R_{t-1} + s_{t-1}
    prev = tl.zeros_like(h)
    if t > 0:
        prev = tl.load(delta_ptr + (t - 1) * M + j, mask=live, other=0.0)
        prev += tl.load(s_ptr + (t - 1) * M + j, mask=live, other=0.0)
    rho_t = -th * nu + lf * rho
    return nu, rho_t, d_th, rho_t * prev


@triton.jit
def _bpsn_backward_kernel(
    g_ptr, gm_ptr, x_ptr, mask_ptr, lf_ptr, lb_ptr, wf_ptr, wb_ptr, thr_ptr,
    s_ptr, hf_ptr, hb_ptr, delta_ptr, gx_ptr, p_lf, p_lb, p_wf, p_wb, p_th,
    T, M, N, C, inner, per_sample, period, k0, sg_a, sg_b,
    HAS_MASK: tl.constexpr, HAS_G: tl.constexpr, HAS_GM: tl.constexpr, FIRE_GE: tl.constexpr,
    RUNAWAY: tl.constexpr, DETACH: tl.constexpr, SG_KIND: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    j, live, n, lf, lb, wf, wb, th = _lanes(
        lf_ptr, lb_ptr, wf_ptr, wb_ptr, thr_ptr, M, C, inner, per_sample, BLOCK
    )
    g_th = _pass_a(
        g_ptr, gm_ptr, x_ptr, mask_ptr, hf_ptr, hb_ptr, delta_ptr, j, n, live,
        lf, wf, wb, th, T, M, N, period, k0, sg_a, sg_b,
        HAS_MASK, HAS_G, HAS_GM, FIRE_GE, RUNAWAY, SG_KIND, BLOCK,
    )  # fmt: skip
    a = tl.zeros([BLOCK], dtype=lf.dtype)
    rho = tl.zeros([BLOCK], dtype=lf.dtype)
    g_lf, g_wf, g_wb = tl.zeros_like(a), tl.zeros_like(a), tl.zeros_like(a)
    for i in range(T):  # pass B, last step first
        t = T - 1 - i
        valid, xv = _step_input(x_ptr, mask_ptr, t, j, n, live, M, N, HAS_MASK)
        hf = tl.load(hf_ptr + t * M + j, mask=live, other=0.0)
        hb = tl.load(hb_ptr + t * M + j, mask=live, other=0.0)
        if RUNAWAY == 2:
            h = wf * hf + wb * hb - k0 * xv
            d, rho, d_th, d_lf = _reset_adjoint(
                g_ptr, gm_ptr, s_ptr, delta_ptr, t, j, live, valid, h, lf, th, rho, sg_a, sg_b,
                M, HAS_G, HAS_GM, DETACH, SG_KIND,
            )  # fmt: skip
            g_th += d_th
            g_lf += d_lf
            tl.store(delta_ptr + t * M + j, d, mask=live)
        else:
            d = tl.load(delta_ptr + t * M + j, mask=live, other=0.0)
        g_lf += a * hf  # hf_{t+1} = lf hf_t + x_{t+1}
        a = wf * d + lf * a
        g_wf += d * hf
        g_wb += d * hb
        tl.store(gx_ptr + t * M + j, a - k0 * d, mask=live)
    b = tl.zeros([BLOCK], dtype=lf.dtype)
    g_lb = tl.zeros_like(b)
    for t in range(T):  # pass C
        valid, xv = _step_input(x_ptr, mask_ptr, t, j, n, live, M, N, HAS_MASK)
        hb = tl.load(hb_ptr + t * M + j, mask=live, other=0.0)
        d = tl.load(delta_ptr + t * M + j, mask=live, other=0.0)
        g_lb += b * hb  # hb_{t-1} = lb hb_t + x_{t-1}
        b = wb * d + lb * b
        gx = tl.load(gx_ptr + t * M + j, mask=live, other=0.0)
        tl.store(gx_ptr + t * M + j, tl.where(valid, gx + b, 0.0), mask=live)
    # one store each: Triton's compiler (unlike its interpreter) cannot loop over a tuple
    tl.store(p_lf + j, g_lf, mask=live)
    tl.store(p_lb + j, g_lb, mask=live)
    tl.store(p_wf + j, g_wf, mask=live)
    tl.store(p_wb + j, g_wb, mask=live)
    tl.store(p_th + j, g_th, mask=live)


def _layout(x: Tensor, mask: Tensor | None, C: int, inner: int) -> tuple:
    """``(T, M, N, per_sample, grid, mask_or_dummy)`` of a launch over ``x`` ``[T, N, *]``."""
    T, N = x.shape[:2]
    M = x.numel() // T if T else 0
    mask_arg = mask if mask is not None else x.new_zeros(1, dtype=torch.uint8)
    return T, M, N, max(M // max(N, 1), 1), (triton.cdiv(M, BLOCK),), mask_arg


@torch.library.custom_op("bpsn_ext::bpsn_triton_forward", mutates_args=())
def bpsn_triton_forward(
    x: Tensor,
    mask: Tensor | None,
    decay_f: Tensor,
    decay_b: Tensor,
    w_f: Tensor,
    w_b: Tensor,
    thr: Tensor,
    inner: int,
    k0: float,
    fire_ge: bool,
    runaway: int,
    period: int,
    detach_reset: bool,
    sg_kind: int,
    sg_a: float,
    sg_b: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(spikes, membrane, hf, hb)`` ``[T, N, *]``: the membrane is the fused (post-reset)
    H, 0 at padded steps; ``hf``, ``hb`` the two branches (kept for the backward pass)."""
    x = x.contiguous()
    spikes, membrane, hf, hb = (torch.empty_like(x) for _ in range(4))
    T, M, N, per_sample, grid, mask_arg = _layout(x, mask, decay_f.numel(), inner)
    if M == 0 or T == 0:
        return spikes, membrane, hf, hb
    _bpsn_forward_kernel[grid](
        x, mask_arg, decay_f, decay_b, w_f, w_b, thr, spikes, membrane, hf, hb,
        T, M, N, decay_f.numel(), inner, per_sample, period, k0,
        HAS_MASK=mask is not None, FIRE_GE=fire_ge, RUNAWAY=runaway, BLOCK=BLOCK,
        num_warps=NUM_WARPS, enable_fp_fusion=False,
    )  # fmt: skip
    return spikes, membrane, hf, hb


@bpsn_triton_forward.register_fake
def _(x, mask, decay_f, decay_b, w_f, w_b, thr, inner, k0, fire_ge, runaway, period, *_):
    return tuple(torch.empty_like(x) for _ in range(4))


@torch.library.custom_op("bpsn_ext::bpsn_triton_backward", mutates_args=())
def bpsn_triton_backward(
    grad_spikes: Tensor | None,
    grad_membrane: Tensor | None,
    x: Tensor,
    mask: Tensor | None,
    decay_f: Tensor,
    decay_b: Tensor,
    w_f: Tensor,
    w_b: Tensor,
    thr: Tensor,
    spikes: Tensor,
    hf: Tensor,
    hb: Tensor,
    inner: int,
    k0: float,
    fire_ge: bool,
    runaway: int,
    period: int,
    detach_reset: bool,
    sg_kind: int,
    sg_a: float,
    sg_b: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``x`` ``[T, N, *]`` and of ``decay_f``, ``decay_b``, ``w_f``, ``w_b``,
    ``thr`` ``[C]``."""
    C = decay_f.numel()
    T, M, N, per_sample, grid, mask_arg = _layout(x, mask, C, inner)
    grad_x, delta = torch.empty_like(x), torch.empty_like(x)
    partial = x.new_zeros(5, max(M, 1))
    if M and T:
        g = x if grad_spikes is None else grad_spikes.to(x.dtype).contiguous()
        gm = x if grad_membrane is None else grad_membrane.to(x.dtype).contiguous()
        _bpsn_backward_kernel[grid](
            g, gm, x, mask_arg, decay_f, decay_b, w_f, w_b, thr, spikes, hf, hb, delta, grad_x,
            *partial, T, M, N, C, inner, per_sample, period, k0, sg_a, sg_b,
            HAS_MASK=mask is not None, HAS_G=grad_spikes is not None,
            HAS_GM=grad_membrane is not None, FIRE_GE=fire_ge, RUNAWAY=runaway,
            DETACH=detach_reset, SG_KIND=sg_kind, BLOCK=BLOCK,
            num_warps=NUM_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
    else:
        grad_x.zero_()
    sums = partial[:, :M].reshape(5, -1, C, inner).sum(dim=(1, 3))
    return (grad_x, *(s.clone() for s in sums.unbind(0)))  # outputs must not alias


@bpsn_triton_backward.register_fake
def _(grad_spikes, grad_membrane, x, mask, decay_f, *_):
    C = decay_f.numel()
    return (torch.empty_like(x), *(x.new_empty(C) for _ in range(5)))


def _setup_context(ctx, inputs, output) -> None:
    x, mask, decay_f, decay_b, w_f, w_b, thr, *options = inputs
    spikes, _, hf, hb = output
    ctx.save_for_backward(x, mask, decay_f, decay_b, w_f, w_b, thr, spikes, hf, hb)
    ctx.options = tuple(options)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_spikes, grad_membrane, _grad_hf, _grad_hb):
    x, mask, decay_f, decay_b, w_f, w_b, thr, spikes, hf, hb = ctx.saved_tensors
    grads = bpsn_triton_backward(
        grad_spikes, grad_membrane, x, mask, decay_f, decay_b, w_f, w_b, thr, spikes, hf, hb,
        *ctx.options,
    )  # fmt: skip
    return (grads[0], None, *grads[1:], *(None,) * len(ctx.options))


bpsn_triton_forward.register_autograd(_backward, setup_context=_setup_context)


def surrogate_constants(sg_kind: int, a: float, b: float) -> tuple[float, float]:
    """The ``(sg_a, sg_b)`` the kernels take: ATan's ``alpha`` becomes ``(alpha/2,
    pi alpha/2)`` (as the torch formula computes them); the others pass through."""
    if sg_kind == 0:
        return a / 2, math.pi * (a / 2)
    return a, b


def bpsn_triton(
    x: Tensor,
    mask: Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int | None,
) -> tuple[Tensor, Tensor]:
    """``(spikes, membrane)`` ``[T, N, *]`` of a BPSN with ``options`` (leak kernel; split,
    gate, avg or sum fusion; any runaway rule: `bpsn_ext.kernels.dispatch` checks) computed by
    the Triton kernels; channels at ``channel_dim`` (None: ``[T, N]``).  float16 and bfloat16
    inputs compute in float32, as the torch path."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    T, N = x.shape[:2]
    C, inner = channel_layout(x, channel_dim)
    m = as_mask(mask, T, N, x.device)
    w_f, w_b, k0 = weights(options, params.gate)
    decay_f, decay_b, w_f, w_b, thr = (
        per_channel(p, C, dtype, x.device)
        for p in (params.decay_f, params.decay_b, w_f, w_b, params.v_threshold)
    )
    sg_a, sg_b = surrogate_constants(sg.kind, sg.a, sg.b)
    spikes, membrane, _, _ = bpsn_triton_forward(
        x.to(dtype).contiguous(),
        None if m is None else m.to(torch.uint8).contiguous(),
        decay_f, decay_b, w_f, w_b, thr, inner, k0, sg.fire_ge,
        RUNAWAY_IDS[options.runaway], options.refractory_steps, options.detach_reset,
        sg.kind, sg_a, sg_b,
    )  # fmt: skip
    return spikes.to(x.dtype), membrane.to(x.dtype)
