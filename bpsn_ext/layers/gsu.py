"""The Gated Spiking Unit (Stan & Rhodes 2024): a ternary two-route feature mixer.

Per token, for the real SSM output ``y`` ``[..., H]``::

    n = Tern(W) y + b1          identity route: ternary weights, exact linear path to y
    m = W' Tern(y) + b2         quantised route: ternary activations, full-precision weights
    o = GELU(n * m)

``Tern(v) = sign(v) * 1[|v| >= 0.15 max|v|]`` (`bpsn_ext.core.ternary`).  How gradients
pass the two ``Tern`` is not settled by the paper; ``grad_mode`` selects one of the two public
re-implementations (NSA, PRF), our own surrogate rule, or the recommended default (a
reconstruction, see ``docs/reconstruction.md``):

=============== ======== ============ ============ ===== ========= ========= =====
grad_mode       W, W'    Tern(W) bwd  Tern(y) bwd  scale act_delta threshold GELU
=============== ======== ============ ============ ===== ========= ========= =====
"default"       separate STE          none         no    token     detached  yes
"nsa_shared"    one W    none         none         no    token     detached  yes
"surrogate"     separate ATan at +-d  ATan at +-d  yes   token     detached  yes
"prf_surrogate" separate ATan at +-d  ATan at +-d  yes   tensor    in graph  no
=============== ======== ============ ============ ===== ========= ========= =====

``"prf_surrogate"`` reproduces the PRF code's ``GSU``/``spikeGate`` in forward and gradients:
one threshold ``0.15 max|y|`` over the whole input tensor, not detached (the element of largest
magnitude gets the threshold's gradient), a learnable scale ``exp(log_scale)`` on each
``Tern`` (init 1, optimiser hint lr 1e-3 and no weight decay) and no output GELU
(``o = n * m``).  ``"surrogate"`` is our own rule with the same surrogates but a detached
per-token threshold, so it streams exactly.  (``weight_grad``, ``act_grad``, ``learn_scale``,
``act_delta``, ``detach_delta`` and ``gelu`` override single entries.)  In every mode each
weight receives a gradient: with one shared ``W`` it learns through the ``W Tern(y)`` route;
separate matrices need a gradient through ``Tern(W)``, so ``weight_grad="none"`` with separate
matrices is refused.  ``ternary=False`` gives the bilinear GLU ``GELU((W y + b1) * (W' y + b2))``.

Name map to the PRF code: its ``pro_linear2`` (ternarised weight, real input) is our
``weight1``/``bias1``; its ``pro_linear1`` (real weight, ternary input) is our
``weight2``/``bias2``; its ``ternay1.log_w``/``ternay2.log_w`` are our
``tern_act.log_scale``/``tern_weight.log_scale``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.core.channel_major import sequence_linear
from bpsn_ext.core.ternary import TERNARY_GRADS, Ternary
from bpsn_ext.layers._block import SSMBlock
from bpsn_ext.layers._common import check_choice, check_d_model
from bpsn_ext.util.arguments import check_float

__all__ = ["GSU", "GSUMixer", "GRAD_MODES", "ACT_DELTAS"]

GRAD_MODES = ("default", "nsa_shared", "surrogate", "prf_surrogate")
ACT_DELTAS = ("token", "tensor")
# shared W, weight_grad, act_grad, learn_scale, act_delta, detach_delta, gelu
_MODE_DEFAULTS = {
    "default": (False, "ste", "none", False, "token", True, True),
    "nsa_shared": (True, "none", "none", False, "token", True, True),
    "surrogate": (False, "surrogate", "surrogate", True, "token", True, True),
    "prf_surrogate": (False, "surrogate", "surrogate", True, "tensor", False, False),
}
_OVERRIDES = ("weight_grad", "act_grad", "learn_scale", "act_delta", "detach_delta", "gelu")


def _settings(grad_mode: str, overrides: dict) -> dict:
    """The preset of ``grad_mode`` with the non-``None`` overrides applied (and checked)."""
    check_choice("grad_mode", grad_mode, GRAD_MODES)
    shared, *values = _MODE_DEFAULTS[grad_mode]
    out = {"shared": shared, **dict(zip(_OVERRIDES, values))}
    for name, value in overrides.items():
        if value is None:
            continue
        if name in ("weight_grad", "act_grad"):
            check_choice(name, value, TERNARY_GRADS)
        elif name == "act_delta":
            check_choice(name, value, ACT_DELTAS)
        elif not isinstance(value, bool):
            raise TypeError(f"{name} must be bool or None, got {type(value).__name__}")
        out[name] = value
    return out


def _linear_init(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Kaiming-uniform (a = sqrt 5) weights and U(+-1/sqrt(fan_in)) biases (nn.Linear's rule)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    bound = 1.0 / math.sqrt(weight.shape[1])
    nn.init.uniform_(bias, -bound, bound)


class GSUMixer(nn.Module):
    """The per-token GSU mixer ``o = GELU((Tern(W) y + b1) * (W' Tern(y) + b2))``, ``[..., H]``.

    Args:
        d_model: channels H (W, W' are H x H).
        grad_mode: ``"default"``, ``"nsa_shared"``, ``"surrogate"`` or ``"prf_surrogate"``
            (module docstring); it sets the defaults of the overrides below.
        ternary: ``False`` replaces both ``Tern`` by the identity (bilinear GLU).
        factor: ternarisation threshold factor (``delta = factor * max|.|``), default 0.15.
        act_delta: ``"token"`` (one ``max|y|`` per token's feature vector) or ``"tensor"``
            (one ``max|y|`` over the real tokens of the whole input).
        weight_grad / act_grad: override the backward of ``Tern(W)`` / ``Tern(y)``
            (``"none"``, ``"ste"``, ``"surrogate"``).
        learn_scale: override whether each ``Tern`` is multiplied by a learnable positive scale.
        detach_delta: override whether the thresholds are constants to autograd.
        surrogate: surrogate of the ``"surrogate"`` backward, default ``ATan(alpha=2)``.
        gelu: override whether the output GELU is applied (``o = n * m`` without it).

    Example::

        mix = GSUMixer(64, grad_mode="prf_surrogate")   # the PRF code's GSU
        o = mix(torch.randn(100, 8, 64))
    """

    fused: bool = True  # channel-major matmuls; False: F.linear (`bpsn_ext.layers.set_fused`)

    def __init__(
        self,
        d_model: int,
        *,
        grad_mode: str = "default",
        ternary: bool = True,
        factor: float = 0.15,
        act_delta: str | None = None,
        weight_grad: str | None = None,
        act_grad: str | None = None,
        learn_scale: bool | None = None,
        detach_delta: bool | None = None,
        surrogate: Callable | str | None = None,
        gelu: bool | None = None,
    ) -> None:
        super().__init__()
        check_d_model(d_model)
        check_float("factor", factor, positive=True)
        if not isinstance(ternary, bool):
            raise TypeError(f"ternary must be bool, got {type(ternary).__name__}")
        cfg = _settings(
            grad_mode,
            dict(
                weight_grad=weight_grad,
                act_grad=act_grad,
                learn_scale=learn_scale,
                act_delta=act_delta,
                detach_delta=detach_delta,
                gelu=gelu,
            ),
        )
        shared, w_grad, act_delta = cfg["shared"], cfg["weight_grad"], cfg["act_delta"]
        if ternary and not shared and w_grad == "none":
            raise ValueError(
                f"grad_mode={grad_mode!r} uses separate W and W', so weight_grad='none' would "
                "leave W without any gradient (Tern(W) is its only path); use 'ste' or "
                "'surrogate', or grad_mode='nsa_shared' (one W that learns through W Tern(y))"
            )
        self.d_model, self.grad_mode, self.ternary = d_model, grad_mode, ternary
        self.shared, self.act_delta, self.gelu = shared, act_delta, cfg["gelu"]
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
            common = dict(
                surrogate=surrogate, learn_scale=cfg["learn_scale"], detach=cfg["detach_delta"]
            )
            self.tern_weight = Ternary(factor, dim=None, grad=w_grad, **common)
            self.tern_act = Ternary(
                factor, dim=-1 if act_delta == "token" else None, grad=cfg["act_grad"], **common
            )

    def routes(
        self, y: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(n, m, Tern(y))`` for ``y`` ``[..., H]``; ``valid`` (bool ``[...]``): real tokens."""
        if (
            not isinstance(y, torch.Tensor)
            or not y.is_floating_point()
            or y.dim() < 1
            or (y.shape[-1] != self.d_model)
        ):
            got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"GSUMixer expects a float tensor [..., {self.d_model}], got {got}")
        W2 = self.weight1 if self.shared else self.weight2

        def lin(x, w, b):  # F.linear, without a copy for a channel-major y [T, N, H]
            return sequence_linear(x, w, b, self.fused)

        if not self.ternary:
            return lin(y, self.weight1, self.bias1), lin(y, W2, self.bias2), y
        keep = None if valid is None else valid[..., None]
        ty = self.tern_act(y, keep if self.act_delta == "tensor" else None)
        n = lin(y, self.tern_weight(self.weight1), self.bias1)
        m = lin(ty, W2, self.bias2)
        return n, m, ty

    def combine(self, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The output ``GELU(n * m)`` (``n * m`` with ``gelu=False``)."""
        return F.gelu(n * m) if self.gelu else n * m

    def forward(self, y: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        n, m, _ = self.routes(y, valid)
        return self.combine(n, m)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, grad_mode={self.grad_mode!r}, ternary={self.ternary}, "
            f"shared={self.shared}, act_delta={self.act_delta!r}, gelu={self.gelu}"
        )


class GSU(SSMBlock):
    """Binary S4D + GSU block ``[T, N, H]`` -> ``[T, N, H]``::

        y = S4D(u);  o = GSUMixer(dropout(y));  out = norm(dropout(o) + u)   (post-norm default)

    The SSM output stays real (no Heaviside); the ternary ``Tern(y)`` of the mixer is the
    quantised activation.  Arguments: those of `GSUMixer` (``grad_mode``, ``ternary``,
    ``factor``, ``act_delta``, ``weight_grad``, ``act_grad``, ``learn_scale``,
    ``detach_delta``, ``gelu``, ``surrogate``) and of the block (``d_state``, ``dropout``,
    ``tied_dropout``, ``norm``, ``prenorm``, ``residual``, ``dt_min``, ``dt_max``,
    ``bidirectional``, ``bidirectional_convention``; see `BinaryS4D`).
    ``gelu=False`` (the default of ``grad_mode="prf_surrogate"``) gives ``o = n * m``.

    With ``act_delta="tensor"`` (the default of ``"prf_surrogate"``) the threshold depends on
    the whole sequence, so the step-by-step form equals the parallel form only with a per-token
    threshold.
    `forward_with_activation` also returns ``Tern(y)``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        grad_mode: str = "default",
        ternary: bool = True,
        factor: float = 0.15,
        act_delta: str | None = None,
        weight_grad: str | None = None,
        act_grad: str | None = None,
        learn_scale: bool | None = None,
        detach_delta: bool | None = None,
        gelu: bool | None = None,
        surrogate: Callable | str | None = None,
        dropout: float = 0.0,
        tied_dropout: bool = True,
        norm: str = "layer",
        prenorm: bool = False,
        residual: bool = True,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        bidirectional: bool = False,
        bidirectional_convention: str = "lag0",
    ) -> None:
        super().__init__(
            d_model,
            d_state,
            dt_min=dt_min,
            dt_max=dt_max,
            bidirectional=bidirectional,
            bidirectional_convention=bidirectional_convention,
            dropout=dropout,
            tied_dropout=tied_dropout,
            norm=norm,
            prenorm=prenorm,
            residual=residual,
        )
        self.mixer = GSUMixer(
            d_model,
            grad_mode=grad_mode,
            ternary=ternary,
            factor=factor,
            act_delta=act_delta,
            weight_grad=weight_grad,
            act_grad=act_grad,
            learn_scale=learn_scale,
            detach_delta=detach_delta,
            surrogate=surrogate,
            gelu=gelu,
        )

    def _mix(self, y, valid):
        n, m, ty = self.mixer.routes(self.inner_dropout(y), valid)
        return self.mixer.combine(n, m), ty
