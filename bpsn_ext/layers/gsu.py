"""The Gated Spiking Unit (Stan & Rhodes 2024): a ternary two-route feature mixer.

Per token, for the real SSM output ``y`` ``[..., H]``::

    n = Tern(W) y + b1          identity route: ternary weights, exact linear path to y
    m = W' Tern(y) + b2         quantised route: ternary activations, full-precision weights
    o = GELU(n * m)

``Tern(v) = sign(v) * 1[|v| >= 0.15 max|v|]`` (:mod:`bpsn_ext.core.ternary`).  How gradients
pass the two ``Tern`` is not settled by the paper; ``grad_mode`` selects one of the two public
re-implementations (NSA, PRF) or the recommended default (a reconstruction, see
``docs/reconstruction.md``):

=============== ========== ================== ================ ===============
grad_mode       W and W'   Tern(W) backward   Tern(y) backward learnable scale
=============== ========== ================== ================ ===============
"default"       separate   straight-through   none             no
"nsa_shared"    one W      none               none             no
"prf_surrogate" separate   ATan at +-delta    ATan at +-delta  yes (both Tern)
=============== ========== ================== ================ ===============

(``weight_grad``, ``act_grad`` and ``learn_scale`` override single entries.)  In every mode each
weight receives a gradient: with one shared ``W`` it learns through the ``W Tern(y)`` route;
separate matrices need a gradient through ``Tern(W)``, so ``weight_grad="none"`` with separate
matrices is refused.  ``ternary=False`` gives the bilinear GLU ``GELU((W y + b1) * (W' y + b2))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.core.checks import check_float
from bpsn_ext.core.ternary import TERNARY_GRADS, Ternary
from bpsn_ext.layers._block import SSMBlock
from bpsn_ext.layers._common import check_choice, check_d_model

__all__ = ["GSU", "GSUMixer", "GRAD_MODES", "ACT_DELTAS"]

GRAD_MODES = ("default", "nsa_shared", "prf_surrogate")
ACT_DELTAS = ("token", "tensor")
_MODE_DEFAULTS = {  # (shared W, weight_grad, act_grad, learn_scale)
    "default": (False, "ste", "none", False),
    "nsa_shared": (True, "none", "none", False),
    "prf_surrogate": (False, "surrogate", "surrogate", True),
}


def _linear_init(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Kaiming-uniform (a = sqrt 5) weights and U(+-1/sqrt(fan_in)) biases (nn.Linear's rule)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.uniform_(bias, -bound, bound)


class GSUMixer(nn.Module):
    """The per-token GSU mixer ``o = GELU((Tern(W) y + b1) * (W' Tern(y) + b2))``, ``[..., H]``.

    Args:
        d_model: channels H (W, W' are H x H).
        grad_mode: ``"default"``, ``"nsa_shared"`` or ``"prf_surrogate"`` (module docstring).
        ternary: ``False`` replaces both ``Tern`` by the identity (bilinear GLU).
        factor: ternarisation threshold factor (``delta = factor * max|.|``), default 0.15.
        act_delta: ``"token"`` (one ``max|y|`` per token's feature vector, default) or
            ``"tensor"`` (one ``max|y|`` over the real tokens of the whole input).
        weight_grad / act_grad: override the backward of ``Tern(W)`` / ``Tern(y)``
            (``"none"``, ``"ste"``, ``"surrogate"``).
        learn_scale: override whether each ``Tern`` is multiplied by a learnable positive scale.
        surrogate: surrogate of the ``"surrogate"`` backward, default ``ATan(alpha=2)``.
        gelu: apply the output GELU (default ``True``).
    """

    def __init__(
        self,
        d_model: int,
        *,
        grad_mode: str = "default",
        ternary: bool = True,
        factor: float = 0.15,
        act_delta: str = "token",
        weight_grad: str | None = None,
        act_grad: str | None = None,
        learn_scale: bool | None = None,
        surrogate: Callable | str | None = None,
        gelu: bool = True,
    ) -> None:
        super().__init__()
        check_d_model(d_model)
        check_choice("grad_mode", grad_mode, GRAD_MODES)
        check_choice("act_delta", act_delta, ACT_DELTAS)
        check_float("factor", factor, positive=True)
        for name, flag in (("ternary", ternary), ("gelu", gelu)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be bool, got {type(flag).__name__}")
        shared, w_grad, a_grad, scale = _MODE_DEFAULTS[grad_mode]
        w_grad = w_grad if weight_grad is None else check_choice(
            "weight_grad", weight_grad, TERNARY_GRADS)
        a_grad = a_grad if act_grad is None else check_choice("act_grad", act_grad, TERNARY_GRADS)
        scale = scale if learn_scale is None else learn_scale
        if ternary and not shared and w_grad == "none":
            raise ValueError(
                f"grad_mode={grad_mode!r} uses separate W and W', so weight_grad='none' would "
                "leave W without any gradient (Tern(W) is its only path); use 'ste' or "
                "'surrogate', or grad_mode='nsa_shared' (one W that learns through W Tern(y))"
            )
        self.d_model, self.grad_mode, self.ternary = d_model, grad_mode, ternary
        self.shared, self.act_delta, self.gelu = shared, act_delta, gelu
        self.weight1 = nn.Parameter(torch.empty(d_model, d_model))
        self.bias1 = nn.Parameter(torch.empty(d_model))
        _linear_init(self.weight1, self.bias1)
        self.bias2 = nn.Parameter(torch.empty(d_model))
        if shared:
            self.register_parameter("weight2", None)
            bound = 1.0 / math.sqrt(d_model)
            nn.init.uniform_(self.bias2, -bound, bound)
        else:
            self.weight2 = nn.Parameter(torch.empty(d_model, d_model))
            _linear_init(self.weight2, self.bias2)
        if ternary:
            self.tern_weight = Ternary(
                factor, dim=None, grad=w_grad, surrogate=surrogate, learn_scale=scale
            )
            self.tern_act = Ternary(
                factor, dim=-1 if act_delta == "token" else None, grad=a_grad,
                surrogate=surrogate, learn_scale=scale,
            )

    def routes(
        self, y: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(n, m, Tern(y))`` for ``y`` ``[..., H]``; ``valid`` (bool ``[...]``): real tokens."""
        if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.dim() < 1 or (
            y.shape[-1] != self.d_model
        ):
            got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"GSUMixer expects a float tensor [..., {self.d_model}], got {got}")
        W2 = self.weight1 if self.shared else self.weight2
        if not self.ternary:
            return F.linear(y, self.weight1, self.bias1), F.linear(y, W2, self.bias2), y
        keep = None if valid is None else valid[..., None]
        ty = self.tern_act(y, keep if self.act_delta == "tensor" else None)
        n = F.linear(y, self.tern_weight(self.weight1), self.bias1)
        m = F.linear(ty, W2, self.bias2)
        return n, m, ty

    def forward(self, y: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        n, m, _ = self.routes(y, valid)
        return F.gelu(n * m) if self.gelu else n * m

    # -- energy accounting (bpsn_ext.energy.estimate) ----------------------------------------
    energy_exclusive = True  # covers the two Ternary modules

    def energy_ops(self, inputs, output, kwargs):
        """``Tern(W) y`` (1 - z_W) H^2 AC + ``W' Tern(y)`` R_t H^2 AC + Tern(y) compares +
        biases + product + GELU, per real token.  See :mod:`bpsn_ext.energy.ssm`."""
        from bpsn_ext.energy.ssm import gsu_mixer

        return gsu_mixer(self, inputs, output, kwargs)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, grad_mode={self.grad_mode!r}, ternary={self.ternary}, "
            f"shared={self.shared}, act_delta={self.act_delta!r}, gelu={self.gelu}"
        )


class GSU(SSMBlock):
    """Binary S4D + GSU block ``[T, N, H]`` -> ``[T, N, H]``::

        y = S4D(u);  o = GSUMixer(dropout(y));  out = norm(dropout(o) + u)   (post-norm default)

    The SSM output stays real (no Heaviside); the ternary ``Tern(y)`` of the mixer is the
    quantised activation.  Arguments: those of :class:`GSUMixer` (``grad_mode``, ``ternary``,
    ``factor``, ``act_delta``, ``weight_grad``, ``act_grad``, ``learn_scale``, ``surrogate``)
    and of the block (``d_state``, ``dropout``, ``norm``, ``prenorm``, ``residual``, ``dt_min``,
    ``dt_max``, ``bidirectional``; see :class:`~bpsn_ext.layers.BinaryS4D`).

    With ``act_delta="tensor"`` the threshold depends on the whole sequence, so the
    step-by-step form equals the parallel form only with the default ``act_delta="token"``.
    :meth:`forward_with_activation` also returns ``Tern(y)``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        grad_mode: str = "default",
        ternary: bool = True,
        factor: float = 0.15,
        act_delta: str = "token",
        weight_grad: str | None = None,
        act_grad: str | None = None,
        learn_scale: bool | None = None,
        surrogate: Callable | str | None = None,
        dropout: float = 0.0,
        norm: str = "layer",
        prenorm: bool = False,
        residual: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        bidirectional: bool = False,
    ) -> None:
        super().__init__(
            d_model, d_state, dt_min=dt_min, dt_max=dt_max, bidirectional=bidirectional,
            dropout=dropout, norm=norm, prenorm=prenorm, residual=residual,
        )
        self.inner_dropout = nn.Dropout(dropout)
        self.mixer = GSUMixer(
            d_model, grad_mode=grad_mode, ternary=ternary, factor=factor, act_delta=act_delta,
            weight_grad=weight_grad, act_grad=act_grad, learn_scale=learn_scale,
            surrogate=surrogate,
        )

    def _mix(self, y, valid):
        n, m, ty = self.mixer.routes(self.inner_dropout(y), valid)
        return F.gelu(n * m), ty

    # -- energy accounting (bpsn_ext.energy.estimate) ----------------------------------------
    energy_exclusive = True  # covers the S4D, norm and the mixer's Ternary modules

    def energy_ops(self, inputs, output, kwargs):
        """S4D + the mixer's ops (with the GELU) + residual + norm, on the real steps.  See
        :mod:`bpsn_ext.energy.ssm`."""
        from bpsn_ext.energy.ssm import gsu

        return gsu(self, inputs, output, kwargs)
