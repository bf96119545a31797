"""Triton provider of the fused S4D scan (the recurrent form of S4D, the SSM inside Binary S4D
and GSU), registered as the torch operators ``bpsn_ext::ssm_scan_triton`` and its backward.
S5's scan is `bpsn_ext.kernels.triton_diagonal_scan`, which shares the helpers below.

The numbers are those of ``ssm_kernels.cu`` (the CuPy provider): per channel ``h`` and sample
``n``, ``P`` complex modes already discretised in torch,

    x_p,t = A_bar_p x_p,t-1 + B_bar_p u_t m_t,   y_t = m_t (2 Re(sum_p C_p x_p,t) + D u_t m_t)

with ``m_t`` the padding mask (1 for a real step, 0 for padding: the state still decays through
padded steps, their output is zero).  ``reverse=True`` runs the same recurrence from the last
step to the first (the anti-causal half of a bidirectional layer): it equals flipping ``u`` and
the mask in time, scanning, and flipping ``y`` back; the returned state is then the one after
step 0.

The forward kernel keeps all ``P`` modes of a block of columns in registers and reads ``u`` once.
The backward kernel goes mode by mode (as the CUDA kernel): it recomputes one mode's states into
a ``[T, N*H, 2]`` scratch and runs the reverse-time adjoint
``lam_t = conj(A_bar) lam_t+1 + 2 g_t m_t conj(C)`` over it; the per-sample partial sums of the
parameter gradients are summed over the batch in torch.

Registered with `torch.library.custom_op` (plus ``register_fake`` and ``register_autograd``), so
it runs eagerly, under ``torch.compile(fullgraph=True)`` and passes `torch.library.opcheck`.
It runs on CUDA tensors, and on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``),
which is how the tests check it without a GPU.  This module imports ``triton``: import it only
when the Triton scan is asked for.
"""

import os

import torch
import triton
import triton.language as tl

__all__ = ["s4d_scan_triton"]

_BLOCK_J = 32  # columns (n, h) per program: one warp in the backward, two in the forward


@triton.jit
def load_pair(ptr, offset, mask):
    """The (re, im) halves of an interleaved complex array at ``offset``."""
    re = tl.load(ptr + offset, mask=mask, other=0.0)
    im = tl.load(ptr + offset + 1, mask=mask, other=0.0)
    return re, im


@triton.jit
def step_index(i, T, REVERSE: tl.constexpr):
    """The time step of scan step ``i`` (from the end when ``REVERSE``)."""
    t = i
    if REVERSE:
        t = T - 1 - i
    return t


@triton.jit
def _scan_forward_kernel(
    u_ptr,
    mask_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    x0_ptr,
    y_ptr,
    xT_ptr,
    T,
    N,
    H,
    P,
    HAS_MASK: tl.constexpr,
    HAS_X0: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    M = N * H
    j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < M
    n = j // H
    h = j % H
    p = tl.arange(0, BLOCK_P)
    tile = jm[:, None] & (p < P)[None, :]
    par = (h[:, None] * P + p[None, :]) * 2  # [H, P, 2] parameters
    ar, ai = load_pair(a_ptr, par, tile)
    br, bi = load_pair(b_ptr, par, tile)
    cr, ci = load_pair(c_ptr, par, tile)
    d = tl.load(d_ptr + h, mask=jm, other=0.0)
    st = (j[:, None] * P + p[None, :]) * 2  # [M, P, 2] states
    xr = tl.zeros([BLOCK_J, BLOCK_P], dtype=tl.float32)
    xi = tl.zeros([BLOCK_J, BLOCK_P], dtype=tl.float32)
    if HAS_X0:
        xr = tl.load(x0_ptr + st, mask=tile, other=0.0)
        xi = tl.load(x0_ptr + st + 1, mask=tile, other=0.0)
    for i in range(T):
        t = step_index(i, T, REVERSE)
        row = t * M
        uv = tl.load(u_ptr + row + j, mask=jm, other=0.0)
        m = tl.full([BLOCK_J], 1.0, tl.float32)
        if HAS_MASK:
            m = tl.load(mask_ptr + t * N + n, mask=jm, other=0).to(tl.float32)
        uv = uv * m
        xr_new = (ar * xr - ai * xi) + br * uv[:, None]
        xi = (ar * xi + ai * xr) + bi * uv[:, None]
        xr = xr_new
        y = 2.0 * tl.sum(cr * xr - ci * xi, axis=1) + d * uv
        tl.store(y_ptr + row + j, y * m, mask=jm)
    tl.store(xT_ptr + st, xr, mask=tile)
    tl.store(xT_ptr + st + 1, xi, mask=tile)


@triton.jit
def _d_term_backward(
    gy_ptr, u_ptr, mask_ptr, d_ptr, gu_ptr, gD_ptr, T, N, H, j, jm, BLOCK_J: tl.constexpr
):
    """grad_u_t = D g_t m_t (the modes add to it later); gD = sum_t g_t m_t u_t m_t."""
    M = N * H
    n = j // H
    d = tl.load(d_ptr + j % H, mask=jm, other=0.0)
    sD = tl.zeros([BLOCK_J], dtype=tl.float32)
    for t in range(T):
        row = t * M
        m = tl.load(mask_ptr + t * N + n, mask=jm, other=0).to(tl.float32)
        g = tl.load(gy_ptr + row + j, mask=jm, other=0.0) * m
        sD += g * (tl.load(u_ptr + row + j, mask=jm, other=0.0) * m)
        tl.store(gu_ptr + row + j, d * g, mask=jm)
    tl.store(gD_ptr + j, sD, mask=jm)


@triton.jit
def _recompute_mode(
    u_ptr, mask_ptr, x0_ptr, scratch_ptr, ar, ai, br, bi, st, T, N, M, n, j, jm,
    HAS_X0: tl.constexpr, REVERSE: tl.constexpr, BLOCK_J: tl.constexpr,
):  # fmt: skip
    """One mode's forward again, in scan order i: scratch[i] = the state before step i."""
    xr = tl.zeros([BLOCK_J], dtype=tl.float32)
    xi = tl.zeros([BLOCK_J], dtype=tl.float32)
    if HAS_X0:
        xr = tl.load(x0_ptr + st, mask=jm, other=0.0)
        xi = tl.load(x0_ptr + st + 1, mask=jm, other=0.0)
    for i in range(T):
        t = step_index(i, T, REVERSE)
        sc = (i * M + j) * 2
        tl.store(scratch_ptr + sc, xr, mask=jm)
        tl.store(scratch_ptr + sc + 1, xi, mask=jm)
        m = tl.load(mask_ptr + t * N + n, mask=jm, other=0).to(tl.float32)
        uv = tl.load(u_ptr + t * M + j, mask=jm, other=0.0) * m
        xr_new = (ar * xr - ai * xi) + br * uv
        xi = (ar * xi + ai * xr) + bi * uv
        xr = xr_new


@triton.jit
def _adjoint_mode(
    gy_ptr, u_ptr, mask_ptr, scratch_ptr, gu_ptr, ar, ai, br, bi, cr, ci, lr, li, T, N, M, n, j,
    jm, REVERSE: tl.constexpr, BLOCK_J: tl.constexpr,
):  # fmt: skip
    """Against scan order: ``lam = carry + 2 g m conj(C)``, ``carry = conj(A_bar) lam``, from
    ``carry = (lr, li)`` (grad of the final state); adds each step's share to grad_u.
    Returns the sums for A_bar, B_bar, C and the last carry (grad of x0), as (re, im) pairs."""
    sAr = tl.zeros([BLOCK_J], dtype=tl.float32)
    sAi = tl.zeros([BLOCK_J], dtype=tl.float32)
    sBr = tl.zeros([BLOCK_J], dtype=tl.float32)
    sBi = tl.zeros([BLOCK_J], dtype=tl.float32)
    sCr = tl.zeros([BLOCK_J], dtype=tl.float32)
    sCi = tl.zeros([BLOCK_J], dtype=tl.float32)
    for k in range(T):
        i = T - 1 - k
        t = step_index(i, T, REVERSE)
        row = t * M
        sc = (i * M + j) * 2
        m = tl.load(mask_ptr + t * N + n, mask=jm, other=0).to(tl.float32)
        uv = tl.load(u_ptr + row + j, mask=jm, other=0.0) * m
        g2 = 2.0 * (tl.load(gy_ptr + row + j, mask=jm, other=0.0) * m)
        pr = tl.load(scratch_ptr + sc, mask=jm, other=0.0)
        pi = tl.load(scratch_ptr + sc + 1, mask=jm, other=0.0)
        sCr += g2 * ((ar * pr - ai * pi) + br * uv)  # dL/dC = sum_t 2 g_t conj(x_t)
        sCi -= g2 * ((ar * pi + ai * pr) + bi * uv)
        lr = lr + g2 * cr
        li = li - g2 * ci
        sAr += lr * pr + li * pi  # dL/dA_bar = sum_t lam_t conj(x_t-1)
        sAi += li * pr - lr * pi
        sBr += lr * uv  # dL/dB_bar = sum_t lam_t u_t m_t
        sBi += li * uv
        gu = tl.load(gu_ptr + row + j, mask=jm, other=0.0)
        tl.store(gu_ptr + row + j, gu + (br * lr + bi * li) * m, mask=jm)
        lr_new = ar * lr + ai * li
        li = ar * li - ai * lr
        lr = lr_new
    return sAr, sAi, sBr, sBi, sCr, sCi, lr, li


@triton.jit
def store_pair(ptr, st, re, im, jm):
    tl.store(ptr + st, re, mask=jm)
    tl.store(ptr + st + 1, im, mask=jm)


@triton.jit
def _scan_backward_kernel(
    gy_ptr, gxT_ptr, u_ptr, mask_ptr, a_ptr, b_ptr, c_ptr, d_ptr, x0_ptr, scratch_ptr, gu_ptr,
    gA_ptr, gB_ptr, gC_ptr, gD_ptr, gx0_ptr, T, N, H, P,
    HAS_X0: tl.constexpr, REVERSE: tl.constexpr, BLOCK_J: tl.constexpr,
):  # fmt: skip
    # the mask is always a [T, N] uint8 here (ones when the forward had none)
    M = N * H
    j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < M
    n = j // H
    h = j % H
    _d_term_backward(gy_ptr, u_ptr, mask_ptr, d_ptr, gu_ptr, gD_ptr, T, N, H, j, jm, BLOCK_J)
    for p in range(P):
        par = (h * P + p) * 2
        st = (j * P + p) * 2
        ar, ai = load_pair(a_ptr, par, jm)
        br, bi = load_pair(b_ptr, par, jm)
        cr, ci = load_pair(c_ptr, par, jm)
        _recompute_mode(u_ptr, mask_ptr, x0_ptr, scratch_ptr, ar, ai, br, bi, st, T, N, M, n, j,
                        jm, HAS_X0, REVERSE, BLOCK_J)  # fmt: skip
        tl.debug_barrier()
        lr = tl.load(gxT_ptr + st, mask=jm, other=0.0)
        li = tl.load(gxT_ptr + st + 1, mask=jm, other=0.0)
        sAr, sAi, sBr, sBi, sCr, sCi, lr, li = _adjoint_mode(
            gy_ptr, u_ptr, mask_ptr, scratch_ptr, gu_ptr, ar, ai, br, bi, cr, ci, lr, li, T, N,
            M, n, j, jm, REVERSE, BLOCK_J,
        )  # fmt: skip
        store_pair(gA_ptr, st, sAr, sAi, jm)
        store_pair(gB_ptr, st, sBr, sBi, jm)
        store_pair(gC_ptr, st, sCr, sCi, jm)
        store_pair(gx0_ptr, st, lr, li, jm)  # dL/dx0 = conj(A_bar) lam_0
        tl.debug_barrier()


# -- torch operators -------------------------------------------------------------------------


def _grid(M: int) -> tuple[int]:
    return (triton.cdiv(M, _BLOCK_J),)


def _check_args(u, mask_u8, A_bar, D, x0, has_mask: bool) -> None:
    """Raise naming the argument whose layout differs from `ScanArgs`'."""
    if not isinstance(u, torch.Tensor) or u.dim() != 3 or u.dtype != torch.float32:
        got = f"{u.dtype} {list(u.shape)}" if isinstance(u, torch.Tensor) else type(u).__name__
        raise ValueError(f"u must be a float32 tensor [T, N, H], got {got}")
    T, N, H = u.shape
    if A_bar.dim() != 3 or A_bar.shape[0] != H or A_bar.shape[2] != 2:
        raise ValueError(f"A_bar must be [H={H}, P, 2], got {list(A_bar.shape)}")
    if D.shape != (H,):
        raise ValueError(f"D must be [H={H}], got {list(D.shape)}")
    P = A_bar.shape[1]
    if x0 is not None and x0.shape != (N, H, P, 2):
        raise ValueError(f"x0 must be None or [N={N}, H={H}, P={P}, 2], got {list(x0.shape)}")
    if has_mask and (mask_u8.shape != (T, N) or mask_u8.dtype != torch.uint8):
        raise ValueError(f"mask_u8 must be uint8 [T={T}, N={N}], got {mask_u8.dtype} "
                         f"{list(mask_u8.shape)}")  # fmt: skip
    if max(T * N * H, N * H * P) * 2 >= 2**31:
        raise ValueError(
            f"the Triton SSM scan indexes with 32-bit offsets: T*N*H = {T * N * H} and "
            f"N*H*P = {N * H * P} must stay below 2**30; split the batch or the sequence"
        )


@torch.library.custom_op("bpsn_ext::ssm_scan_triton", mutates_args=())
def s4d_scan_triton(
    u: torch.Tensor,
    mask_u8: torch.Tensor,
    A_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    x0: torch.Tensor | None,
    has_mask: bool,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused diagonal scan through Triton: ``(y, state)``; a torch operator.

    Args:
        u: the raw input (the kernel applies the mask), float32.
        mask_u8: 1 for a real step, 0 for padding; a 1-element dummy when ``has_mask`` is False.
        A_bar, B_bar, C: the discretised modes, ``torch.view_as_real`` of complex ``[H, P]``.
        D: the skip term.
        x0: the state before the first scanned step, or None (zero).
        has_mask: whether ``mask_u8`` is read.
        reverse: scan from the last step to the first (anti-causal).

    Shape:
        u ``[T, N, H]``; mask_u8 ``[T, N]``; A_bar, B_bar, C ``[H, P, 2]``; D ``[H]``;
        x0 ``[N, H, P, 2]``.  Returns y ``[T, N, H]`` and the state after the last scanned step
        ``[N, H, P, 2]`` (``torch.view_as_complex`` gives ``[N, H, P]``).  Differentiable
        w.r.t. u, A_bar, B_bar, C, D and x0.

    Example:
        >>> y, xT = s4d_scan_triton(u, mask, A, B, C, D, None, False, False)  # doctest: +SKIP
    """
    _check_args(u, mask_u8, A_bar, D, x0, has_mask)
    if u.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"the Triton SSM scan runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1), "
            f"got {u.device}"
        )
    T, N, H = u.shape
    P = A_bar.shape[1]
    y = torch.empty_like(u, memory_format=torch.contiguous_format)
    xT = u.new_empty(N, H, P, 2)
    if N * H == 0:
        return y, xT
    if T == 0:  # no step: the state passes through
        return y, (xT.zero_() if x0 is None else xT.copy_(x0))
    u, mask_u8, A_bar, B_bar, C, D = (t.contiguous() for t in (u, mask_u8, A_bar, B_bar, C, D))
    _scan_forward_kernel[_grid(N * H)](
        u, mask_u8, A_bar, B_bar, C, D, u if x0 is None else x0.contiguous(), y, xT, T, N, H, P,
        HAS_MASK=has_mask, HAS_X0=x0 is not None, REVERSE=reverse,
        BLOCK_J=_BLOCK_J, BLOCK_P=triton.next_power_of_2(P), num_warps=2, enable_fp_fusion=False,
    )  # fmt: skip
    return y, xT


@s4d_scan_triton.register_fake
def _scan_fake(u, mask_u8, A_bar, B_bar, C, D, x0, has_mask, reverse):
    _check_args(u, mask_u8, A_bar, D, x0, has_mask)
    N, H = u.shape[1:]
    return torch.empty_like(u), u.new_empty(N, H, A_bar.shape[1], 2)


@torch.library.custom_op("bpsn_ext::ssm_scan_triton_backward", mutates_args=())
def _scan_backward_op(
    grads: list[torch.Tensor],
    saved: list[torch.Tensor],
    x0: torch.Tensor | None,
    has_mask: bool,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``grads = [grad_y, grad_xT]``, ``saved = [u, mask_u8, A_bar, B_bar, C, D]`` ->
    the gradients of u, A_bar, B_bar, C, D and x0."""
    grad_y, grad_xT = (g.contiguous() for g in grads)
    u, mask_u8, A_bar, B_bar, C, D = (t.contiguous() for t in saved)
    T, N, H = u.shape
    P = A_bar.shape[1]
    partial = [u.new_zeros(N, H, P, 2) for _ in range(4)]  # gA, gB, gC, gx0 per sample
    gD = u.new_zeros(N, H)
    grad_u = torch.zeros_like(u)
    if N * H > 0 and T > 0:
        mask = mask_u8 if has_mask else u.new_ones(T, N, dtype=torch.uint8)
        _scan_backward_kernel[_grid(N * H)](
            grad_y, grad_xT, u, mask, A_bar, B_bar, C, D, u if x0 is None else x0.contiguous(),
            u.new_empty(T, N * H, 2), grad_u, partial[0], partial[1], partial[2], gD, partial[3],
            T, N, H, P, HAS_X0=x0 is not None, REVERSE=reverse, BLOCK_J=_BLOCK_J, num_warps=1,
            enable_fp_fusion=False,
        )  # fmt: skip
    if T == 0:  # no step: the state passes through
        partial[3] = grad_xT.clone()
    gA, gB, gC = (g.sum(0) for g in partial[:3])
    return grad_u, gA, gB, gC, gD.sum(0), partial[3]


@_scan_backward_op.register_fake
def _scan_backward_fake(grads, saved, x0, has_mask, reverse):
    u, A_bar, D = saved[0], saved[2], saved[5]
    N, H = u.shape[1:]
    per_mode = [A_bar.new_empty(H, A_bar.shape[1], 2) for _ in range(3)]
    return torch.empty_like(u), *per_mode, D.new_empty(H), u.new_empty(N, H, A_bar.shape[1], 2)


def _setup_context(ctx, inputs, output) -> None:
    u, mask_u8, A_bar, B_bar, C, D, x0, has_mask, reverse = inputs
    ctx.save_for_backward(u, mask_u8, A_bar, B_bar, C, D, x0)
    ctx.has_mask, ctx.reverse, ctx.has_x0 = has_mask, reverse, x0 is not None


def _backward(ctx, grad_y, grad_xT):
    *saved, x0 = ctx.saved_tensors
    u, A_bar = saved[0], saved[2]
    if grad_y is None:
        grad_y = torch.zeros_like(u)
    if grad_xT is None:
        grad_xT = u.new_zeros(*u.shape[1:], A_bar.shape[1], 2)
    grad_u, gA, gB, gC, gD, gx0 = torch.ops.bpsn_ext.ssm_scan_triton_backward(
        [grad_y, grad_xT], saved, x0 if ctx.has_x0 else None, ctx.has_mask, ctx.reverse
    )
    return grad_u, None, gA, gB, gC, gD, (gx0 if ctx.has_x0 else None), None, None


s4d_scan_triton.register_autograd(_backward, setup_context=_setup_context)
