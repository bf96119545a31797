"""Images as sequences: scikit-learn's 8x8 digits as 64 steps of one pixel, plain or permuted.

Permutations (documented, seeded): ``"random"`` uses ``torch.randperm`` with a generator seeded
by ``permutation_seed``; ``"bitreversal"`` is the bit-reversal permutation that
state-spaces/s4 uses for psMNIST (for lengths that are powers of two).
"""

from __future__ import annotations

import torch

from bpsn_ext.data.digits import load_digits

__all__ = ["sequential_digits", "bitreversal_permutation", "PERMUTATIONS"]

PERMUTATIONS = (None, "random", "bitreversal")


def bitreversal_permutation(n: int) -> torch.Tensor:
    """Indices ``0..n-1`` in bit-reversed order; ``n`` must be a power of two."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"the bit-reversal permutation needs a power of two, got {n}")
    bits = n.bit_length() - 1
    return torch.tensor([int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(n)])


def sequential_digits(
    seed: int = 0, *, permutation: str | None = None, permutation_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train [64, N_train, 1]``, ``y_train``, ``x_test [64, N_test, 1]``, ``y_test``.

    Time-first: step t is pixel t in row-major order (or its permuted position).
    """
    if permutation not in PERMUTATIONS:
        raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
    x_train, y_train, x_test, y_test = load_digits(seed=seed)
    L = x_train.shape[1]
    if permutation == "random":
        order = torch.randperm(L, generator=torch.Generator().manual_seed(permutation_seed))
    elif permutation == "bitreversal":
        order = bitreversal_permutation(L)
    else:
        order = torch.arange(L)
    def as_seq(x: torch.Tensor) -> torch.Tensor:
        return x[:, order].T.unsqueeze(-1).contiguous()

    return as_seq(x_train), y_train, as_seq(x_test), y_test
