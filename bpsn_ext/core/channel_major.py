"""Time-first sequences stored channel-major: fast CPU training of the FFT-convolution blocks.

A sequence is always indexed ``[T, N, H]`` (time first), but its memory may be laid out as
``[N, H, T]`` (each channel's time series contiguous), the layout that the FFT convolution of
an S4D layer works in.  Such a tensor is ``x_nht.permute(2, 0, 1)``: every element-wise op
keeps the layout, so a stack of blocks run in it needs no transpose at all, while a time-major
``[T, N, H]`` tensor pays two transposes per FFT convolution.  The few ops that care about the
layout have channel-major versions here:

* `to_channel_major` / `to_time_major`: the layout changes (one blocked 2-D transpose each way,
  several times faster than a strided 3-D copy);
* `sequence_linear`: ``x W^T + b`` over the channels, as ``W @ x[n]`` per sample (a batched
  matmul, no copy);
* `sequence_glu`: ``a * sigmoid(b)`` over the channel halves (ATen's GLU kernels are slow
  when the channels are not contiguous);
* `sequence_layer_norm`: LayerNorm over the channels with a hand-written backward (ATen's
  LayerNorm needs the channels contiguous; reductions over the channel axis are cheap here).

Each function accepts any layout and returns the input's layout, so it is also correct for a
time-major tensor; ``fused=False`` calls the plain ``torch.nn.functional`` op instead (the
reference the tests compare with).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "is_channel_major",
    "to_channel_major",
    "to_time_major",
    "sequence_linear",
    "sequence_layer_norm",
    "sequence_glu",
]


def is_channel_major(x: torch.Tensor) -> bool:
    """True when ``x`` ``[T, N, H]`` is stored as a contiguous ``[N, H, T]``."""
    return x.dim() == 3 and x.permute(1, 2, 0).is_contiguous()


def _transposed(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A contiguous ``[cols, rows]`` copy of ``x`` read as ``[rows, cols]`` (blocked 2-D copy)."""
    return x.reshape(rows, cols).t().contiguous()


class _ToChannelMajor(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        T, N, H = x.shape
        return _transposed(x, T, N * H).view(N, H, T).permute(2, 0, 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return to_time_major(grad)


class _ToTimeMajor(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        T, N, H = x.shape
        return _transposed(x.permute(1, 2, 0), N * H, T).view(T, N, H)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return to_channel_major(grad)


def to_channel_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[T, N, H]`` stored as ``[N, H, T]`` (returned as is when it already is)."""
    return x if is_channel_major(x) else _ToChannelMajor.apply(x)


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[T, N, H]`` stored contiguously (returned as is when it already is)."""
    return x if x.is_contiguous() else _ToTimeMajor.apply(x)


def sequence_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, fused: bool = True
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x`` ``[T, N, H_in]`` -> ``[T, N, H_out]``.

    A channel-major ``x`` gives a channel-major result from one batched matmul
    ``weight @ x[n]`` (``F.linear`` would first copy ``x`` to time-major).  ``weight`` may
    also be one matrix per sample, ``[N, H_out, H_in]`` (with ``bias`` ``[N, H_out]``): that
    is how the blocks fold a dropout mask that is constant over time into the weights.
    ``fused=False``: ``F.linear`` whatever the layout (the reference).
    """
    if weight.dim() == 2 and not (fused and is_channel_major(x)):
        return F.linear(x, weight, bias)
    xp = to_channel_major(x).permute(1, 2, 0)  # [N, H_in, T], contiguous
    N, T = xp.shape[0], xp.shape[2]
    w = weight.expand(N, *weight.shape[-2:])
    if bias is None:
        out = torch.bmm(w, xp)
    else:
        out = torch.baddbmm(bias.expand(N, bias.shape[-1])[:, :, None].expand(-1, -1, T), w, xp)
    return out.permute(2, 0, 1)


class _LayerNormChannels(torch.autograd.Function):
    """LayerNorm over dim 1 of a contiguous ``[N, H, T]``, affine; saves ``x_hat`` and
    ``r = 1 / sigma``.  Backward: ``dx = r (g w - c1 - x_hat c2)`` with the channel means
    ``c1 = mean(g w)``, ``c2 = mean(g w x_hat)`` (reductions over H as small matmuls)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        H = x.shape[1]
        xc = x - x.mean(1, keepdim=True)
        var = torch.linalg.vecdot(xc, xc, dim=1).unsqueeze_(1).div_(H)
        rstd = var.add_(eps).rsqrt_()
        x_hat = xc.mul_(rstd)
        ctx.save_for_backward(x_hat, rstd, weight)
        return torch.addcmul(bias[:, None], x_hat, weight[:, None])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x_hat, rstd, weight = ctx.saved_tensors
        grad = grad.contiguous()  # one copy here instead of several strided passes below
        w_mean = (weight / x_hat.shape[1])[None, None, :]  # [1, 1, H]: mean over H, weighted
        gx = grad * x_hat
        grad_w = gx.sum((0, 2)) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum((0, 2)) if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            c1, c2 = torch.matmul(w_mean, grad), torch.matmul(w_mean, gx)  # [N, 1, T]
            # r (g w - c1 - x_hat c2) = -r ((c1 + x_hat c2) - g w)
            grad_x = torch.addcmul(c1, x_hat, c2).addcmul_(grad, weight[:, None], value=-1.0)
            grad_x = grad_x.mul_(rstd.neg())
        return grad_x, grad_w, grad_b, None


def sequence_layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, fused: bool = True
) -> torch.Tensor:
    """``F.layer_norm`` over the channels of ``x`` ``[T, N, H]``, in the layout of ``x``.

    A channel-major ``x`` runs `_LayerNormChannels` (the same maths, equal to rounding); a
    time-major one, or ``fused=False``, calls ``F.layer_norm``.
    """
    if not (fused and is_channel_major(x)):
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    out = _LayerNormChannels.apply(x.permute(1, 2, 0), weight, bias, eps)
    return out.permute(2, 0, 1)


class _GLUChannels(torch.autograd.Function):
    """``a * sigmoid(b) (+ x)`` for ``z = [a, b]`` split along dim 1 of a contiguous
    ``[N, 2H, T]`` (``x`` ``[N, H, T]`` or None).  Saves ``a`` and ``s = sigmoid(b)``;
    backward ``da = g s``, ``db = g s a (1 - s)``, ``dx = g``."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        a, b = z.chunk(2, dim=1)
        s = torch.sigmoid(b)
        ctx.save_for_backward(a, s)
        return a * s if x is None else torch.addcmul(x, a, s)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        a, s = ctx.saved_tensors
        grad_z = a.new_empty((a.shape[0], 2 * a.shape[1], a.shape[2]))
        da, db = grad_z.chunk(2, dim=1)
        torch.mul(grad, s, out=da)
        torch.mul(da, torch.addcmul(a, a, s, value=-1.0), out=db)  # g s a (1 - s)
        return grad_z, grad if ctx.needs_input_grad[1] else None


def sequence_glu(
    z: torch.Tensor, residual: torch.Tensor | None = None, fused: bool = True
) -> torch.Tensor:
    """``F.glu(z, dim=-1) (+ residual)`` for ``z`` ``[T, N, 2H]`` -> ``[T, N, H]``, in the
    layout of ``z`` (one pass for the sum when both are channel-major); ``fused=False``:
    ``F.glu`` (and ``+``) whatever the layout."""
    cm = fused and is_channel_major(z)
    if not cm or residual is not None and not is_channel_major(residual):
        out = F.glu(z, dim=-1)
        return out if residual is None else out + residual
    x = None if residual is None else residual.permute(1, 2, 0)
    return _GLUChannels.apply(z.permute(1, 2, 0), x).permute(2, 0, 1)
