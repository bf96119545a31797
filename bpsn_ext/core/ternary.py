"""Ternarisation ``Tern(x) = sign(x) * 1[|x| >= delta]`` with ``delta = factor * max|x|``.

Used by the Gated Spiking Unit (Stan & Rhodes 2024) for both weights and activations; the
factor 0.15 is common to the public re-implementations.  Forward values are exactly
``{-1, 0, +1}`` (times an optional learnable positive scale).  The backward is a choice:

* ``"none"``: no gradient at all (sign and comparison are constants to autograd);
* ``"ste"``: straight-through, ``d Tern(x) / dx = 1``;
* ``"surrogate"``: ``Tern(x) = Theta(x - delta) - Theta(-x - delta)`` with a surrogate spike
  for each Heaviside, so ``d/dx = g'(x - delta) + g'(-x - delta)`` (ATan(2) by default).

The threshold ``delta`` is a constant (detached) by default.  With ``detach=False`` it stays
in the graph, as in the PRF code: ``d delta / dx`` is ``factor * sign(x)`` at the element of
largest magnitude (ties: the one ``amax`` routes the gradient to), so that element also receives
``-(dTern/d delta) * factor``.

A learnable scale carries the optimiser hint ``_optim = {"lr": 0.001, "weight_decay": 0.0}``
(the state-spaces/s4 convention, PRF's values), honoured by
`bpsn_ext.optim.ssm_param_groups` and by state-spaces' own ``setup_optimizer``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bpsn_ext.surrogate import ATan, resolve
from bpsn_ext.util.arguments import check_float

__all__ = ["TERNARY_GRADS", "SCALE_OPTIM", "ternary_delta", "ternarize", "Ternary"]

TERNARY_GRADS = ("none", "ste", "surrogate")
SCALE_OPTIM = {"lr": 0.001, "weight_decay": 0.0}  # the learnable scale's optimiser hint


def ternary_delta(
    x: torch.Tensor,
    factor: float = 0.15,
    dim: int | None = None,
    valid: torch.Tensor | None = None,
    detach: bool = True,
) -> torch.Tensor:
    """``factor * max|x|``: over the whole tensor (``dim=None``, a 0-dim result) or along
    ``dim`` (kept as a size-1 dim).  ``valid`` (bool, broadcastable to ``x``) restricts the
    maximum to real positions, so padding cannot move the threshold.  ``detach=False`` keeps
    the threshold in the autograd graph (PRF)."""
    mag = (x.detach() if detach else x).abs()
    if valid is not None:
        mag = torch.where(valid, mag, 0.0)  # NaN padding cannot move it either
    if dim is None:
        return factor * mag.amax()
    return factor * mag.amax(dim=dim, keepdim=True)


def ternarize(
    x: torch.Tensor,
    delta: torch.Tensor | float,
    grad: str = "none",
    surrogate: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``sign(x) * 1[|x| >= delta]`` in the dtype of ``x``, with the backward ``grad`` (see the
    module docstring).  ``surrogate`` (for ``"surrogate"``) defaults to ``ATan(alpha=2)``."""
    if grad not in TERNARY_GRADS:
        raise ValueError(f"grad must be one of {TERNARY_GRADS}, got {grad!r}")
    if grad == "surrogate":
        sg = surrogate if surrogate is not None else ATan()
        # fires at >= 0: x >= delta -> +1, x <= -delta -> -1 (delta > 0 unless x == 0)
        return sg(x - delta) - sg(-x - delta)
    hard = (torch.sign(x) * (x.abs() >= delta)).to(x.dtype).detach()
    if grad == "none":
        return hard
    return hard + (x - x.detach())  # straight-through; adding an exact 0 keeps the values


class Ternary(nn.Module):
    """``Tern(x)`` as a module, optionally times a learnable scale ``exp(log_scale)`` (init 1).

    Args:
        factor: ``delta = factor * max|x|`` (Python float, default 0.15).
        dim: ``None`` (max over the whole tensor: weights) or a dim (e.g. ``-1``: one threshold
            per token's feature vector).
        grad: ``"none"``, ``"ste"`` or ``"surrogate"``.
        surrogate: for ``grad="surrogate"``: a name, bpsn_ext / SpikingJelly surrogate object or
            snnTorch ``spike_grad``; default ``ATan(alpha=2)``.
        learn_scale: multiply by ``exp(log_scale)``, a learnable scalar (optimiser hint
            ``_optim = SCALE_OPTIM``).
        detach: treat the threshold as a constant (default) or keep it in the graph (PRF).

    Example::

        t = Ternary(0.15, grad="surrogate", learn_scale=True, detach=False)  # PRF's spikeGate
        out = t(torch.randn(8, 4))   # values in {-1, 0, +1} * exp(log_scale)
    """

    def __init__(
        self,
        factor: float = 0.15,
        *,
        dim: int | None = None,
        grad: str = "none",
        surrogate: Callable | str | None = None,
        learn_scale: bool = False,
        detach: bool = True,
    ) -> None:
        super().__init__()
        check_float("factor", factor, positive=True)
        if grad not in TERNARY_GRADS:
            raise ValueError(f"grad must be one of {TERNARY_GRADS}, got {grad!r}")
        for name, flag in (("learn_scale", learn_scale), ("detach", detach)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be bool, got {type(flag).__name__}")
        self.factor, self.dim, self.grad, self.detach = factor, dim, grad, detach
        self.surrogate_function = resolve(surrogate, default=ATan) if grad == "surrogate" else None
        if learn_scale:
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("log_scale", None)
        self._tag_optim()

    def _tag_optim(self) -> None:
        if self.log_scale is not None:
            self.log_scale._optim = dict(SCALE_OPTIM)

    def __setstate__(self, state: dict) -> None:
        """Unpickling and ``copy.deepcopy`` (which drops parameter attributes) keep the hint."""
        super().__setstate__(state)
        self.__dict__.setdefault("detach", True)  # pickled before the option existed
        self._tag_optim()

    @property
    def scale(self) -> torch.Tensor | None:
        return None if self.log_scale is None else self.log_scale.exp()

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Ternary values of ``x`` (same shape); ``valid`` as in `ternary_delta`."""
        delta = ternary_delta(x, self.factor, self.dim, valid, self.detach)
        out = ternarize(x, delta, self.grad, self.surrogate_function)
        return out if self.log_scale is None else out * self.scale.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"factor={self.factor}, dim={self.dim}, grad={self.grad!r}, "
            f"learn_scale={self.log_scale is not None}, detach={self.detach}"
        )
