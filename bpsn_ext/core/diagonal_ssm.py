"""Diagonal state-space primitives in plain torch (no SpikingJelly or snnTorch import).

Time-first layout throughout: sequences are ``[T, N, H]`` (steps, batch, channels).

* ZOH discretisation of a complex diagonal system: ``A_bar = exp(dt A)``,
  ``B_bar = (exp(dt A) - 1) / A``.
* `vandermonde` / `vandermonde_transpose`: ``sum_p c_p z_p^l`` over ``l`` and its
  adjoint ``sum_l z_p^(L-1-l) v_l``.  ``z^l`` is split as ``z^(hi*c) * z^lo`` with
  ``c = ceil(sqrt(L))``, so only two ``[H, P, ~sqrt(L)]`` tables and one batched matmul are
  needed instead of an ``[H, P, L]`` tensor (which is 0.5 GB at H=128, P=32, L=16384).
* `causal_conv` / `bidirectional_conv`: FFT convolutions, zero-padded to ``2T``
  so that nothing wraps around.
* `diagonal_scan`: the linear recurrence ``x_t = a_t x_{t-1} + b_t`` as a parallel
  associative scan (pairwise reduction, recursion over ``log2(T)`` levels, memory linear in
  ``T``); `sequential_scan` is the step-by-step reference.
"""

from __future__ import annotations

import math

import torch

from bpsn_ext.util.arguments import check_float, check_int

__all__ = [
    "complex_dtype",
    "check_sequence",
    "check_step_input",
    "check_step_mask",
    "check_state",
    "check_dt_range",
    "check_d_state",
    "log_dt_init",
    "zoh",
    "vandermonde",
    "vandermonde_transpose",
    "causal_conv",
    "bidirectional_conv",
    "diagonal_scan",
    "sequential_scan",
]


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """complex64 for float32 (and lower), complex128 for float64."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


# -- input checks ------------------------------------------------------------------------------


def check_sequence(owner: str, x: object, d_model: int, dtype: torch.dtype) -> torch.Tensor:
    """``x`` must be a time-first ``[T, N, d_model]`` tensor of the module's dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner} expects a torch.Tensor [T, N, D], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner} expects a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"{owner} expects a time-first input [T, N, D] with D = d_model = {d_model}, got "
            f"shape {list(x.shape)}"
            + (" (for one time step [N, D] use step())" if x.dim() == 2 else "")
        )
    if x.shape[0] == 0:
        raise ValueError(f"{owner} needs at least one time step, got T = 0")
    if x.dtype != dtype:
        raise TypeError(
            f"{owner} has {dtype} parameters but the input is {x.dtype}; convert one of them "
            f"(e.g. module.to({x.dtype}))"
        )
    return x


def check_step_input(owner: str, x: object, d_model: int, dtype: torch.dtype) -> torch.Tensor:
    """``x`` must be one time step ``[N, d_model]`` of the module's dtype."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{owner}.step expects a floating-point tensor [N, D], got {got}")
    if x.dim() != 2 or x.shape[-1] != d_model:
        raise ValueError(
            f"{owner}.step expects one time step [N, D] with D = d_model = {d_model}, got "
            f"shape {list(x.shape)}"
            + (" (for a whole sequence [T, N, D] use forward())" if x.dim() == 3 else "")
        )
    if x.dtype != dtype:
        raise TypeError(
            f"{owner} has {dtype} parameters but the input is {x.dtype}; convert one of them"
        )
    return x


def check_step_mask(mask: object, N: int, device: torch.device) -> torch.Tensor | None:
    """A per-step padding mask: bool ``[N]`` (True = real step) or None."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (N,):
        got = (
            f"{mask.dtype} of shape {list(mask.shape)}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        raise ValueError(f"a step mask must be a bool tensor of shape [N] = [{N}], got {got}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but the input is on {device}")
    return mask


def check_state(owner: str, state: object, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """A carried state must match the current batch; otherwise the user forgot a reset."""
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"{owner}: state must be None or a tensor, got {type(state).__name__}")
    if tuple(state.shape) != shape or state.dtype != dtype:
        raise ValueError(
            f"{owner}: the carried state has shape {list(state.shape)} ({state.dtype}) but this "
            f"input needs {list(shape)} ({dtype}); call reset_state() (functional.reset_net in "
            "SpikingJelly) before a new batch"
        )


def check_dt_range(dt_min: float, dt_max: float) -> tuple[float, float]:
    """``0 < dt_min <= dt_max``, both Python floats."""
    check_float("dt_min", dt_min, positive=True)
    check_float("dt_max", dt_max, positive=True)
    if dt_min > dt_max:
        raise ValueError(
            f"dt_min must not exceed dt_max (log_dt ~ U[log dt_min, log dt_max]), got "
            f"dt_min={dt_min}, dt_max={dt_max}; did you swap them?"
        )
    return dt_min, dt_max


def check_d_state(d_state: object, *, even: bool) -> int:
    check_int("d_state", d_state)
    if even and d_state % 2:
        raise ValueError(
            f"d_state must be even (N/2 complex-conjugate pairs of modes), got d_state={d_state}"
        )
    return d_state


def log_dt_init(n: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """``log_dt ~ U[log dt_min, log dt_max]``, shape ``[n]`` (global torch RNG)."""
    lo, hi = math.log(dt_min), math.log(dt_max)
    return torch.rand(n) * (hi - lo) + lo


# -- discretisation and Vandermonde products ---------------------------------------------------


def zoh(A: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-order hold of ``x' = A x + B u`` (diagonal, complex ``A``; ``dt`` broadcasts).

    Returns ``(dtA, A_bar, B_bar_factor)``: ``dtA = dt A``, ``A_bar = exp(dtA)`` and
    ``(exp(dtA) - 1) / A``, which multiplies B (S4D: B = 1, so it *is* B_bar).
    """
    dtA = A * dt
    A_bar = torch.exp(dtA)
    return dtA, A_bar, (A_bar - 1.0) / A


def _split(L: int) -> tuple[int, int]:
    """``c = ceil(sqrt(L))`` and ``n_hi = ceil(L / c)``: ``l = hi * c + lo``."""
    c = max(1, math.isqrt(max(L - 1, 0)) + 1)
    return c, -(-L // c)


def _power_tables(
    log_z: torch.Tensor, c: int, n_hi: int, offset: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``z^lo`` ``[H, P, c]`` and ``z^(hi*c + offset)`` ``[H, P, n_hi]``."""
    real = log_z.real.dtype
    lo = torch.arange(c, device=log_z.device, dtype=real)
    hi = torch.arange(n_hi, device=log_z.device, dtype=real) * c + offset
    return _exp_times(log_z, lo), _exp_times(log_z, hi)


def _exp_times(log_z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``exp(log_z[..., None] * m)`` for real ``m`` as ``polar(exp(m Re), m Im)``: real exp, cos
    and sin are vectorised on CPU, the complex exp is not (about six times slower)."""
    return torch.polar(torch.exp(log_z.real[..., None] * m), log_z.imag[..., None] * m)


def vandermonde(coef: torch.Tensor, log_z: torch.Tensor, L: int, offset: int = 0) -> torch.Tensor:
    """``V[..., h, l] = sum_p coef[..., h, p] * z[h, p]^(l + offset)`` for ``l = 0 .. L-1``.

    ``z = exp(log_z)``; ``coef`` ``[..., H, P]`` and ``log_z`` ``[H, P]`` are complex.
    Returns a complex ``[..., H, L]``.
    """
    c, n_hi = _split(L)
    z_lo, z_hi = _power_tables(log_z, c, n_hi, offset)
    out = torch.matmul((coef[..., None] * z_hi).transpose(-1, -2), z_lo)  # [..., H, n_hi, c]
    return out.flatten(-2)[..., :L]


def vandermonde_transpose(v: torch.Tensor, log_z: torch.Tensor) -> torch.Tensor:
    """``S[..., h, p] = sum_l z[h, p]^(L-1-l) * v[..., h, l]``: the adjoint of `vandermonde`.

    ``v`` ``[..., H, L]`` (real or complex), ``log_z`` ``[H, P]``.  Returns complex
    ``[..., H, P]``.  With ``v`` = an input sequence this is the final state of the recurrence
    ``x_l = z x_{l-1} + v_l`` started from zero.
    """
    L = v.shape[-1]
    c, n_hi = _split(L)
    z_lo, z_hi = _power_tables(log_z, c, n_hi, 0)
    w = v.flip(-1).to(log_z.dtype)  # w_j = v_{L-1-j}: S = sum_j z^j w_j
    w = torch.nn.functional.pad(w, (0, n_hi * c - L)).unflatten(-1, (n_hi, c))
    partial = torch.matmul(w, z_lo.transpose(-1, -2))  # [..., H, n_hi, P]
    return (partial * z_hi.transpose(-1, -2)).sum(-2)


# -- FFT convolutions --------------------------------------------------------------------------


class _FFTConv(torch.autograd.Function):
    """``y = irfft(rfft(u, n) * rfft(k, n), n)[..., :T] (+ D u)`` with a hand-written backward.

    ``u`` ``[N, H, T]``, ``k`` ``[H, n]``, optional skip ``D`` ``[H]`` (added in the same pass
    as the truncation copy).  The adjoints are circular correlations, again one real FFT pair
    each: ``grad_u = irfft(G * conj(K))[..., :T] + D g``, ``grad_k = irfft(sum_batch G *
    conj(U))`` with ``G = rfft(grad_y, n)``, ``grad_D = sum g u = grad_k[:, 0]`` (the lag-0
    tap).  (Autograd's own backward of
    ``rfft`` runs a complex FFT plus padding and is about twice as slow on CPU.)
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
        n, T = k.shape[-1], u.shape[-1]
        u_f = torch.fft.rfft(u, n=n)
        k_f = torch.fft.rfft(k, n=n)
        y = torch.fft.irfft(u_f * k_f, n=n)[..., :T]
        # keep conj(U) (in place): a product with a conjugate view would copy it in backward
        ctx.save_for_backward(u, u_f.conj_physical_(), k_f, D)
        ctx.T = T
        return y if D is None else torch.addcmul(y, u, D[:, None])

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        u, u_f_conj, k_f, D = ctx.saved_tensors
        n = 2 * (k_f.shape[-1] - 1)
        g_f = torch.fft.rfft(grad_y, n=n)
        grad_u = grad_k = grad_D = None
        if ctx.needs_input_grad[1] or D is not None and ctx.needs_input_grad[2]:
            grad_k = torch.fft.irfft((g_f * u_f_conj).sum(0), n=n)  # sum_n G conj(U)
            # D u is the lag-0 tap of the same correlation: grad_D = sum g u = grad_k[:, 0]
            grad_D = grad_k[:, 0] if D is not None and ctx.needs_input_grad[2] else None
            grad_k = grad_k if ctx.needs_input_grad[1] else None
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft(g_f.mul_(k_f.conj()), n=n)[..., : ctx.T]
            if D is not None:
                grad_u = torch.addcmul(grad_u, grad_y, D[:, None])
        return grad_u, grad_k, grad_D


def _fft_conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """Circular convolution of ``u`` ``[T, N, H]`` (zero-padded to ``2T``) with ``k`` ``[H, <=2T]``
    (zero-padded to ``2T``), truncated to ``[T, N, H]``, plus ``D u`` when ``D`` ``[H]`` is given.

    The result has the memory layout ``[N, H, T]`` (see `bpsn_ext.core.channel_major`): no
    copy is made when ``u`` is stored that way too.
    """
    T = u.shape[0]
    k = torch.nn.functional.pad(k, (0, 2 * T - k.shape[-1]))
    if u.shape[1] == 0:  # an empty batch: some FFT backends (MKL) refuse zero-size transforms
        out = u * k.sum() * 0  # [T, 0, H], still connected to the graph
        return out if D is None else out + u * D
    return _FFTConv.apply(u.permute(1, 2, 0), k, D).permute(2, 0, 1)


def causal_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """``y[t] = sum_{s <= t} K[:, t - s] * u[s] (+ D u[t])``: ``u`` ``[T, N, H]``, ``K``
    ``[H, T]``, optional skip ``D`` ``[H]``."""
    return _fft_conv(u, K, D)


def bidirectional_conv(
    u: torch.Tensor,
    K_f: torch.Tensor,
    K_b: torch.Tensor,
    shift: int = 0,
    D: torch.Tensor | None = None,
) -> torch.Tensor:
    """A causal plus an anti-causal convolution of ``u`` ``[T, N, H]``, one FFT pair.

    ``shift=0``: ``y = K_f * u + flip(K_b * flip(u))``, both kernels include lag 0:
    ``y[t] = sum_{s <= t} K_f[t-s] u[s] + sum_{s >= t} K_b[s-t] u[s]``.
    ``shift=1`` (state-spaces/s4's ``FFTConv``): the backward kernel starts one step later,
    ``y[t] = sum_{s <= t} K_f[t-s] u[s] + sum_{s > t} K_b[s-t-1] u[s]``.
    The anti-causal kernel sits at the negative lags of one length-``2T`` circular kernel.
    ``D`` ``[H]`` adds the skip term ``D u``.
    """
    if shift not in (0, 1):
        raise ValueError(f"shift must be 0 or 1, got {shift!r}")
    if shift == 1:  # lag -m (m = 1..T) at index 2T - m holds K_b[m - 1]
        return _fft_conv(u, torch.cat([K_f, K_b.flip(-1)], dim=-1), D)
    H = K_f.shape[0]
    k = torch.cat(
        [
            K_f[:, :1] + K_b[:, :1],
            K_f[:, 1:],
            K_f.new_zeros(H, 1),
            K_b[:, 1:].flip(-1),
        ],
        dim=-1,
    )
    return _fft_conv(u, k, D)


# -- linear recurrences ------------------------------------------------------------------------


def diagonal_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states of ``x_t = a_t * x_{t-1} + b_t`` (``x_{-1} = 0``) along dim 0, in parallel.

    ``b`` is ``[T, ...]``; ``a`` is ``[T, ...]`` or ``[1, ...]`` (time-invariant), broadcasting
    against ``b``.  Pairwise reduction: combine steps ``(2i, 2i+1)`` into one step
    ``(a_{2i+1} a_{2i}, a_{2i+1} b_{2i} + b_{2i+1})``, solve the half-length problem for the odd
    states, then fill in the even states.  The recursion is ``ceil(log2 T)`` levels deep (no
    loop over T); each level works on half as many steps, so time and memory (also the tensors
    autograd saves) are linear in T.
    """
    T = b.shape[0]
    if T == 1:
        return b
    invariant = a.shape[0] == 1
    if T % 2:  # one padding step at the end; its state is dropped
        b = torch.cat([b, torch.zeros_like(b[:1])])
        if not invariant:
            a = torch.cat([a, torch.ones_like(a[:1])])
    a_even, a_odd = (a, a) if invariant else (a[0::2], a[1::2])
    b_even, b_odd = b[0::2], b[1::2]
    x_odd = diagonal_scan(a_odd * a_even, a_odd * b_even + b_odd)  # x_1, x_3, x_5, ...
    x_prev = torch.cat([torch.zeros_like(x_odd[:1]), x_odd[:-1]])  # x_{2i-1}
    x_even = a_even * x_prev + b_even
    return torch.stack([x_even, x_odd], dim=1).flatten(0, 1)[:T]


def sequential_scan(
    a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference for `diagonal_scan`: a Python loop over T (optionally from ``x0``)."""
    x = torch.zeros_like(b[0]) if x0 is None else x0
    # unbind, not b[t]: the backward of T separate selects would build T full-size zero tensors
    a_steps = a.unbind(0) if a.shape[0] > 1 else (a[0],) * b.shape[0]
    out = []
    for a_t, b_t in zip(a_steps, b.unbind(0)):
        x = a_t * x + b_t
        out.append(x)
    return torch.stack(out)
