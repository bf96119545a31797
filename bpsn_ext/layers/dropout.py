"""``TiedDropout``: dropout that drops whole channels for the whole sequence.

On a time-first ``[T, N, C, *]`` input one Bernoulli mask of shape ``[N, C]`` is drawn per
call and shared by every step and every trailing position, so a dropped channel of a sample
is zero at all ``T`` steps (and all positions ``*``); kept values are scaled by
``1 / (1 - p)``.  This is state-spaces/s4's ``DropoutNd(tie=True)`` (mask ``[B, D, 1, ...]``
on its ``[B, D, L...]`` layout, tied over every length axis) on every rank, moved to the
time-first layout.  A single step ``[N, C]`` (streaming) gets an ordinary element-wise mask.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TiedDropout", "make_dropout"]


class TiedDropout(nn.Dropout):
    """Channel dropout tied over time and trailing axes for ``[T, N, C, *]`` inputs (``p`` as
    ``nn.Dropout``).

    Example::

        drop = TiedDropout(0.1).train()
        y = drop(torch.ones(100, 8, 16))   # y[:, n, h] is all 0 or all 1/0.9
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.dim() < 3:
            return super().forward(x)
        shape = (1, *x.shape[1:3]) + (1,) * (x.dim() - 3)  # [1, N, C, 1, ...]
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * (keep / (1.0 - self.p))


def make_dropout(p: float, tied: bool) -> nn.Dropout:
    """``TiedDropout(p)`` when ``tied`` else ``nn.Dropout(p)``."""
    if not isinstance(tied, bool):
        raise TypeError(f"tied_dropout must be bool, got {type(tied).__name__}")
    return TiedDropout(p) if tied else nn.Dropout(p)
