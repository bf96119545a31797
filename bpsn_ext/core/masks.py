"""Padding masks for time-first sequences ``[T, N, *]``."""

from __future__ import annotations

import torch

__all__ = ["as_mask", "broadcast_mask", "zero_padded"]


def as_mask(mask: torch.Tensor | None, T: int, N: int, device: torch.device) -> torch.Tensor | None:
    """Validate a padding argument and return a bool mask ``[T, N]`` (True = real step) or None.

    Accepts a bool mask ``[T, N]`` (or ``[T]``, shared by the batch) or integer per-sample
    lengths ``[N]`` (valid steps ``0 .. length-1``).
    """
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but the input is on {device}")
    if mask.dtype == torch.bool:
        if mask.shape == (T,):
            return mask[:, None].expand(T, N)
        if mask.shape != (T, N):
            raise ValueError(
                f"a bool mask must have shape [T, N] = [{T}, {N}] (or [T]), got {list(mask.shape)}"
            )
        return mask
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(
            f"mask must be a bool tensor [T, N] or integer lengths [N], got dtype {mask.dtype}"
        )
    if mask.shape != (N,):
        raise ValueError(
            f"integer lengths must have shape [N] = [{N}], got {list(mask.shape)} "
            "(pass a bool tensor for a [T, N] mask)"
        )
    if N and (int(mask.min()) < 0 or int(mask.max()) > T):
        raise ValueError(
            f"lengths must lie in [0, T] = [0, {T}], got min {int(mask.min())}, "
            f"max {int(mask.max())}"
        )
    return torch.arange(T, device=device)[:, None] < mask[None, :]


def zero_padded(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``x`` with 0 wherever the bool ``valid`` (broadcastable to ``x``) is False.

    Unlike ``x * valid``, NaN or Inf at padded positions become 0 as well, so padding never
    reaches real steps.  The result keeps the memory layout of ``x`` (when ``valid`` does
    not add dimensions to it).
    """
    if torch.broadcast_shapes(valid.shape, x.shape) == x.shape:  # clone keeps the layout
        return x.clone().masked_fill_(~valid, 0)
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def broadcast_mask(mask: torch.Tensor, ndim: int) -> torch.Tensor:
    """``[T, N]`` -> ``[T, N, 1, ..., 1]`` with ``ndim`` dims in total."""
    return mask.reshape(*mask.shape, *([1] * (ndim - 2)))
