"""What kind of values a tensor carries: ``"spike"``, ``"ternary"`` or ``"real"``.

* ``spike``: every value is 0 or the same positive scale ``s`` (``{0, 1}`` up to a scale), or
  the tensor is ``bool``.  An all-zero tensor is a spike tensor (it costs no AC).
* ``ternary``: every value is in ``{-s, 0, s}`` with at least one ``-s``.
* ``real``: anything else.

A spike or ternary operand turns a multiply-accumulate into an accumulate that only happens
for its nonzero entries: ``AC = nonzero fraction x dense MACs``.  A constant real tensor (every
value equal) is, by this rule, a spike tensor with rate 1; override the detection with
``estimate(..., input_kind=...)`` where that matters.
"""

from __future__ import annotations

import contextvars

import torch

__all__ = ["KINDS", "classify", "nonzero_rate", "kind_of", "override_kind"]

KINDS = ("real", "spike", "ternary")

# the kind forced for the layer being counted (set by ``estimate`` around each counter call)
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bpsn_energy_input_kind", default=None
)


def classify(x: torch.Tensor, rtol: float = 1e-5) -> str:
    """``"spike"``, ``"ternary"`` or ``"real"`` (see the module docstring)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"classify needs a tensor, got {type(x).__name__}")
    if x.dtype == torch.bool:
        return "spike"
    if x.is_complex():
        return "real"
    x = x.detach()
    nz = x[x != 0]
    if nz.numel() == 0:
        return "spike"
    mag = nz.abs()
    if not torch.isfinite(mag).all():
        return "real"
    scale = mag.max()
    if not bool(((mag - scale).abs() <= rtol * scale).all()):
        return "real"
    return "spike" if bool((nz > 0).all()) else "ternary"


def nonzero_rate(x: torch.Tensor) -> float:
    """Fraction of nonzero entries (0 for an empty tensor)."""
    n = x.numel()
    return float(torch.count_nonzero(x.detach())) / n if n else 0.0


def kind_of(x: torch.Tensor) -> str:
    """The kind of ``x``, or the kind forced for the layer currently being counted."""
    forced = _override.get()
    return forced if forced is not None else classify(x)


class override_kind:
    """Context manager forcing `kind_of` to return ``kind`` (``None``: detect)."""

    def __init__(self, kind: str | None) -> None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"input kind must be one of {KINDS} or None, got {kind!r}")
        self.kind = kind
        self._token: contextvars.Token | None = None

    def __enter__(self) -> override_kind:
        self._token = _override.set(self.kind)
        return self

    def __exit__(self, *exc) -> None:
        _override.reset(self._token)
