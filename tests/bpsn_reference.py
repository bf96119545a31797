"""Plain sequential BPSN (step-by-step loops), used only by the tests as the reference."""

from __future__ import annotations

import torch


def recurrence(x, lam, reverse=False):
    """h_t = lam * h_{t-1} + x_t (reverse: from the end), x [T, N, C], lam [C] or scalar."""
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    h = torch.zeros_like(x[0])
    out = [None] * x.shape[0]
    for t in steps:
        h = lam * h + x[t]
        out[t] = h
    return torch.stack(out)


def window(x, taps, reverse=False):
    T, k = x.shape[0], len(taps)
    out = []
    for t in range(T):
        acc = torch.zeros_like(x[0])
        for n in range(k):
            i = t + n if reverse else t - n
            if 0 <= i < T:
                acc = acc + taps[n] * x[i]
        out.append(acc)
    return torch.stack(out)


def refractory(raw, period):
    """Run-based refractoriness, one step at a time: inside a run of raw spikes, fire, then stay
    silent for `period` steps; a silent raw step makes the neuron ready again."""
    out = torch.zeros_like(raw)
    since = torch.full_like(raw[0], -1)  # -1: ready
    for t in range(raw.shape[0]):
        fire_now = (raw[t] > 0) & ((since < 0) | (since >= period))
        out[t] = torch.where(fire_now, raw[t], torch.zeros_like(raw[t]))
        since = torch.where(
            raw[t] > 0,
            torch.where(fire_now, torch.zeros_like(since), since + 1),
            torch.full_like(since, -1),
        )
    return out


def bpsn_reference(
    x,
    mask,
    *,
    lam_f,
    lam_b,
    gate,
    v_threshold,
    surrogate,
    fusion="gate",
    runaway="none",
    period=1,
    kernel="leak",
    taps_f=None,
    taps_b=None,
):
    """x [T, N, C] (float64 recommended), mask [T, N] bool or None."""
    m = torch.ones(x.shape[:2], dtype=x.dtype) if mask is None else mask.to(x.dtype)
    xm = x * m[..., None]
    if kernel == "leak":
        hf, hb, k0 = recurrence(xm, lam_f), recurrence(xm, lam_b, reverse=True), 1.0
    else:
        hf, hb, k0 = window(xm, taps_f), window(xm, taps_b, reverse=True), taps_f[0]
    if fusion == "gate":
        h = gate * hf + (1 - gate) * hb
    elif fusion == "avg":
        h = 0.5 * (hf + hb)
    else:
        h = hf + hb - k0 * xm
    if runaway == "soft_reset":  # a LIF with soft reset driven by the fused current
        spikes, membranes = [], []
        R = torch.zeros_like(h[0])
        s_prev = torch.zeros_like(h[0])
        for t in range(h.shape[0]):
            R = lam_f * (R + s_prev)
            ht = h[t] - v_threshold * R
            st = surrogate(ht - v_threshold) * m[t][..., None]
            spikes.append(st)
            membranes.append(ht)
            s_prev = st
        return torch.stack(spikes), torch.stack(membranes) * m[..., None]
    s = surrogate(h - v_threshold) * m[..., None]
    if runaway == "refractory":  # suppressed spikes carry no gradient; silent steps keep theirs
        raw = s.detach()
        s = s * ((refractory(raw, period) > 0) | (raw == 0)).to(s.dtype)
    return s, h * m[..., None]
