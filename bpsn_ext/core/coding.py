"""How a sequence meets the time steps of a spiking network: a coding, decided once.

* `IndividualCoding` (``"individual"``): one token per time step; the time axis *is* the
  token axis.  A sequence ``[L, B, D]`` runs as it is (``T = L``, one pass), the padding mask is
  ``[L, B]``.
* `RepeatCoding` (``"repeat"``): the whole sequence at each of ``T`` steps.  A sequence
  ``[L, B, D]`` runs as ``[T, B, L, D]`` (``T`` passes), the padding mask is ``[B, L]``.

A model, its attention and the energy estimator ask the coding object for the layout
(`present`, `neuron_mask`, `to_tokens`, `split_heads`, `merge_heads`, `key_mask`) and for the
schedule (`steps_from_data`, `passes`, `batch_size_of`) instead of testing its name.

Example:
    >>> coding = get_coding("repeat")
    >>> coding.present(torch.zeros(5, 2, 8), T=4).shape
    torch.Size([4, 2, 5, 8])
    >>> coding.passes(4), get_coding("individual").passes(4)
    (4, 1)
"""

from __future__ import annotations

import torch

__all__ = [
    "CODINGS",
    "INDIVIDUAL",
    "REPEAT",
    "Coding",
    "IndividualCoding",
    "RepeatCoding",
    "get_coding",
]


class Coding:
    """The layout and schedule of one coding (see the module docstring); stateless."""

    name: str = ""
    #: whether the steps are the data's leading axis (individual) or ``T`` repeats (repeat)
    steps_from_data: bool = False

    def passes(self, T: int) -> int:
        """Passes over the input for ``T`` steps (1 when the steps are the data's)."""
        raise NotImplementedError

    def batch_size_of(self, x: torch.Tensor | None) -> int:
        """The batch dimension of a model input ``x`` (1 without one)."""
        raise NotImplementedError

    def present(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """A token sequence ``[L, B, D]`` as the network's steps see it."""
        raise NotImplementedError

    def neuron_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The bool token mask ``[L, B]`` in the layout of the neurons."""
        raise NotImplementedError

    def to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output back to ``[L, B, D]`` (repeat coding: the mean over T)."""
        raise NotImplementedError

    def split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """Features into attention heads, the tokens second last: ``[..., H, L, d]``."""
        raise NotImplementedError

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `split_heads`."""
        raise NotImplementedError

    def key_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """The neurons' padding mask broadcast over attention scores ``[..., H, L_q, L_k]``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class IndividualCoding(Coding):
    """One token per step: ``[L, B, D]``, mask ``[L, B]``."""

    name = "individual"
    steps_from_data = True

    def passes(self, T: int) -> int:
        return 1

    def batch_size_of(self, x: torch.Tensor | None) -> int:
        return x.shape[1] if x is not None and x.dim() >= 2 else 1

    def present(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return x

    def neuron_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        L, B, D = x.shape  # -> [B, H, L, d]
        return x.reshape(L, B, heads, D // heads).permute(1, 2, 0, 3)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, H, L, d = x.shape
        return x.permute(2, 0, 1, 3).reshape(L, B, H * d)

    def key_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        return None if mask is None else mask.t()[:, None, None, :]  # [L, B] -> [B, 1, 1, L]


class RepeatCoding(Coding):
    """The sequence at each of ``T`` steps: ``[T, B, L, D]``, mask ``[B, L]``."""

    name = "repeat"

    def passes(self, T: int) -> int:
        return T

    def batch_size_of(self, x: torch.Tensor | None) -> int:
        return x.shape[0] if x is not None and x.dim() >= 1 else 1

    def present(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return x.permute(1, 0, 2).unsqueeze(0).expand(T, -1, -1, -1)  # [T, B, L, D]

    def neuron_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.t()  # [B, L]

    def to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(0).permute(1, 0, 2)  # [T, B, L, D] -> [L, B, D]

    def split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        T, B, L, D = x.shape  # -> [T, B, H, L, d]
        return x.reshape(T, B, L, heads, D // heads).permute(0, 1, 3, 2, 4)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        T, B, H, L, d = x.shape
        return x.permute(0, 1, 3, 2, 4).reshape(T, B, L, H * d)

    def key_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        return None if mask is None else mask[None, :, None, None, :]  # [1, B, 1, 1, L]


#: The codings by name.
CODINGS: dict[str, Coding] = {c.name: c for c in (IndividualCoding(), RepeatCoding())}


def get_coding(coding: str | Coding) -> Coding:
    """The coding named ``coding`` (a `Coding` is returned as it is).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(coding, Coding):
        return coding
    if coding not in CODINGS:
        raise ValueError(f"coding must be one of {tuple(CODINGS)}, got {coding!r}")
    return CODINGS[coding]


#: The two codings.
INDIVIDUAL: Coding = CODINGS["individual"]
REPEAT: Coding = CODINGS["repeat"]
