"""Arguments of the fused S4D scans, prepared in plain torch (no CuPy or Triton import).

Shared by the CuPy and Triton scans and by the test that runs the CUDA kernel code compiled as
host C++, so all see exactly the same layout.  The layer discretises (ZOH) in torch and passes
``A_bar``/``B_bar``/``C``/``D``, so autograd chains the kernel's gradients back to ``log_dt``,
``log_A_real``, ``A_imag``, ``C`` and ``D``; no kernel sees the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bpsn_ext.core.diagonal_ssm import check_sequence, check_state, complex_dtype
from bpsn_ext.core.masks import as_mask

__all__ = ["ScanArgs", "prepare_scan"]


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
