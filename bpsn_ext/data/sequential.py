"""Images as sequences: scikit-learn's 8x8 digits as 64 steps of one pixel, plain or permuted.

Permutations (documented, seeded): ``"random"`` uses ``torch.randperm`` with a generator seeded
by ``permutation_seed``; ``"bitreversal"`` is the bit-reversal permutation that
state-spaces/s4 uses for psMNIST.  For a length that is not a power of two (784) s4 bit-reverses
the indices of the next power of two (1024) and keeps those below the length, in order:
``bitreversal_permutation(784, pad=True)``.  `permutation` builds either by name.
"""

from __future__ import annotations

import torch

from bpsn_ext.data.digits import load_digits

__all__ = ["sequential_digits", "bitreversal_permutation", "permutation", "PERMUTATIONS"]

PERMUTATIONS = (None, "random", "bitreversal")


def bitreversal_permutation(n: int, *, pad: bool = False) -> torch.Tensor:
    """Indices ``0..n-1`` in bit-reversed order; ``n`` must be a power of two unless ``pad``
    (then: the bit-reversal of the next power of two, entries ``>= n`` dropped; s4's rule)."""
    if n < 1:
        raise ValueError(f"the bit-reversal permutation needs n >= 1, got {n}")
    if n & (n - 1):
        if not pad:
            raise ValueError(
                f"the bit-reversal permutation needs a power of two, got {n} "
                "(pad=True follows s4 for other lengths)"
            )
        full = bitreversal_permutation(1 << (n - 1).bit_length())
        return full[full < n]
    bits = n.bit_length() - 1
    return torch.tensor([int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(n)])


def permutation(n: int, kind: str | None, seed: int = 0) -> torch.Tensor:
    """The step order of a sequence of length ``n``: ``None``/``"none"`` (identity),
    ``"bitreversal"`` (padded for non powers of two, as s4) or ``"random"`` (seeded)."""
    if kind in (None, "none"):
        return torch.arange(n)
    if kind == "bitreversal":
        return bitreversal_permutation(n, pad=True)
    if kind == "random":
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    raise ValueError(f"permutation must be one of none, random, bitreversal; got {kind!r}")


_permutation = permutation


def sequential_digits(
    seed: int = 0, *, permutation: str | None = None, permutation_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train [64, N_train, 1]``, ``y_train``, ``x_test [64, N_test, 1]``, ``y_test``.

    Time-first: step t is pixel t in row-major order (or its permuted position).
    """
    if permutation not in PERMUTATIONS and permutation != "none":
        raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
    x_train, y_train, x_test, y_test = load_digits(seed=seed)
    order = _permutation(x_train.shape[1], permutation, permutation_seed)

    def as_seq(x: torch.Tensor) -> torch.Tensor:
        return x[:, order].T.unsqueeze(-1).contiguous()

    return as_seq(x_train), y_train, as_seq(x_test), y_test
