"""``SNNBert``: a directly trained spiking BERT encoder (SNN-BERT, Su et al. 2024; a
reconstruction, see ``docs/snn_bert.md``).

``embeddings -> coding -> spiking encoder blocks -> masked pooling -> head``:

* embeddings: WordPiece token + position + segment embeddings, LayerNorm, dropout (real).
* coding ``"individual"`` (the paper's proposal): ``[L, B, D]``, token t at time step t; the
  neurons are `bpsn_ext.BPSN`, parallel over the tokens, with the padding mask.
* coding ``"repeat"`` (the baseline): ``[T, B, L, D]``, the embedded sequence repeated at each
  of ``T`` steps; the neurons are `MultiStepLIF` over ``T`` (one state per token and
  feature); attention runs at every step.
* coding ``"ann"`` (the ANN twin): the individual layout ``[L, B, D]`` with every neuron
  replaced by a real-valued activation (``ann_activation``: ReLU by default); the same
  embeddings, Linear layers, LayerNorms, attention, pooling and head, no neuron at all.
* blocks: `SpikingEncoderBlock` (spiking
  self-attention with ``"softmax"`` or ``"spike_driven"`` attention, spiking FFN).
* pooling ``"mean"`` over real tokens (and over the T steps) or ``"cls"`` (the first token);
  then dropout and ``Linear(D, num_labels)``; ``num_labels == 1`` is regression (STS-B).

Inputs are time-first like every tensor in bpsn_ext: ``input_ids`` ``[L, B]``; the padding
``mask`` is a bool ``[L, B]`` (True = real token) or integer lengths ``[B]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from bpsn_ext.core.masks import as_mask
from bpsn_ext.models.snn_bert_coding import (
    ANN_ACTIVATIONS,
    CODINGS,
    SNNBertCoding,
    snn_bert_coding,
)
from bpsn_ext.models.spiking_attention import ATTENTIONS, SpikingEncoderBlock
from bpsn_ext.models.token_ids import check_token_ids
from bpsn_ext.util.arguments import check_int

__all__ = ["SNNBert", "SNNBertConfig", "POOLINGS", "BPSN_DEFAULTS"]

POOLINGS = ("mean", "cls")
# SNN-BERT's own BPSN defaults (over BPSN's): no refractory rule, which under individual coding
# forbids a channel to fire on two neighbouring tokens (docs/snn_bert_recipe.md)
BPSN_DEFAULTS = {"runaway": "none"}


@dataclasses.dataclass
class SNNBertConfig:
    """Settings of `SNNBert` (defaults: a small 4-layer model; BERT-base is
    ``layers=12, width=768, heads=12, ffn_width=3072``).

    ``bpsn_options`` go to every `bpsn_ext.BPSN` (individual coding), e.g.
    ``{"fusion": "gate", "runaway": "soft_reset"}``; the default is ``BPSN_DEFAULTS``
    (``{"runaway": "none"}``), and a dict given replaces it (the CLI merges its
    ``--bpsn-option`` flags into it); ``lif_options`` to every
    `MultiStepLIF` (repeat coding): ``tau``, ``v_threshold``, ``reset``.
    ``attention_scale=None`` picks the variant's default.  ``ann_activation`` is the twin's
    activation under ``coding="ann"`` (``"relu"``, ``"gelu"`` or ``"identity"``).
    ``attn_out_norm`` / ``input_norm``: LayerNorms before the attention-output neuron / before
    the blocks' two input neurons (see ``SpikingEncoderBlock``).
    """

    vocab_size: int = 30522
    num_labels: int = 2
    layers: int = 4
    width: int = 256
    heads: int = 4
    ffn_width: int = 1024
    max_length: int = 128
    type_vocab_size: int = 2
    coding: str = "individual"
    T: int = 4
    attention: str = "softmax"
    attention_scale: float | None = None
    pooling: str = "mean"
    dropout: float = 0.1
    bpsn_options: dict = dataclasses.field(default_factory=lambda: dict(BPSN_DEFAULTS))
    lif_options: dict = dataclasses.field(default_factory=dict)
    ann_activation: str = "relu"
    attn_out_norm: bool = False
    input_norm: bool = False

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "num_labels",
            "layers",
            "width",
            "heads",
            "ffn_width",
            "max_length",
            "type_vocab_size",
            "T",
        ):
            check_int(name, getattr(self, name))
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        for name, value, options in (
            ("coding", self.coding, CODINGS),
            ("attention", self.attention, ATTENTIONS),
            ("pooling", self.pooling, POOLINGS),
            ("ann_activation", self.ann_activation, ANN_ACTIVATIONS),
        ):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        if not isinstance(self.dropout, float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {self.dropout!r}")
        if self.bpsn_options.get("fusion") == "concat":
            raise ValueError(
                "bpsn_options fusion='concat' doubles the channels; SNNBert needs "
                "a shape-preserving fusion (split, gate, avg or sum)"
            )
        if "channels" in self.bpsn_options:
            raise ValueError("bpsn_options must not set 'channels' (SNNBert sets it per layer)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SNNBertConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SNNBertConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)


class _Embeddings(nn.Module):
    """Token + position + segment embeddings, LayerNorm, dropout: ``[L, B] -> [L, B, D]``."""

    def __init__(self, cfg: SNNBertConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positions = nn.Embedding(cfg.max_length, cfg.width)
        self.segments = nn.Embedding(cfg.type_vocab_size, cfg.width)
        self.norm = nn.LayerNorm(cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, segment_ids: torch.Tensor | None) -> torch.Tensor:
        L = ids.shape[0]
        pos = torch.arange(L, device=ids.device)
        x = self.tokens(ids) + self.positions(pos)[:, None, :]
        if segment_ids is not None:
            x = x + self.segments(segment_ids)
        else:
            x = x + self.segments.weight[0]
        return self.dropout(self.norm(x))


class SNNBert(nn.Module):
    """Spiking BERT for sequence classification / regression (see the module docstring).

    ``SNNBert(config)`` or ``SNNBert(**fields)``.  ``forward(input_ids, mask=None,
    segment_ids=None) -> [B, num_labels]``: ``input_ids`` and ``segment_ids`` ``[L, B]``
    (time-first), ``mask`` bool ``[L, B]`` or lengths ``[B]``.  Padded tokens change nothing:
    neither their ids nor the padded length ``L`` affects the output (tested).
    """

    def __init__(self, config: SNNBertConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = SNNBertConfig(**fields)
        elif fields:
            config = dataclasses.replace(config, **fields)
        self.config = cfg = config
        self.coding: SNNBertCoding = snn_bert_coding(cfg.coding)  # decided once
        self.embeddings = _Embeddings(cfg)
        self.blocks = nn.ModuleList(
            SpikingEncoderBlock(
                cfg.width,
                cfg.heads,
                cfg.ffn_width,
                coding=self.coding,
                attention=cfg.attention,
                dropout=cfg.dropout,
                scale=cfg.attention_scale,
                bpsn_options=dict(cfg.bpsn_options),
                lif_options=dict(cfg.lif_options),
                ann_activation=cfg.ann_activation,
                attn_out_norm=cfg.attn_out_norm,
                input_norm=cfg.input_norm,
            )
            for _ in range(cfg.layers)
        )
        self.final_norm = nn.LayerNorm(cfg.width)
        self.head_dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.width, cfg.num_labels)

    def _check(self, ids: torch.Tensor, segment_ids: torch.Tensor | None) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(
                "input_ids must be an integer tensor [L, B] (time-first: tokens x batch), got "
                + (
                    f"{ids.dtype} {list(ids.shape)}"
                    if isinstance(ids, torch.Tensor)
                    else type(ids).__name__
                )
            )
        L = ids.shape[0]
        if L > self.config.max_length:
            raise ValueError(
                f"sequence length {L} exceeds max_length={self.config.max_length}; truncate the "
                "inputs or build the model with a larger max_length"
            )
        if segment_ids is not None and segment_ids.shape != ids.shape:
            raise ValueError(
                f"segment_ids must have the shape of input_ids {list(ids.shape)}, "
                f"got {list(segment_ids.shape)}"
            )
        check_token_ids("input_ids", ids, self.config.vocab_size)
        if segment_ids is not None:
            check_token_ids("segment_ids", segment_ids, self.config.type_vocab_size)

    def encode(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last block's residual stream and the bool token mask ``[L, B]``: ``[L, B, D]``
        (individual, ann) or ``[T, B, L, D]`` (repeat)."""
        self._check(input_ids, segment_ids)
        L, B = input_ids.shape
        m = as_mask(mask, L, B, input_ids.device)
        if m is None:
            m = torch.ones(L, B, dtype=torch.bool, device=input_ids.device)
        if B and not bool(m.any(0).all()):
            raise ValueError("every sample needs at least one real token (a length of 0 found)")
        layout = self.coding.layout
        x = layout.present(self.embeddings(input_ids, segment_ids), self.config.T)
        neuron_mask = layout.neuron_mask(m)
        for block in self.blocks:
            x = block(x, neuron_mask)
        return self.final_norm(x), m

    def pool(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the mean over real tokens (and over T), or the first token."""
        x = self.coding.layout.to_tokens(x)
        if self.config.pooling == "cls":
            return x[0]
        w = m.to(x.dtype)[..., None]
        return (x * w).sum(0) / w.sum(0)

    def forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x, m = self.encode(input_ids, mask, segment_ids)
        return self.classifier(self.head_dropout(self.pool(x, m)))

    def neuron_parameters(self) -> list[nn.Parameter]:
        """The neurons' own parameters (decays, gates, thresholds), e.g. for a larger lr."""
        from bpsn_ext.bpsn_module import BPSN

        return [p for m in self.modules() if isinstance(m, BPSN) for p in m.parameters()]
