"""Building blocks of `bpsn_ext.models.SNNBert`: neurons per coding, spiking
self-attention and the spiking encoder block.

Two tensor layouts run through the same blocks (``D`` features last in both):

* individual coding: ``[L, B, D]``, the time axis *is* the token axis; padding mask ``[L, B]``
  (bool, True = real token); the neuron is `bpsn_ext.BPSN` (parallel over tokens).
* repeat coding: ``[T, B, L, D]``, the whole sequence is shown at each of ``T`` steps; padding
  mask ``[B, L]``; the neuron is `MultiStepLIF` (a loop over ``T``), one state per
  ``(b, l, d)``.

Linear layers and LayerNorms act on the last dimension, so they are shared by both layouts;
attention mixes tokens (``L``) and uses the padding mask on the keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bpsn_ext.bpsn_module import BPSN
from bpsn_ext.core.checks import check_float
from bpsn_ext.energy.ops import Ops
from bpsn_ext.surrogate import ATan, resolve

__all__ = [
    "MultiStepLIF",
    "RealActivation",
    "SpikingSelfAttention",
    "SpikingEncoderBlock",
    "ATTENTIONS",
    "CODINGS",
    "ANN_ACTIVATIONS",
]

ATTENTIONS = ("softmax", "spike_driven")
CODINGS = ("individual", "repeat", "ann")
ANN_ACTIVATIONS = ("relu", "gelu", "identity")


class MultiStepLIF(nn.Module):
    """Leaky integrate-and-fire neuron over the leading time axis of ``[T, *]`` (plain torch).

    ``v <- v + (x - v) / tau``; ``s = Theta(v - v_threshold)``; reset ``v <- v (1 - s)``
    (``"hard"``, to 0) or ``v <- v - v_threshold s`` (``"soft"``).  This is SpikingJelly's
    ``LIFNode(tau, decay_input=True, v_reset=0.0)`` in multi-step mode (tested against it),
    written in plain torch so that the model needs no SNN framework.  Surrogate: ATan(2).

    ``forward(x, mask=None)``: ``x`` ``[T, B, L, C]`` (repeat coding), ``mask`` bool ``[B, L]``
    (True = real token); spikes of padded tokens are set to 0.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        reset: str = "hard",
        surrogate=None,
        detach_reset: bool = False,
    ) -> None:
        super().__init__()
        check_float("tau", tau)
        check_float("v_threshold", v_threshold)
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1, got {tau}")
        if reset not in ("hard", "soft"):
            raise ValueError(f"reset must be 'hard' or 'soft', got {reset!r}")
        self.tau, self.v_threshold, self.reset = float(tau), float(v_threshold), reset
        self.detach_reset = detach_reset
        self.surrogate_function = resolve(surrogate, default=ATan)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            v = v + (x[t] - v) / self.tau
            s = self.surrogate_function(v - self.v_threshold)
            r = s.detach() if self.detach_reset else s
            v = v * (1.0 - r) if self.reset == "hard" else v - self.v_threshold * r
            out.append(s)
        spikes = torch.stack(out)
        if mask is not None:
            spikes = spikes * mask.reshape(1, *mask.shape, *([1] * (x.dim() - 3))).to(x.dtype)
        return spikes

    def energy_ops(self, inputs, output, kwargs=None) -> Ops:
        """1 mul + 3 add (leak, charge, compare, reset) per neuron, step and real token."""
        x = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else (kwargs or {}).get("mask")
        n = x.numel()
        if mask is not None:
            n = int(mask.sum()) * x.shape[0] * (x.numel() // (x.shape[0] * mask.numel()))
        return Ops(mul=n, add=3 * n, dense=0, label="LIF: leak, charge, compare, reset")

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, reset={self.reset!r}"


class RealActivation(nn.Module):
    """The ANN twin's stand-in for a neuron: a real-valued activation on ``[L, B, C]``.

    ``forward(x, mask=None)`` returns ``act(x)`` with padded tokens (``mask`` bool ``[L, B]``,
    False) set to 0, like the neurons' spikes.  ``"relu"`` (default; thresholded and
    non-negative like a spike count), ``"gelu"`` or ``"identity"``.

    Example: ``RealActivation("relu")(torch.randn(5, 2, 8)).shape == (5, 2, 8)``.
    """

    def __init__(self, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ANN_ACTIVATIONS:
            raise ValueError(f"ann activation must be one of {ANN_ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.activation == "relu":
            x = torch.relu(x)
        elif self.activation == "gelu":
            x = torch.nn.functional.gelu(x)
        if mask is not None:
            x = x * mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim()))).to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return repr(self.activation)


def make_neuron(
    coding: str, channels: int, bpsn_options: dict, lif_options: dict, ann_activation: str = "relu"
) -> nn.Module:
    """A BPSN over tokens (individual coding), a LIF over the T repeats (repeat coding) or a
    real-valued activation (``"ann"``, the twin without neurons)."""
    if coding == "individual":
        return BPSN(channels, **bpsn_options)
    if coding == "ann":
        return RealActivation(ann_activation)
    return MultiStepLIF(**lif_options)


def _layout(coding: str) -> str:
    """The ANN twin shares the individual-coding layout ``[L, B, D]``."""
    return "individual" if coding == "ann" else coding


def _split_heads(x: torch.Tensor, heads: int, coding: str) -> torch.Tensor:
    """``[L, B, D]`` -> ``[B, H, L, d]``; ``[T, B, L, D]`` -> ``[T, B, H, L, d]``."""
    *lead, D = x.shape
    x = x.reshape(*lead, heads, D // heads)
    if _layout(coding) == "individual":
        return x.permute(1, 2, 0, 3)
    return x.permute(0, 1, 3, 2, 4)


def _merge_heads(x: torch.Tensor, coding: str) -> torch.Tensor:
    """Inverse of `_split_heads`."""
    if _layout(coding) == "individual":
        B, H, L, d = x.shape
        return x.permute(2, 0, 1, 3).reshape(L, B, H * d)
    T, B, H, L, d = x.shape
    return x.permute(0, 1, 3, 2, 4).reshape(T, B, L, H * d)


def key_mask(mask: torch.Tensor | None, coding: str) -> torch.Tensor | None:
    """The padding mask broadcast over attention scores ``[..., H, L_query, L_key]``."""
    if mask is None:
        return None
    if _layout(coding) == "individual":  # [L, B] -> [B, 1, 1, L]
        return mask.t()[:, None, None, :]
    return mask[None, :, None, None, :]  # [B, L] -> [1, B, 1, 1, L]


class SpikingSelfAttention(nn.Module):
    """Spiking self-attention over the token axis; input spikes, output a real-valued update.

    ``Q, K, V = neuron(LayerNorm(Linear(S)))`` (all spikes), then

    * ``"softmax"`` (SpikeLM-style): ``softmax(Q K^T * scale, padded keys excluded) V``;
    * ``"spike_driven"`` (Spikformer-style, no softmax): ``(Q K^T with padded keys zeroed) V *
      scale``;

    then (``out_norm``: LayerNorm ->) ``neuron -> Linear -> LayerNorm -> dropout``.  ``scale``
    defaults to ``1/sqrt(d_head)`` for softmax and 0.125 (Spikformer's constant) for
    spike-driven attention.  Which of the two SNN-BERT used is not known (a reconstruction, see
    ``docs/snn_bert.md``).
    """

    def __init__(
        self,
        width: int,
        heads: int,
        *,
        coding: str,
        attention: str,
        dropout: float,
        scale: float | None,
        bpsn_options: dict,
        lif_options: dict,
        ann_activation: str = "relu",
        out_norm: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.heads, self.coding, self.attention = heads, coding, attention
        d_head = width // heads
        if scale is None:
            scale = 1.0 / math.sqrt(d_head) if attention == "softmax" else 0.125
        self.scale = float(scale)

        def neuron() -> nn.Module:
            return make_neuron(coding, width, bpsn_options, lif_options, ann_activation)

        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.q_norm, self.k_norm, self.v_norm = (nn.LayerNorm(width) for _ in range(3))
        self.q_neuron, self.k_neuron, self.v_neuron = neuron(), neuron(), neuron()
        self.softmax = nn.Softmax(dim=-1)
        self.attn_dropout = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(width) if out_norm else None
        self.attn_neuron = neuron()
        self.proj = nn.Linear(width, width)
        self.proj_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        c = self.coding
        q = _split_heads(self.q_neuron(self.q_norm(self.q(s)), mask), self.heads, c)
        k = _split_heads(self.k_neuron(self.k_norm(self.k(s)), mask), self.heads, c)
        v = _split_heads(self.v_neuron(self.v_norm(self.v(s)), mask), self.heads, c)
        km = key_mask(mask, c)
        scores = q @ k.transpose(-1, -2)
        if self.attention == "softmax":
            scores = scores * self.scale
            if km is not None:
                scores = scores.masked_fill(~km, float("-inf"))
            out = self.attn_dropout(self.softmax(scores)) @ v
        else:
            if km is not None:
                scores = scores.masked_fill(~km, 0.0)
            out = (self.attn_dropout(scores) @ v) * self.scale
        out = _merge_heads(out, c)
        if self.out_norm is not None:
            out = self.out_norm(out)
        out = self.attn_neuron(out, mask)
        return self.dropout(self.proj_norm(self.proj(out)))


class SpikingEncoderBlock(nn.Module):
    """One encoder block on the real-valued residual ("membrane shortcut") stream ``x``::

        x = x + Attention(neuron(x))
        x = x + dropout(LN(fc2(neuron(LN(fc1(neuron(x)))))))

    Every Linear sees spikes; the residual stream stays real-valued (added before the next
    neuron), as in the Spike-driven Transformer (Yao et al. 2023; a reconstruction).  Under
    ``coding="ann"`` every neuron is a ``RealActivation`` (the ANN twin).  ``input_norm`` puts a
    LayerNorm before the two input neurons (``neuron(LN(x))``, pre-norm); ``attn_out_norm`` one
    before the attention-output neuron.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        ffn_width: int,
        *,
        coding: str,
        attention: str,
        dropout: float,
        scale: float | None,
        bpsn_options: dict,
        lif_options: dict,
        ann_activation: str = "relu",
        attn_out_norm: bool = False,
        input_norm: bool = False,
    ) -> None:
        super().__init__()
        neurons = (bpsn_options, lif_options, ann_activation)
        self.attn_in_norm = nn.LayerNorm(width) if input_norm else None
        self.attn_in = make_neuron(coding, width, *neurons)
        self.attn = SpikingSelfAttention(
            width,
            heads,
            coding=coding,
            attention=attention,
            dropout=dropout,
            scale=scale,
            bpsn_options=bpsn_options,
            lif_options=lif_options,
            ann_activation=ann_activation,
            out_norm=attn_out_norm,
        )
        self.ffn_in_norm = nn.LayerNorm(width) if input_norm else None
        self.ffn_in = make_neuron(coding, width, *neurons)
        self.fc1 = nn.Linear(width, ffn_width)
        self.fc1_norm = nn.LayerNorm(ffn_width)
        self.ffn_neuron = make_neuron(coding, ffn_width, *neurons)
        self.fc2 = nn.Linear(ffn_width, width)
        self.fc2_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = x if self.attn_in_norm is None else self.attn_in_norm(x)
        x = x + self.attn(self.attn_in(a, mask), mask)
        f = x if self.ffn_in_norm is None else self.ffn_in_norm(x)
        h = self.ffn_neuron(self.fc1_norm(self.fc1(self.ffn_in(f, mask))), mask)
        return x + self.dropout(self.fc2_norm(self.fc2(h)))
