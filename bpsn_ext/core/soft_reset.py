"""BPSN's ``runaway="soft_reset"`` rule as one autograd node, in O(T·M) memory.

The rule runs step by step over the no-reset membrane ``h`` ``[T, N, *]``:

    P_t  = R_{t-1} + S_{t-1}          (R_{-1} = S_{-1} = 0)
    R_t  = lam * P_t                  the spikes subtracted so far, leaking like the kernel
    H_t  = h_t - thr * R_t            the membrane after the reset
    S_t  = m_t * surrogate(H_t - thr)

Recorded by autograd, every step would keep several ``[N, *]`` tensors and graph nodes alive
(gigabytes at T = 1e6 even for a few neurons).  Here the forward pass runs without a graph and
keeps three ``[T, N, *]`` arrays (``P``, ``H`` and the mask); the backward pass runs the adjoint
recurrence from the last step to the first:

    dS_t = gS_t + lam * dR_{t+1}      (gS_t alone with ``detach_reset``)
    dZ_t = dS_t * m_t * surrogate'(H_t - thr)
    dH_t = gH_t + dZ_t                (= dL/dh_t)
    dR_t = lam * dR_{t+1} - thr * dH_t

with ``dL/dlam = sum_t P_t dR_t`` and ``dL/dthr = -sum_t (R_t dH_t + dZ_t)``.  The forward
values are those of the step-by-step graph operation for operation (spikes bit for bit); the
gradients agree to rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bpsn_ext.core.masks import zero_padded

__all__ = ["soft_reset"]

Param = torch.Tensor | float


def _forward_steps(h, lam, thr, valid, surrogate):
    """``(spikes, membranes, P)`` ``[T, N, *]`` of the rule, without an autograd graph."""
    R = torch.zeros_like(h[0])
    s_prev = torch.zeros_like(h[0])
    out: tuple[torch.Tensor, ...] = ()
    for t in range(h.shape[0]):
        p_t = R + s_prev
        R = lam * p_t
        h_t = h[t] - thr * R
        s_t = surrogate(h_t - thr)
        if valid is not None:
            s_t = zero_padded(s_t, valid[t])
        if not out:  # the buffers take the dtypes the first step computes in
            out = tuple(h.new_empty((h.shape[0], *v.shape), dtype=v.dtype) for v in (s_t, h_t, p_t))
        for buffer, value in zip(out, (s_t, h_t, p_t)):
            buffer[t] = value
        s_prev = s_t
    return out


def _surrogate_slope(membranes, thr, valid, surrogate) -> torch.Tensor:
    """``m_t * surrogate'(H_t - thr)`` for every step at once (the surrogate is elementwise)."""
    thr = thr.detach() if isinstance(thr, torch.Tensor) else thr
    with torch.enable_grad():
        z = (membranes - thr).detach().requires_grad_(True)
        s = surrogate(z)
        (slope,) = torch.autograd.grad(s, z, torch.ones_like(s))
    return slope if valid is None else zero_padded(slope, valid)


def _param_grad(p: Param, full: torch.Tensor) -> torch.Tensor | None:
    """``full`` ``[T, N, *]`` summed to the shape of the parameter ``p`` (None for a float)."""
    if not isinstance(p, torch.Tensor):
        return None
    return full.sum(0).sum_to_size(p.shape).to(p.dtype)


class _SoftReset(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, lam, thr, valid, surrogate, detach_reset):
        spikes, membranes, P = _forward_steps(h, lam, thr, valid, surrogate)
        ctx.save_for_backward(membranes, P, *(v for v in (valid,) if v is not None))
        ctx.params = (lam, thr)  # floats or [1, C]-like tensors, saved as the graph saves them
        ctx.surrogate, ctx.detach_reset, ctx.masked = surrogate, detach_reset, valid is not None
        return spikes, membranes

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_spikes, g_membranes):
        membranes, P, *rest = ctx.saved_tensors
        lam, thr = ctx.params
        lam_d = lam.detach() if isinstance(lam, torch.Tensor) else lam
        thr_d = thr.detach() if isinstance(thr, torch.Tensor) else thr
        slope = _surrogate_slope(membranes, thr_d, rest[0] if ctx.masked else None, ctx.surrogate)
        zeros = torch.zeros_like(membranes[0])
        d_h, d_r = torch.empty_like(membranes), torch.empty_like(membranes)
        d_next = zeros
        for t in range(membranes.shape[0] - 1, -1, -1):
            d_s = zeros if g_spikes is None else g_spikes[t]
            if not ctx.detach_reset:
                d_s = d_s + lam_d * d_next
            d_ht = d_s * slope[t]
            if g_membranes is not None:
                d_ht = d_ht + g_membranes[t]
            d_h[t] = d_ht
            d_next = lam_d * d_next - thr_d * d_ht
            d_r[t] = d_next
        d_lam = _param_grad(lam, P * d_r) if ctx.needs_input_grad[1] else None
        d_thr = None
        if ctx.needs_input_grad[2]:
            d_z = d_h if g_membranes is None else d_h - g_membranes
            d_thr = _param_grad(thr, -(lam_d * P * d_h + d_z))
        return d_h, d_lam, d_thr, None, None, None


def soft_reset(
    h: torch.Tensor,
    lam: Param,
    thr: Param,
    valid: torch.Tensor | None,
    surrogate: Callable,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes ``[T, N, *]`` of the soft-reset rule (see the module docstring).

    Args:
        h: the no-reset membrane ``[T, N, *]``.
        lam: the reset's decay, a float or a tensor broadcastable to ``h[0]``.
        thr: the threshold, likewise.
        valid: bool mask broadcastable to ``h`` (False: padded step, no spike), or None.
        surrogate: the elementwise spike function with its surrogate gradient.
        detach_reset: the reset passes no gradient back to the spikes that caused it.

    Shape:
        ``h`` ``[T, N, *]`` -> ``(spikes, membranes)`` ``[T, N, *]``.

    Example:
        >>> from bpsn_ext.surrogate import ATan
        >>> s, v = soft_reset(torch.full((4, 1, 1), 1.2), 0.5, 1.0, None, ATan())
        >>> s.flatten().tolist()
        [1.0, 0.0, 0.0, 1.0]
    """
    return _SoftReset.apply(h, lam, thr, valid, surrogate, detach_reset)
