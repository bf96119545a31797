"""``LRAClassifier``: encoder -> residual sequence blocks -> masked pooling -> decoder.

The backbone of state-spaces/s4's ``example.py`` (papers.md §3.5) with a choice of sequence
layer: ``"binary_s4d"``, ``"gsu"``, ``"s5"`` (spiking S5), ``"bpsn"`` or ``"s4d"`` (the
non-spiking S4D block, the reference).  Inputs are time-first: token ids ``[T, N]`` (with
``vocab_size``) or features ``[T, N, d_input]``.
"""

from __future__ import annotations

import torch
from torch import nn

from bpsn_ext.bpsn import BPSN
from bpsn_ext.core.masks import as_mask
from bpsn_ext.layers import GSU, BinaryS4D, SpikingS5

__all__ = ["LRAClassifier", "LAYERS"]

LAYERS = ("binary_s4d", "gsu", "s5", "bpsn", "s4d")


class _Residual(nn.Module):
    """``x + dropout(f(norm?(x)))`` then the norm (post-norm default), masks passed through."""

    def __init__(self, inner: nn.Module, d_model: int, dropout: float, prenorm: bool) -> None:
        super().__init__()
        self.inner, self.prenorm = inner, prenorm
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x) if self.prenorm else x
        out = x + self.dropout(self.inner(h, mask))
        return out if self.prenorm else self.norm(out)


class _LinearBPSN(nn.Module):
    """Linear mixing of the features, then a BPSN neuron over time."""

    def __init__(self, d_model: int, **options) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, d_model)
        self.neuron = BPSN(d_model, **options)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.neuron(self.linear(x), mask)


def _block(layer: str, d_model: int, d_state: int, dropout: float, prenorm: bool, options):
    if layer == "binary_s4d":
        return BinaryS4D(d_model, d_state, dropout=dropout, prenorm=prenorm, **options)
    if layer == "s4d":
        return BinaryS4D(d_model, d_state, activation="gelu", dropout=dropout, prenorm=prenorm,
                         **options)
    if layer == "gsu":
        return GSU(d_model, d_state, dropout=dropout, prenorm=prenorm, **options)
    if layer == "s5":
        return _Residual(SpikingS5(d_model, d_state, **options), d_model, dropout, prenorm)
    return _Residual(_LinearBPSN(d_model, **options), d_model, dropout, prenorm)


class LRAClassifier(nn.Module):
    """Sequence classifier for LRA-style tasks and sequential images.

    Args:
        d_input: features per step (ignored with ``vocab_size``).
        n_classes: output classes.
        layer: one of :data:`LAYERS`.
        d_model, n_layers, d_state, dropout, prenorm: backbone size (s4 ``example.py``
            defaults: 128, 4, 64, 0.1 / 0.0, post-norm).
        vocab_size: embed integer tokens ``[T, N]`` instead of projecting features.
        layer_options: extra keyword arguments for every sequence layer.

    ``forward(x, mask=None) -> logits [N, n_classes]``; the mean is taken over real steps only.
    """

    def __init__(
        self,
        d_input: int,
        n_classes: int,
        *,
        layer: str = "binary_s4d",
        d_model: int = 128,
        n_layers: int = 4,
        d_state: int = 64,
        dropout: float = 0.0,
        prenorm: bool = False,
        vocab_size: int | None = None,
        layer_options: dict | None = None,
    ) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        for name, value in (("n_classes", n_classes), ("d_model", d_model),
                            ("n_layers", n_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.layer, self.vocab_size = layer, vocab_size
        if vocab_size is not None:
            self.encoder: nn.Module = nn.Embedding(vocab_size, d_model)
        else:
            self.encoder = nn.Linear(d_input, d_model)
        opts = dict(layer_options or {})
        self.blocks = nn.ModuleList(
            _block(layer, d_model, d_state, dropout, prenorm, opts) for _ in range(n_layers)
        )
        self.decoder = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.vocab_size is not None:
            if x.dim() != 2 or x.is_floating_point():
                raise ValueError(
                    f"with vocab_size the input is integer tokens [T, N], got {x.dtype} "
                    f"{list(x.shape)}"
                )
        elif x.dim() != 3:
            raise ValueError(f"the input must be features [T, N, d_input], got {list(x.shape)}")
        T, N = x.shape[:2]
        m = as_mask(mask, T, N, x.device)
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h, m)
        if m is None:
            pooled = h.mean(0)
        else:
            w = m.to(h.dtype)[..., None]
            pooled = (h * w).sum(0) / w.sum(0).clamp_min(1.0)
        return self.decoder(pooled)
