"""Tensor checks that turn a bad input into a clear error (what was wrong, what was expected).

Checks of plain arguments (floats, ints) are in `bpsn_ext.util.arguments`.
"""

from __future__ import annotations

import torch

__all__ = ["check_floating", "check_rank"]


def check_floating(name: str, x: object) -> torch.Tensor:
    """``x`` must be a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_rank(name: str, x: torch.Tensor, min_rank: int, layout: str) -> torch.Tensor:
    """``x`` must have at least ``min_rank`` dims (``layout`` names them, e.g. '[T, N, *]')."""
    if x.dim() < min_rank:
        raise ValueError(
            f"{name} must have shape {layout} (at least {min_rank} dims), "
            f"got shape {tuple(x.shape)}"
        )
    return x
