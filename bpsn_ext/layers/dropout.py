"""``TiedDropout``: dropout that drops whole channels for the whole sequence.

On a time-first ``[T, N, *]`` input one Bernoulli mask of shape ``[N, *]`` is drawn per call
and shared by every step, so a dropped channel of a sample is zero at all ``T`` steps; kept
values are scaled by ``1 / (1 - p)``.  This is state-spaces/s4's ``DropoutNd(tie=True)`` and
PyTorch's ``Dropout1d`` on the ``[N, H, T]`` layout of s4's ``example.py``, moved to the
time-first layout.  A single step ``[N, H]`` (streaming) gets an ordinary element-wise mask.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TiedDropout", "make_dropout"]


class TiedDropout(nn.Dropout):
    """Channel dropout tied over time for ``[T, N, *]`` inputs (``p`` as ``nn.Dropout``).

    Example::

        drop = TiedDropout(0.1).train()
        y = drop(torch.ones(100, 8, 16))   # y[:, n, h] is all 0 or all 1/0.9
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.dim() < 3:
            return super().forward(x)
        keep = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * (keep / (1.0 - self.p))


def make_dropout(p: float, tied: bool) -> nn.Dropout:
    """``TiedDropout(p)`` when ``tied`` else ``nn.Dropout(p)``."""
    if not isinstance(tied, bool):
        raise TypeError(f"tied_dropout must be bool, got {type(tied).__name__}")
    return TiedDropout(p) if tied else nn.Dropout(p)
