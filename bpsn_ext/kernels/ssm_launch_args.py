"""Arguments of the fused S4D scan kernels, prepared in plain torch (no CuPy import).

Shared by the CuPy provider and by the test that runs the same kernel code compiled as host
C++, so both see exactly the same layout and parameters.  The ZOH discretisation happens here,
in torch, so autograd chains the kernel's gradients w.r.t. ``A_bar``/``B_bar``/``C``/``D`` back
to ``log_dt``, ``log_A_real``, ``A_imag``, ``C`` and ``D``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bpsn_ext.core.diagonal_ssm import check_sequence, check_state, complex_dtype
from bpsn_ext.core.masks import as_mask

__all__ = ["ScanArgs", "prepare_scan", "make_scan_function", "s4d_scan"]


@dataclass
class ScanArgs:
    u: torch.Tensor  # [T, N, H] float32 contiguous (the raw input; the kernel applies the mask)
    mask_u8: torch.Tensor  # [T, N] uint8, or a 1-element dummy when has_mask is False
    A_bar: torch.Tensor  # [H, P, 2] float32 (view_as_real of complex), in the autograd graph
    B_bar: torch.Tensor  # [H, P, 2]
    C: torch.Tensor  # [H, P, 2]
    D: torch.Tensor  # [H]
    x0: torch.Tensor | None  # [N, H, P, 2] float32 or None (zero state)
    mask: torch.Tensor | None  # bool [T, N] or None
    shape: tuple[int, int, int, int]  # T, N, H, P


def prepare_scan(
    x: torch.Tensor,
    state: torch.Tensor | None,
    mask: torch.Tensor | None,
    ssm: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    what: str = "S4D",
) -> ScanArgs:
    """Validate ``x`` ``[T, N, H]`` and lay out the fused scan's inputs.

    Args:
        x: the input ``[T, N, H]`` (float32).
        state: the carried state, complex ``[N, H, P]``, or None (zero).
        mask: bool ``[T, N]`` or lengths ``[N]``, or None.
        ssm: ``(A_bar, B_bar, C, D)``: the discretised (ZOH) eigenvalues and input
            weights, complex ``[H, P]``, the output weights ``[H, P, 2]`` (real view of
            complex) and the skip ``[H]``; discretised by the layer, in torch, so autograd
            chains the kernel's gradients back to the layer's parameters.
        what: the layer's name, for error messages.
    """
    A_bar, B_bar, C, D = ssm
    H, P = A_bar.shape
    check_sequence(what, x, H, D.dtype)
    T, N, _ = x.shape
    m = as_mask(mask, T, N, x.device)
    mask_u8 = (
        m.to(torch.uint8).contiguous()
        if m is not None
        else torch.zeros(1, device=x.device, dtype=torch.uint8)
    )
    x0 = None
    if state is not None:
        check_state(what, state, (N, H, P), complex_dtype(x.dtype))
        x0 = torch.view_as_real(state.contiguous())
    return ScanArgs(
        x.contiguous(),
        mask_u8,
        torch.view_as_real(A_bar.contiguous()),
        torch.view_as_real(B_bar.contiguous()),
        C.contiguous(),
        D.contiguous(),
        x0,
        m,
        (T, N, H, P),
    )


def _dummy(ref: torch.Tensor) -> torch.Tensor:
    return torch.zeros(2, device=ref.device, dtype=torch.float32)


def make_scan_function(launch_forward, launch_backward) -> type[torch.autograd.Function]:
    """The autograd function of the fused scan around two launchers (CuPy on a GPU, ctypes on
    the host build in the tests).  ``launch_*(tensors, scalars)`` run the kernel entry points
    with the tensors in the order of the ``.cu`` signatures and the scalars
    ``(T, N, H, P, has_mask, has_x0, has_gxT)``."""

    class _S4DScan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, mask_u8, A_bar, B_bar, C, D, x0, shape, has_mask):
            T, N, H, P = shape
            y = torch.empty(T, N, H, device=u.device, dtype=torch.float32)
            xT = torch.empty(N, H, P, 2, device=u.device, dtype=torch.float32)
            x0_t = _dummy(u) if x0 is None else x0.detach().contiguous()
            params = [t.detach().contiguous() for t in (A_bar, B_bar, C, D)]
            launch_forward(
                (u, mask_u8, *params, x0_t, y, xT),
                (T, N, H, P, int(has_mask), int(x0 is not None), 0),
            )
            ctx.save_for_backward(u, mask_u8, *params, x0_t)
            ctx.shape, ctx.has_mask, ctx.has_x0 = shape, has_mask, x0 is not None
            return y, xT

        @staticmethod
        def backward(ctx, grad_y, grad_xT):
            u, mask_u8, A_bar, B_bar, C, D, x0_t = ctx.saved_tensors
            T, N, H, P = ctx.shape
            g = torch.zeros_like(u) if grad_y is None else grad_y.to(torch.float32).contiguous()
            gxT = _dummy(u) if grad_xT is None else grad_xT.to(torch.float32).contiguous()
            scratch = torch.empty(T, N, H, 2, device=u.device, dtype=torch.float32)
            grad_u = torch.empty_like(u)
            gA, gB, gC, gx0 = (
                torch.empty(N, H, P, 2, device=u.device, dtype=torch.float32) for _ in range(4)
            )
            gD = torch.empty(N, H, device=u.device, dtype=torch.float32)
            launch_backward(
                (
                    g,
                    gxT,
                    u,
                    mask_u8,
                    A_bar,
                    B_bar,
                    C,
                    D,
                    x0_t,
                    scratch,
                    grad_u,
                    gA,
                    gB,
                    gC,
                    gD,
                    gx0,
                ),
                (T, N, H, P, int(ctx.has_mask), int(ctx.has_x0), int(grad_xT is not None)),
            )
            return (
                grad_u,
                None,
                gA.sum(0),
                gB.sum(0),
                gC.sum(0),
                gD.sum(0),
                gx0 if ctx.has_x0 else None,
                None,
                None,
            )

    return _S4DScan


def s4d_scan(
    scan_function,
    x: torch.Tensor,
    state: torch.Tensor | None,
    mask: torch.Tensor | None,
    ssm: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    what: str = "S4D",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y [T, N, H], new_state complex [N, H, P])`` of a causal S4D through the fused scan
    (``ssm`` = ``(A_bar, B_bar, C, D)``, see `prepare_scan`): the numbers of
    ``S4D.forward_with_state(x, state, mask)``."""
    a = prepare_scan(x, state, mask, ssm, what)
    y, xT = scan_function.apply(
        a.u, a.mask_u8, a.A_bar, a.B_bar, a.C, a.D, a.x0, a.shape, a.mask is not None
    )
    return y, torch.view_as_complex(xT)
