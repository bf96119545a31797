"""The Bidirectional Parallel Spiking Neuron (BPSN) as a pure function.

RECONSTRUCTION.  The SNN-BERT paper (Su et al., Neural Networks 2024) states four properties
(parallel spikes, no uninterrupted firing, any sequence length, fused forward and backward
temporal information) but its equations were not available.  This follows the documented
reconstruction (``docs``: "What is reconstructed"), with every open choice an argument:

    X~  = m * X                                   padding contributes nothing, either way
    Hf_t = sum_{i<=t} kf(t-i) X~_i                forward (causal) membrane
    Hb_t = sum_{i>=t} kb(i-t) X~_i                backward (anti-causal) membrane
    H_t  = fuse(Hf_t, Hb_t)                       e.g. gate: g*Hf + (1-g)*Hb
    S_t  = Theta(H_t - V_th) * m_t                + an anti-runaway rule (below)

Kernels: ``"leak"`` k(n) = lam^n (per channel), or ``"window"`` k(n) = w_n for n < k.
Fusions: ``"gate"``, ``"avg"`` (g = 1/2), ``"sum"`` (Hf + Hb - k(0) X~, the current step
counted once), ``"concat"`` (both spike streams, concatenated along the channel dimension),
``"split"`` (the first half of the channels sees only the past, the second half only the
future: ``concat`` at the same width, shape preserved; a gate fixed at 1 / 0 per channel).
Anti-runaway (what keeps a neuron from firing at every step under strong drive):

* ``"refractory"``: after a spike the next ``refractory_steps`` (r) steps stay silent while the
  drive stays supra-threshold: inside every run of consecutive raw spikes S~ only every
  (r+1)-th survives, counted from the run's start.  Computed in parallel (a cummax finds the
  run starts); it caps the rate at 1/(r+1).  For r = 1 it is exactly S_t = S~_t (1 - S_{t-1});
* ``"soft_reset"``: an exact soft reset of the fused membrane, H_t -= V_th R_t with
  R_t = lam_f (R_{t-1} + S_{t-1}) (each spike is subtracted and then leaks away like the
  forward kernel).  With g = 1 this is a LIF neuron with reset, spike for spike.  The
  reconstruction in the spec resets the forward branch only; under constant drive the
  un-reset backward branch then keeps the neuron firing at almost every step, so the reset
  acts on the fused membrane here.  R needs one cheap elementwise step per time step;
* ``"none"``: the leaky kernels alone (transients fade, constant drive fires every step).

Shapes: ``x`` ``[T, N, *]``, mask ``[T, N]`` bool or lengths ``[N]``; outputs ``[T, N, *]``
(``concat`` doubles the channel dimension).  No parameter depends on T.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bpsn_ext.core.checks import check_floating, check_rank
from bpsn_ext.core.leaky_integrate import leaky_integrate
from bpsn_ext.core.masks import as_mask, broadcast_mask, zero_padded
from bpsn_ext.core.soft_reset import soft_reset

__all__ = [
    "bpsn",
    "check_input",
    "window_integrate",
    "refractory_gate",
    "KERNELS",
    "FUSIONS",
    "RUNAWAY",
]

KERNELS = ("leak", "window")
FUSIONS = ("gate", "avg", "sum", "concat", "split")
RUNAWAY = ("refractory", "soft_reset", "none")


def window_integrate(x: torch.Tensor, taps: torch.Tensor, *, reverse: bool = False) -> torch.Tensor:
    """``h_t = sum_{n<k} taps[n] x_{t-n}`` for ``x`` ``[T, N, *]`` (``reverse``: ``x_{t+n}``)."""
    if reverse:
        return window_integrate(x.flip(0), taps).flip(0)
    T, k = x.shape[0], taps.shape[0]
    padded = torch.cat([x.new_zeros(k - 1, *x.shape[1:]), x])
    taps = taps.to(x.dtype)
    h = taps[0] * x
    for n in range(1, k):  # a loop over the k taps, not over time
        h = h + taps[n] * padded[k - 1 - n : k - 1 - n + T]
    return h


def refractory_gate(spikes: torch.Tensor, period: int = 1) -> torch.Tensor:
    """Bool ``[T, ...]``, False exactly where a raw spike is suppressed by the refractory rule.

    Inside every run of consecutive raw spikes, the steps ``0, period+1, 2(period+1), ...``
    from the run's start survive; the start is found in parallel as the last silent step (a
    cummax over time).  For ``period = 1`` this is ``S_t = S~_t (1 - S_{t-1})``.  Silent steps
    stay True, so the surrogate gradient still flows there: only suppressed spikes are gated.
    """
    T = spikes.shape[0]
    s = spikes.reshape(T, -1).T  # [M, T]: the scan runs along contiguous memory (much faster)
    idx = torch.arange(T, device=spikes.device, dtype=torch.int32)
    silent = s == 0
    last_silent = torch.cummax(torch.where(silent, idx, -1).contiguous(), dim=1).values
    run_pos = idx - last_silent - 1
    keep = silent | ((run_pos & 1) == 0 if period == 1 else run_pos % (period + 1) == 0)
    return keep.T.reshape(spikes.shape)


def _at_channel(p: torch.Tensor | float, ndim: int, channel_dim: int) -> torch.Tensor | float:
    """A scalar stays; a ``[C]`` tensor is shaped to broadcast at ``channel_dim`` of [T, N, *]."""
    if not isinstance(p, torch.Tensor) or p.dim() == 0:
        return p
    shape = [1] * ndim
    shape[channel_dim] = p.shape[0]
    return p.reshape(shape)


def _fire(
    h: torch.Tensor,
    thr: torch.Tensor | float,
    surrogate: Callable,
    runaway: str,
    m: torch.Tensor | None,
    reset: tuple | None,
    period: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and the (post-rule) membrane from the no-reset membrane ``h`` [T, N, *]."""
    if runaway == "soft_reset":

        def one_step(p):  # drop the time axis of a [1, 1, C]-shaped parameter
            return p[0] if isinstance(p, torch.Tensor) and p.dim() == h.dim() else p

        lam, detach_reset = reset
        return soft_reset(h, one_step(lam), one_step(thr), m, surrogate, detach_reset)
    s = surrogate(h - thr)
    if m is not None:
        s = zero_padded(s, m)
    if runaway == "refractory":
        s = s * refractory_gate(s.detach(), period).to(s.dtype)
    return s, h


def check_input(x_seq: torch.Tensor) -> None:
    """TypeError/ValueError unless ``x_seq`` is a floating ``[T, N, *]`` tensor with T >= 1
    (the one check of a BPSN input, shared by this function and every kernel)."""
    check_floating("x_seq", x_seq)
    check_rank("x_seq", x_seq, 2, "[T, N, *]")
    if x_seq.shape[0] == 0:
        raise ValueError("x_seq has T = 0 time steps; BPSN needs at least one")


def _check_options(
    x_seq: torch.Tensor, kernel: str, fusion: str, runaway: str, refractory_steps: int
) -> None:
    """ValueError/TypeError naming the first bad argument of `bpsn`."""
    check_input(x_seq)
    if kernel not in KERNELS or fusion not in FUSIONS or runaway not in RUNAWAY:
        raise ValueError(
            f"kernel/fusion/runaway must be in {KERNELS}/{FUSIONS}/{RUNAWAY}, "
            f"got {kernel!r}/{fusion!r}/{runaway!r}"
        )
    if (
        isinstance(refractory_steps, bool)
        or not isinstance(refractory_steps, int)
        or (refractory_steps < 1)
    ):
        raise ValueError(f"refractory_steps must be an int >= 1, got {refractory_steps!r}")
    if runaway == "soft_reset" and kernel != "leak":
        raise ValueError("runaway='soft_reset' needs kernel='leak' (a reset decays like the leak)")


def _integrate_split(x, decay_f, decay_b, cd: int, method: str) -> torch.Tensor:
    """`fusion="split"`: the first half of the channels integrates forward, the rest backward."""
    C = x.shape[cd]
    half = (C + 1) // 2

    def part(p, start, n):  # the per-channel decays of that half (a scalar stays)
        return p.narrow(0, start, n) if isinstance(p, torch.Tensor) and p.dim() else p

    hf = leaky_integrate(
        x.narrow(cd, 0, half), part(decay_f, 0, half), channel_dim=cd, method=method
    )
    hb = leaky_integrate(
        x.narrow(cd, half, C - half),
        part(decay_b, half, C - half),
        channel_dim=cd,
        reverse=True,
        method=method,
    )
    return torch.cat([hf, hb], dim=cd % x.dim())


def _integrate(x, kernel: str, decay_f, decay_b, taps_f, taps_b, cd: int, method: str):
    """`(h_forward, h_backward, k0)`: both no-reset membranes and the kernel's weight at lag 0."""
    if kernel == "leak":
        hf = leaky_integrate(x, decay_f, channel_dim=cd, method=method)
        hb = leaky_integrate(x, decay_b, channel_dim=cd, reverse=True, method=method)
        return hf, hb, 1.0
    return window_integrate(x, taps_f), window_integrate(x, taps_b, reverse=True), taps_f[0]


def _fuse(fusion: str, hf, hb, x, gate, k0, cd: int) -> torch.Tensor:
    """One membrane from the two directions (`gate`/`split`, `avg` or `sum`)."""
    if fusion in ("gate", "split"):
        g = _at_channel(gate, x.dim(), cd)
        return g * hf + (1 - g) * hb
    if fusion == "avg":
        return 0.5 * (hf + hb)
    return hf + hb - k0 * x  # sum: the lag-0 input is in both directions once too often


def _fire_concat(hf, hb, thr, surrogate, runaway, mb, decays, detach_reset, period, cd):
    """`fusion="concat"`: each direction fires on its own; channels concatenated."""
    ndim = hf.dim()
    reset_f, reset_b = (
        (_at_channel(d, ndim, cd), detach_reset) if runaway == "soft_reset" else None
        for d in decays
    )
    sf, mf = _fire(hf, thr, surrogate, runaway, mb, reset_f, period)
    mb_rev = None if mb is None else mb.flip(0)
    sb, mbr = _fire(hb.flip(0), thr, surrogate, runaway, mb_rev, reset_b, period)
    sb, mbr = sb.flip(0), mbr.flip(0)  # the backward stream resets backwards in time
    dim = cd % ndim
    return torch.cat([sf, sb], dim=dim), torch.cat([mf, mbr], dim=dim)


def _fire_directions(hf, hb, x, k0, thr, surrogate, fusion: str, gate, rule: tuple, mb, cd: int):
    """Spikes and membrane from both no-reset membranes: `concat` fires each direction,
    the other fusions fuse first.  `rule` is `(runaway, (decay_f, decay_b), detach_reset,
    refractory_steps)`."""
    runaway, decays, detach_reset, period = rule
    if fusion == "concat":
        return _fire_concat(hf, hb, thr, surrogate, runaway, mb, decays, detach_reset, period, cd)
    reset = None
    if runaway == "soft_reset":  # the reset decays like the forward kernel
        reset = (_at_channel(decays[0], x.dim(), cd), detach_reset)
    h = _fuse(fusion, hf, hb, x, gate, k0, cd)
    return _fire(h, thr, surrogate, runaway, mb, reset, period)


def bpsn(
    x_seq: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    v_threshold: torch.Tensor | float,
    surrogate: Callable,
    kernel: str = "leak",
    decay_f: torch.Tensor | None = None,
    decay_b: torch.Tensor | None = None,
    taps_f: torch.Tensor | None = None,
    taps_b: torch.Tensor | None = None,
    fusion: str = "gate",
    gate: torch.Tensor | None = None,
    runaway: str = "refractory",
    refractory_steps: int = 1,
    channel_dim: int = -1,
    detach_reset: bool = False,
    method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """BPSN spikes and fused membrane for `x_seq` `[T, N, *]`; see the module docstring.

    `decay_*` are decays in (0, 1) (scalar or `[C]`), `taps_*` window kernels `[k]`,
    `gate` the fusion weight of the forward branch in [0, 1] (scalar or `[C]`),
    `v_threshold` a float or tensor (scalar or `[C]`).  Returns `(spikes, membrane)`
    in `x_seq.dtype`, both zero at padded steps.
    """
    _check_options(x_seq, kernel, fusion, runaway, refractory_steps)
    # mask: padded steps become 0 (NaN padding too) before anything integrates them
    m = as_mask(mask, *x_seq.shape[:2], x_seq.device)
    x = x_seq.float() if x_seq.dtype in (torch.float16, torch.bfloat16) else x_seq
    mb = None if m is None else broadcast_mask(m, x.dim())
    if mb is not None:
        x = zero_padded(x, mb)
    cd = channel_dim
    thr = _at_channel(v_threshold, x.dim(), cd)
    if kernel == "leak" and fusion == "split" and runaway != "soft_reset":
        # integrate forward and backward, each on its half of the channels (fused by the cat)
        h = _integrate_split(x, decay_f, decay_b, cd, method)
        spikes, membrane = _fire(h, thr, surrogate, runaway, mb, None, refractory_steps)
    else:  # integrate forward and backward in time, then fuse and fire (or fire each)
        hf, hb, k0 = _integrate(x, kernel, decay_f, decay_b, taps_f, taps_b, cd, method)
        rule = (runaway, (decay_f, decay_b), detach_reset, refractory_steps)
        spikes, membrane = _fire_directions(
            hf, hb, x, k0, thr, surrogate, fusion, gate, rule, mb, cd
        )
    if mb is not None:
        membrane = zero_padded(membrane, mb)  # [T, N, 1, ...]: every feature dimension
    return spikes.to(x_seq.dtype), membrane.to(x_seq.dtype)
