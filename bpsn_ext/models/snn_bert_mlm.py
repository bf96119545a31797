"""Masked-language-model pretraining of ``bpsn_ext.models.SNNBert`` (and its ANN twin).

``SNNBertForMaskedLM``: the SNNBert encoder (embeddings, blocks, final LayerNorm; no pooling
or classifier) and BERT's MLM head (``Linear -> GELU -> LayerNorm -> Linear`` to the
vocabulary, the output weights tied to the token embeddings).  The embedding tables start
from BERT's N(0, 0.02) (``nn.Embedding``'s N(0, 1) would make the tied logits start with a
standard deviation of about sqrt(width), and the loss far above log(vocabulary)).
``mask_tokens`` applies BERT's corruption (of ``mask_prob`` of the real, non-special tokens:
80 % ``[MASK]``, 10 % a random token, 10 % unchanged).  ``encoder_state`` / ``load_encoder``
move the encoder weights between an MLM run and a classifier (``train glue --init-from RUN_DIR``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.models.snn_bert import SNNBert, SNNBertConfig

__all__ = ["SNNBertForMaskedLM", "mask_tokens", "encoder_state", "load_encoder", "ENCODER_PREFIXES"]

ENCODER_PREFIXES = ("embeddings.", "blocks.", "final_norm.")


class SNNBertForMaskedLM(nn.Module):
    """SNNBert encoder + tied MLM head.

    ``forward(input_ids, mask=None, segment_ids=None, positions=None)``: logits over the
    vocabulary ``[L, B, V]``, or ``[M, V]`` at the bool ``positions`` ``[L, B]`` only (the
    masked tokens; cheaper).  Time-first inputs as in ``SNNBert``.

    Example: ``SNNBertForMaskedLM(SNNBertConfig(vocab_size=100, layers=1, width=16, heads=2,
    ffn_width=32))(torch.randint(5, 100, (7, 2))).shape == (7, 2, 100)``.
    """

    def __init__(self, config: SNNBertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = SNNBert(config)
        self.bert.classifier = nn.Identity()  # unused here (DDP needs every parameter used)
        for table in (
            self.bert.embeddings.tokens,
            self.bert.embeddings.positions,
            self.bert.embeddings.segments,
        ):
            nn.init.normal_(table.weight, std=0.02)  # BERT's init: tied logits start small
        D = config.width
        self.transform = nn.Linear(D, D)
        self.transform_norm = nn.LayerNorm(D)
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))

    def hidden(self, input_ids, mask=None, segment_ids=None) -> torch.Tensor:
        """The encoder output per token, ``[L, B, D]`` (repeat coding: the mean over T)."""
        x, _ = self.bert.encode(input_ids, mask, segment_ids)
        return self.bert.coding.layout.to_tokens(x)

    def forward(self, input_ids, mask=None, segment_ids=None, positions=None) -> torch.Tensor:
        h = self.hidden(input_ids, mask, segment_ids)
        if positions is not None:
            h = h[positions]
        h = self.transform_norm(F.gelu(self.transform(h)))
        return F.linear(h, self.bert.embeddings.tokens.weight, self.decoder_bias)

    def neuron_parameters(self) -> list[nn.Parameter]:
        return self.bert.neuron_parameters()


def mask_tokens(
    ids: torch.Tensor,
    real: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: tuple[int, ...],
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: ``(corrupted_ids, positions)``; ``positions`` (bool, ``ids.shape``)
    marks the chosen tokens (at least one per batch), whose original ids are the targets.

    Args: ``ids`` ``[L, B]``; ``real`` bool ``[L, B]`` (True = not padding); ``special_ids``
    ([CLS], [SEP], [PAD]) are never chosen; random replacements come from the whole vocabulary.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    g = {"generator": generator} if generator is not None else {}
    device = ids.device
    candidates = real.clone()
    for s in special_ids:
        candidates &= ids != s
    u = torch.rand(ids.shape, **g).to(device)
    chosen = candidates & (u < mask_prob)
    if not bool(chosen.any()) and bool(candidates.any()):
        first = torch.nonzero(candidates)[0]
        chosen[first[0], first[1]] = True
    how = torch.rand(ids.shape, **g).to(device)
    random_ids = torch.randint(0, vocab_size, ids.shape, **g).to(device)
    out = ids.clone()
    out[chosen & (how < 0.8)] = mask_id
    swap = chosen & (how >= 0.8) & (how < 0.9)
    out[swap] = random_ids[swap]
    return out, chosen


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder tensors (embeddings, blocks, final norm) of an ``SNNBert`` or
    ``SNNBertForMaskedLM`` state dict, named as in ``SNNBert``."""
    out = {}
    for name, tensor in state.items():
        key = name[5:] if name.startswith("bert.") else name
        if key.startswith(ENCODER_PREFIXES):
            out[key] = tensor
    return out


def load_encoder(model: SNNBert, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy the encoder tensors of ``state`` into ``model``; every encoder tensor of ``model``
    must be there with the same shape.  Returns the copied names."""
    source = encoder_state(state)
    own = encoder_state(model.state_dict())
    missing = sorted(set(own) - set(source))
    if missing:
        raise ValueError(
            f"the source lacks {len(missing)} encoder tensors of the model, e.g. "
            f"{missing[:3]}: different coding or number of layers?"
        )
    bad = [k for k in own if source[k].shape != own[k].shape]
    if bad:
        raise ValueError(
            f"shape mismatch for {bad[:3]}: {list(source[bad[0]].shape)} vs "
            f"{list(own[bad[0]].shape)}"
        )
    model.load_state_dict(source, strict=False)
    return sorted(own)
