"""The check of a language model's input: token ids inside the vocabulary."""

from __future__ import annotations

import torch

__all__ = ["check_token_ids"]


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Integer ``ids`` ``[L, N]`` must lie in ``0 .. vocab_size - 1``; else ValueError naming
    the first bad value, its position and sample."""
    if ids.numel():
        bad = (ids < 0) | (ids >= vocab_size)
        if bool(bad.any()):
            pos, sample = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name}[{pos}, {sample}] = {int(ids[pos, sample])} (sample {sample}, position "
                f"{pos}) is outside the vocabulary 0..{vocab_size - 1}; expected token ids of "
                "the tokenizer the model was built for"
            )
    return ids
