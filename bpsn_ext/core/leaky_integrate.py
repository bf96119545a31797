"""Leaky integration along time, computed in parallel: ``h_t = lam * h_{t-1} + x_t``.

``h = leaky_integrate(x, lam)`` for ``x`` of shape ``[T, N, *]`` and a decay ``lam`` in (0, 1)
that broadcasts against one time step (a scalar or per channel).  Equivalently
``h_t = sum_{i <= t} lam^(t-i) x_i``: a causal convolution with the kernel ``lam^n``.
``reverse=True`` gives the anti-causal sum ``sum_{i >= t} lam^(i-t) x_i``.

Methods (all equal up to rounding; ``benchmarks/`` has the timings behind ``auto``):

* ``"chunked"`` (``auto``): a block scan.  Inside blocks of ``CHUNK`` steps a small
  ``[CHUNK, CHUNK]`` Toeplitz matrix per decay (one batched matmul); the states carried from
  block to block are the same problem on T / CHUNK steps with decay lam^CHUNK, solved
  recursively.  O(T * CHUNK) time, linear memory, no Python loop over T;
* ``"fft"``: FFT convolution with zero padding to 2T, O(T log T) time, linear memory;
* ``"matmul"``: one dense ``[T, T]`` Toeplitz matrix per decay (quadratic memory);
* ``"loop"``: the recurrence itself (a Python loop over T), the reference.

Non-finite input: every method gives the recurrence's answer, as the native kernel does.  A NaN
at step t makes ``h`` NaN from t on (in its channel and sample only), +Inf / -Inf make it +Inf /
-Inf from t on, both together NaN; the steps before t stay exact.  (The matmul, block and FFT
sums alone would spread a NaN to earlier steps through their zero entries, 0 * NaN = NaN.)
"""

from __future__ import annotations

import torch

__all__ = ["leaky_integrate", "decay_kernel", "CHUNK", "METHODS"]

CHUNK = 64
METHODS = ("auto", "chunked", "fft", "matmul", "loop")


def decay_kernel(lam: torch.Tensor, T: int) -> torch.Tensor:
    """``lam^n`` for n = 0..T-1, shape ``[T, *lam.shape]`` (computed as exp(n log lam))."""
    n = torch.arange(T, device=lam.device, dtype=lam.dtype).reshape(T, *([1] * lam.dim()))
    return torch.exp(n * torch.log(lam))


def _at_channel(v: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    """``[L, C]`` -> shape that broadcasts against an ``ndim``-dim tensor with C at channel_dim."""
    shape = [1] * ndim
    shape[0] = v.shape[0]
    if v.dim() == 2:
        shape[channel_dim] = v.shape[1]
    return v.reshape(shape)


def _matmul(x: torch.Tensor, lam: torch.Tensor, channel_dim: int) -> torch.Tensor:
    T = x.shape[0]
    t = torch.arange(T, device=x.device)
    lag = (t[:, None] - t[None, :]).to(x.dtype)  # [T, T]: t - i
    causal = lag >= 0
    if lam.dim() == 0:
        K = torch.where(causal, torch.exp(lag.clamp_min(0) * torch.log(lam)), 0.0)
        return (K @ x.reshape(T, -1)).reshape(x.shape)
    K = torch.where(causal, torch.exp(lag.clamp_min(0) * torch.log(lam)[:, None, None]), 0.0)
    xc = x.movedim(channel_dim, -1)  # [T, ..., C]
    h = torch.einsum("cti,imc->tmc", K, xc.reshape(T, -1, lam.shape[0]))
    return h.reshape(xc.shape).movedim(-1, channel_dim)


def _fft(x: torch.Tensor, lam: torch.Tensor, channel_dim: int) -> torch.Tensor:
    T = x.shape[0]
    n = 2 * T
    kernel = decay_kernel(lam, T)  # [T] or [T, C]
    Kf = torch.fft.rfft(kernel, n=n, dim=0)
    Xf = torch.fft.rfft(x, n=n, dim=0)
    return torch.fft.irfft(Xf * _at_channel(Kf, x.dim(), channel_dim), n=n, dim=0)[:T]


def _loop(x: torch.Tensor, lam: torch.Tensor, channel_dim: int) -> torch.Tensor:
    lam = _at_channel(lam.reshape(1, -1) if lam.dim() else lam.reshape(1), x.dim(), channel_dim)[0]
    h = torch.zeros_like(x[0])
    out = []
    for x_t in x.unbind(0):  # unbind, not x[t]: indexing would make the backward O(T^2)
        h = lam * h + x_t
        out.append(h)
    return torch.stack(out)


def _toeplitz(lam: torch.Tensor, L: int) -> torch.Tensor:
    """``[C, L, L]`` lower-triangular ``lam_c^(i-j)`` for decays ``lam`` ``[C]``."""
    t = torch.arange(L, device=lam.device)
    lag = (t[:, None] - t[None, :]).to(lam.dtype)
    # lam^CHUNK^level can underflow to 0: clamp before the log (0^0 must stay 1, not nan)
    loglam = torch.log(lam.clamp_min(torch.finfo(lam.dtype).tiny))
    return torch.where(lag >= 0, torch.exp(lag.clamp_min(0) * loglam[:, None, None]), 0.0)


def _block_scan(x: torch.Tensor, lam: torch.Tensor, L: int) -> torch.Tensor:
    """``x`` ``[T, R, C]``, ``lam`` ``[C]`` -> ``h`` ``[T, R, C]``."""
    T, R, C = x.shape
    if T <= L:  # one batched matmul on contiguous [C, T, R] (einsum would copy per channel)
        return torch.bmm(_toeplitz(lam, T), x.permute(2, 0, 1).contiguous()).permute(1, 2, 0)
    K = -(-T // L)
    if K * L != T:
        x = torch.cat([x, x.new_zeros(K * L - T, R, C)])
    xp = x.reshape(K, L, R, C).permute(3, 1, 0, 2).reshape(C, L, K * R)
    local = torch.bmm(_toeplitz(lam, L), xp).reshape(C, L, K, R).permute(2, 1, 3, 0)
    carry = _block_scan(local[:, -1], lam**L, L)  # the state at the end of every block
    prev = torch.cat([carry.new_zeros(1, R, C), carry[:-1]])  # the state entering each block
    powers = lam ** torch.arange(1, L + 1, device=x.device, dtype=x.dtype)[:, None]  # [L, C]
    h = local + powers[None, :, None, :] * prev[:, None]
    return h.reshape(K * L, R, C)[:T]


def _chunked(x: torch.Tensor, lam: torch.Tensor, channel_dim: int) -> torch.Tensor:
    T = x.shape[0]
    if lam.dim() == 0:
        return _block_scan(x.reshape(T, -1, 1), lam.reshape(1), CHUNK).reshape(x.shape)
    xc = x.movedim(channel_dim, -1)
    h = _block_scan(xc.reshape(T, -1, lam.shape[0]), lam, CHUNK)
    return h.reshape(xc.shape).movedim(-1, channel_dim)


_IMPL = {"chunked": _chunked, "matmul": _matmul, "fft": _fft, "loop": _loop}


def leaky_integrate(
    x: torch.Tensor,
    lam: torch.Tensor,
    *,
    channel_dim: int = -1,
    reverse: bool = False,
    method: str = "auto",
) -> torch.Tensor:
    """Parallel leaky integration of ``x`` ``[T, N, *]``; returns ``[T, N, *]`` in ``x.dtype``.

    ``lam`` is a scalar tensor (one decay) or ``[C]`` (one decay per channel, the channels
    being dimension ``channel_dim`` of ``x``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if lam.dim() > 1 or (lam.dim() == 1 and lam.shape[0] != x.shape[channel_dim]):
        raise ValueError(
            f"decay must be a scalar or [C] with C = x.shape[{channel_dim}] = "
            f"{x.shape[channel_dim]}, got shape {list(lam.shape)}"
        )
    if channel_dim % x.dim() == 0:
        raise ValueError("channel_dim cannot be the time dimension 0")
    if reverse:
        x = x.flip(0)
    if method == "auto":
        method = "chunked"
    if method == "loop":
        h = _loop(x, lam.to(x.dtype), channel_dim)
    else:
        h = _with_non_finite(_IMPL[method], x, lam.to(x.dtype), channel_dim)
    return h.flip(0) if reverse else h


def _with_non_finite(impl, x: torch.Tensor, lam: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``impl`` on the finite part of ``x``; NaN/Inf then placed where the recurrence has them
    (from their step on: lam * Inf stays Inf, lam > 0)."""
    # one cheap reduction: a finite sum means finite entries (an overflowing sum only costs
    # the exact path below, which gives the same values for finite input)
    if not torch.compiler.is_compiling() and bool(torch.isfinite(x.sum())):
        return impl(x, lam, channel_dim)
    h = impl(torch.where(torch.isfinite(x), x, 0.0), lam, channel_dim)
    pos = torch.cumsum(x == float("inf"), 0) > 0
    neg = torch.cumsum(x == float("-inf"), 0) > 0
    nan = (torch.cumsum(torch.isnan(x), 0) > 0) | (pos & neg)
    h = torch.where(pos, float("inf"), torch.where(neg, float("-inf"), h))
    return torch.where(nan, float("nan"), h)
