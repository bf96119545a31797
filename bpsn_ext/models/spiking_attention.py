"""Building blocks of `bpsn_ext.models.SNNBert`: spiking self-attention and the spiking
encoder block.

The coding (`bpsn_ext.models.snn_bert_coding`) decides the neurons and the tensor layout that
runs through the blocks (``D`` features last in both): individual coding (and the ANN twin)
``[L, B, D]`` with padding mask ``[L, B]`` (bool, True = real token), repeat coding
``[T, B, L, D]`` with padding mask ``[B, L]``.

Linear layers and LayerNorms act on the last dimension, so they are shared by both layouts;
attention mixes tokens (``L``) and uses the padding mask on the keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bpsn_ext.models.snn_bert_coding import SNNBertCoding, snn_bert_coding

__all__ = ["ATTENTIONS", "SpikingEncoderBlock", "SpikingSelfAttention"]

ATTENTIONS = ("softmax", "spike_driven")


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
        coding: str | SNNBertCoding,
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
        coding = snn_bert_coding(coding)
        self.heads, self.coding, self.attention = heads, coding, attention
        d_head = width // heads
        if scale is None:
            scale = 1.0 / math.sqrt(d_head) if attention == "softmax" else 0.125
        self.scale = float(scale)

        def neuron() -> nn.Module:
            return coding.make_neuron(width, bpsn_options, lif_options, ann_activation)

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
        layout, H = self.coding.layout, self.heads
        q = layout.split_heads(self.q_neuron(self.q_norm(self.q(s)), mask), H)
        k = layout.split_heads(self.k_neuron(self.k_norm(self.k(s)), mask), H)
        v = layout.split_heads(self.v_neuron(self.v_norm(self.v(s)), mask), H)
        km = layout.key_mask(mask)
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
        out = layout.merge_heads(out)
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
        coding: str | SNNBertCoding,
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
        coding = snn_bert_coding(coding)
        neurons = (bpsn_options, lif_options, ann_activation)
        self.attn_in_norm = nn.LayerNorm(width) if input_norm else None
        self.attn_in = coding.make_neuron(width, *neurons)
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
        self.ffn_in = coding.make_neuron(width, *neurons)
        self.fc1 = nn.Linear(width, ffn_width)
        self.fc1_norm = nn.LayerNorm(ffn_width)
        self.ffn_neuron = coding.make_neuron(ffn_width, *neurons)
        self.fc2 = nn.Linear(ffn_width, width)
        self.fc2_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = x if self.attn_in_norm is None else self.attn_in_norm(x)
        x = x + self.attn(self.attn_in(a, mask), mask)
        f = x if self.ffn_in_norm is None else self.ffn_in_norm(x)
        h = self.ffn_neuron(self.fc1_norm(self.fc1(self.ffn_in(f, mask))), mask)
        return x + self.dropout(self.fc2_norm(self.fc2(h)))
