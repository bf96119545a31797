"""The fused S4D scan of ``ssm_kernels.cu`` as torch operators, for any launcher.

``bpsn_ext::s4d_scan_fused_forward`` and ``bpsn_ext::s4d_scan_fused_backward`` are
``torch.library.custom_op`` s with fake and autograd registrations (the interface of the
Triton scan).  Who launches the kernel code is registered per device type
(`register_launchers`): `bpsn_ext.kernels.cupy_ssm` registers CuPy for ``"cuda"`` when it is
imported; the tests register the host C++ build of the same source for ``"cpu"``.

Launchers take ``(tensors, scalars)`` in the order of the ``.cu`` entry points: forward
``(u, mask, A_bar, B_bar, C, D, x0, y, xT)``, backward ``(grad_y, grad_xT, u, mask, A_bar,
B_bar, C, D, x0, scratch, grad_u, gA, gB, gC, gD, gx0)``, scalars ``(T, N, H, P, has_mask,
has_x0, has_gxT)``.  Layouts: those of `bpsn_ext.kernels.ssm_launch_args.ScanArgs`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bpsn_ext.kernels.launch_args import Launchers
from bpsn_ext.kernels.ssm_launch_args import prepare_scan

__all__ = ["register_launchers", "s4d_scan", "s4d_scan_fused_forward", "s4d_scan_fused_backward"]

LAUNCHERS = Launchers("fused S4D scan")
register_launchers = LAUNCHERS.register
_launcher = LAUNCHERS.launcher


def _dummy(ref: Tensor) -> Tensor:
    return torch.zeros(2, device=ref.device, dtype=torch.float32)


@torch.library.custom_op("bpsn_ext::s4d_scan_fused_forward", mutates_args=())
def s4d_scan_fused_forward(
    u: Tensor, mask_u8: Tensor, ssm: list[Tensor], x0: Tensor | None, has_mask: bool
) -> tuple[Tensor, Tensor]:
    """``(y [T, N, H], xT [N, H, P, 2])``; ``ssm`` = ``[A_bar, B_bar, C, D]``."""
    T, N, H = u.shape
    P = ssm[0].shape[1]
    y = torch.empty(T, N, H, device=u.device, dtype=torch.float32)
    xT = torch.empty(N, H, P, 2, device=u.device, dtype=torch.float32)
    x0_t = _dummy(u) if x0 is None else x0.contiguous()
    tensors = (u, mask_u8, *(t.contiguous() for t in ssm), x0_t, y, xT)
    _launcher(u, 0)(tensors, (T, N, H, P, int(has_mask), int(x0 is not None), 0))
    return y, xT


@s4d_scan_fused_forward.register_fake
def _(u, mask_u8, ssm, x0, has_mask):
    T, N, H = u.shape
    return u.new_empty(T, N, H), u.new_empty(N, H, ssm[0].shape[1], 2)


@torch.library.custom_op("bpsn_ext::s4d_scan_fused_backward", mutates_args=())
def s4d_scan_fused_backward(
    grad_y: Tensor | None,
    grad_xT: Tensor | None,
    u: Tensor,
    mask_u8: Tensor,
    ssm: list[Tensor],
    x0: Tensor | None,
    has_mask: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``u``, ``A_bar``, ``B_bar``, ``C``, ``D`` and ``x0`` (zeros without)."""
    T, N, H = u.shape
    P = ssm[0].shape[1]
    g = torch.zeros_like(u) if grad_y is None else grad_y.to(torch.float32).contiguous()
    gxT = _dummy(u) if grad_xT is None else grad_xT.to(torch.float32).contiguous()
    x0_t = _dummy(u) if x0 is None else x0.contiguous()
    scratch = torch.empty(T, N, H, 2, device=u.device, dtype=torch.float32)
    grad_u = torch.empty_like(u)
    gA, gB, gC, gx0 = (u.new_empty(N, H, P, 2) for _ in range(4))
    gD = u.new_empty(N, H)
    tensors = (g, gxT, u, mask_u8, *(t.contiguous() for t in ssm), x0_t, scratch, grad_u)
    flags = (int(has_mask), int(x0 is not None), int(grad_xT is not None))
    _launcher(u, 1)((*tensors, gA, gB, gC, gD, gx0), (T, N, H, P, *flags))
    if x0 is None:
        gx0 = gx0.zero_()
    return grad_u, gA.sum(0), gB.sum(0), gC.sum(0), gD.sum(0), gx0


@s4d_scan_fused_backward.register_fake
def _(grad_y, grad_xT, u, mask_u8, ssm, x0, has_mask):
    N, H = u.shape[1:]
    P = ssm[0].shape[1]
    params = (u.new_empty(H, P, 2) for _ in range(3))
    return torch.empty_like(u), *params, u.new_empty(H), u.new_empty(N, H, P, 2)


def _setup_context(ctx, inputs, output) -> None:
    u, mask_u8, ssm, x0, has_mask = inputs
    ctx.save_for_backward(u, mask_u8, *ssm, x0)
    ctx.has_mask = has_mask
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_y, grad_xT):
    u, mask_u8, *ssm, x0 = ctx.saved_tensors
    grads = s4d_scan_fused_backward(grad_y, grad_xT, u, mask_u8, ssm, x0, ctx.has_mask)
    return grads[0], None, list(grads[1:5]), (grads[5] if x0 is not None else None), None


s4d_scan_fused_forward.register_autograd(_backward, setup_context=_setup_context)


def s4d_scan(
    x: Tensor,
    state: Tensor | None,
    mask: Tensor | None,
    ssm: tuple[Tensor, Tensor, Tensor, Tensor],
    what: str = "S4D",
) -> tuple[Tensor, Tensor]:
    """``(y [T, N, H], new_state complex [N, H, P])`` of a causal S4D through the fused scan
    (``ssm`` = ``(A_bar, B_bar, C, D)``, see `prepare_scan`): the numbers of
    ``S4D.forward_with_state(x, state, mask)``."""
    a = prepare_scan(x, state, mask, ssm, what)
    params = [a.A_bar, a.B_bar, a.C, a.D]
    y, xT = s4d_scan_fused_forward(a.u, a.mask_u8, params, a.x0, a.mask is not None)
    return y, torch.view_as_complex(xT)
