"""Triton provider of the plain complex diagonal scan of S5, registered as the torch operators
``bpsn_ext::diagonal_scan_triton`` and its backward.

Every state element (sample ``n``, mode ``p``) runs ``x_t = A_bar_p x_t-1 + b_t`` from ``x0``
(zero when None) and all states are returned: the recurrence that
`bpsn_ext.core.diagonal_ssm.diagonal_scan` computes for `bpsn_ext.layers.SpikingS5` with a
time-invariant ``A_bar``.  ``reverse=True`` runs from the last step to the first (the backward
half of a bidirectional S5).  The input projection ``b = B_bar u`` and the readout stay in
torch.  The backward pass needs no scratch: the adjoint ``lam_t = g_t + conj(A_bar) lam_t+1``
reads the saved states.

It runs on CUDA tensors, and on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``).
This module imports ``triton``: import it only when the Triton scan is asked for.
"""

import os

import torch
import triton
import triton.language as tl

from bpsn_ext.kernels.triton_ssm_scan import load_pair, step_index, store_pair

__all__ = ["diagonal_scan_triton"]

_BLOCK = 64  # state elements (n, p) per program


@triton.jit
def _lanes(a_ptr, N, P, BLOCK: tl.constexpr):
    """This program's state elements ``j`` (of ``M = N * P``), their mask and ``A_bar``."""
    M = N * P
    j = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    jm = j < M
    ar, ai = load_pair(a_ptr, (j % P) * 2, jm)
    return M, j, jm, ar, ai


@triton.jit
def _diagonal_forward_kernel(
    b_ptr, a_ptr, x0_ptr, xs_ptr, T, N, P,
    HAS_X0: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    M, j, jm, ar, ai = _lanes(a_ptr, N, P, BLOCK)
    xr = tl.zeros([BLOCK], dtype=tl.float32)
    xi = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_X0:
        xr, xi = load_pair(x0_ptr, j * 2, jm)
    for i in range(T):
        off = (step_index(i, T, REVERSE) * M + j) * 2
        br, bi = load_pair(b_ptr, off, jm)
        xr_new = (ar * xr - ai * xi) + br
        xi = (ar * xi + ai * xr) + bi
        xr = xr_new
        store_pair(xs_ptr, off, xr, xi, jm)


@triton.jit
def _adjoint_step(g_ptr, gb_ptr, off, pr, pi, ar, ai, cr, ci, sAr, sAi, jm):
    """``lam = g + carry`` is the gradient of ``b`` at ``off``; adds ``lam conj(x_prev)`` to
    the sum for A_bar; returns the next carry ``conj(A_bar) lam`` and the sums."""
    gr, gi = load_pair(g_ptr, off, jm)
    lr = gr + cr
    li = gi + ci
    store_pair(gb_ptr, off, lr, li, jm)
    sAr += lr * pr + li * pi
    sAi += li * pr - lr * pi
    return ar * lr + ai * li, ar * li - ai * lr, sAr, sAi


@triton.jit
def _diagonal_backward_kernel(
    g_ptr, xs_ptr, a_ptr, x0_ptr, gb_ptr, gA_ptr, gx0_ptr, T, N, P,
    HAS_X0: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    M, j, jm, ar, ai = _lanes(a_ptr, N, P, BLOCK)
    cr = tl.zeros([BLOCK], dtype=tl.float32)
    ci = tl.zeros([BLOCK], dtype=tl.float32)
    sAr = tl.zeros([BLOCK], dtype=tl.float32)
    sAi = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(T - 1):  # scan steps T-1 .. 1: the previous state is a saved one
        i = T - 1 - k
        off = (step_index(i, T, REVERSE) * M + j) * 2
        pr, pi = load_pair(xs_ptr, (step_index(i - 1, T, REVERSE) * M + j) * 2, jm)
        cr, ci, sAr, sAi = _adjoint_step(g_ptr, gb_ptr, off, pr, pi, ar, ai, cr, ci, sAr, sAi, jm)
    pr = tl.zeros([BLOCK], dtype=tl.float32)  # scan step 0: the previous state is x0
    pi = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_X0:
        pr, pi = load_pair(x0_ptr, j * 2, jm)
    off = (step_index(0, T, REVERSE) * M + j) * 2
    cr, ci, sAr, sAi = _adjoint_step(g_ptr, gb_ptr, off, pr, pi, ar, ai, cr, ci, sAr, sAi, jm)
    store_pair(gA_ptr, j * 2, sAr, sAi, jm)
    store_pair(gx0_ptr, j * 2, cr, ci, jm)  # dL/dx0 = conj(A_bar) lam_0


# -- torch operators -------------------------------------------------------------------------


def _check_args(b, A_bar, x0) -> None:
    """Raise naming the argument whose layout is not the documented one."""
    if (
        not isinstance(b, torch.Tensor)
        or b.dim() != 4
        or b.shape[-1] != 2
        or b.dtype != torch.float32
    ):
        got = f"{b.dtype} {list(b.shape)}" if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"b must be a float32 tensor [T, N, P, 2], got {got}")
    T, N, P, _ = b.shape
    if A_bar.shape != (P, 2):
        raise ValueError(f"A_bar must be [P={P}, 2], got {list(A_bar.shape)}")
    if x0 is not None and x0.shape != (N, P, 2):
        raise ValueError(f"x0 must be None or [N={N}, P={P}, 2], got {list(x0.shape)}")
    if T * N * P * 2 >= 2**31:
        raise ValueError(
            f"the Triton diagonal scan indexes with 32-bit offsets: T*N*P = {T * N * P} must "
            "stay below 2**30; split the batch or the sequence"
        )


@torch.library.custom_op("bpsn_ext::diagonal_scan_triton", mutates_args=())
def diagonal_scan_triton(
    b: torch.Tensor, A_bar: torch.Tensor, x0: torch.Tensor | None, reverse: bool
) -> torch.Tensor:
    """All states of ``x_t = A_bar x_t-1 + b_t`` through Triton; a torch operator.

    Args:
        b: the inputs, ``torch.view_as_real`` of complex, float32.
        A_bar: the (time-invariant) eigenvalues, ``torch.view_as_real`` of complex.
        x0: the state before the first scanned step, or None (zero).
        reverse: scan from the last step to the first.

    Shape:
        b ``[T, N, P, 2]``; A_bar ``[P, 2]``; x0 ``[N, P, 2]``.  Returns the states
        ``[T, N, P, 2]`` (state ``t`` is the one after step ``t``).  Differentiable w.r.t.
        b, A_bar and x0.

    Example:
        >>> xs = diagonal_scan_triton(b, A_bar, None, False)  # doctest: +SKIP
    """
    _check_args(b, A_bar, x0)
    if b.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"the Triton diagonal scan runs on CUDA tensors (or on CPU under "
            f"TRITON_INTERPRET=1), got {b.device}"
        )
    T, N, P, _ = b.shape
    xs = torch.empty_like(b, memory_format=torch.contiguous_format)
    if xs.numel() > 0:
        _diagonal_forward_kernel[(triton.cdiv(N * P, _BLOCK),)](
            b.contiguous(), A_bar.contiguous(), b if x0 is None else x0.contiguous(), xs,
            T, N, P, HAS_X0=x0 is not None, REVERSE=reverse, BLOCK=_BLOCK, num_warps=2,
            enable_fp_fusion=False,
        )  # fmt: skip
    return xs


@diagonal_scan_triton.register_fake
def _diagonal_fake(b, A_bar, x0, reverse):
    _check_args(b, A_bar, x0)
    return torch.empty_like(b)


@torch.library.custom_op("bpsn_ext::diagonal_scan_triton_backward", mutates_args=())
def _diagonal_backward_op(
    grad_xs: torch.Tensor,
    xs: torch.Tensor,
    A_bar: torch.Tensor,
    x0: torch.Tensor | None,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of b ``[T, N, P, 2]``, A_bar ``[P, 2]`` and x0 ``[N, P, 2]``."""
    T, N, P, _ = xs.shape
    grad_b = torch.zeros_like(xs)
    gA, gx0 = xs.new_zeros(N, P, 2), xs.new_zeros(N, P, 2)  # gA per sample
    if T > 0 and N * P > 0:
        _diagonal_backward_kernel[(triton.cdiv(N * P, _BLOCK),)](
            grad_xs.contiguous(), xs.contiguous(), A_bar.contiguous(),
            xs if x0 is None else x0.contiguous(), grad_b, gA, gx0, T, N, P,
            HAS_X0=x0 is not None, REVERSE=reverse, BLOCK=_BLOCK, num_warps=2,
            enable_fp_fusion=False,
        )  # fmt: skip
    return grad_b, gA.sum(0), gx0


@_diagonal_backward_op.register_fake
def _diagonal_backward_fake(grad_xs, xs, A_bar, x0, reverse):
    N, P = xs.shape[1:3]
    return torch.empty_like(xs), A_bar.new_empty(P, 2), xs.new_empty(N, P, 2)


def _setup_context(ctx, inputs, output) -> None:
    b, A_bar, x0, reverse = inputs
    ctx.save_for_backward(output, A_bar, x0)
    ctx.reverse, ctx.has_x0 = reverse, x0 is not None


def _backward(ctx, grad_xs):
    xs, A_bar, x0 = ctx.saved_tensors
    grad_xs = torch.zeros_like(xs) if grad_xs is None else grad_xs
    grad_b, gA, gx0 = torch.ops.bpsn_ext.diagonal_scan_triton_backward(
        grad_xs, xs, A_bar, x0 if ctx.has_x0 else None, ctx.reverse
    )
    return grad_b, gA, (gx0 if ctx.has_x0 else None), None


diagonal_scan_triton.register_autograd(_backward, setup_context=_setup_context)
