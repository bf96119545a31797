"""Surrogate spike functions: Heaviside forward, smooth derivative backward.

Framework-agnostic (plain torch). Every surrogate is a small picklable ``nn.Module``
(so ``torch.save(model)`` works, unlike snnTorch's closures) that is callable as
``spike = surrogate(u - v_threshold)`` and therefore interchangeable with
SpikingJelly ``surrogate.*`` objects and snnTorch ``spike_grad`` callables.

Tie rule: ``fire_ge=True`` fires at ``x >= 0`` (SpikingJelly), ``fire_ge=False`` at
``x > 0`` (snnTorch).  Spikes take the dtype of ``x``.

The backward formulas follow the host frameworks operation for operation, so gradients
agree bit for bit with ``spikingjelly.activation_based.surrogate`` (ATan, Sigmoid, S2NN)
and ``snntorch.surrogate`` (atan, fast_sigmoid).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bpsn_ext.util.arguments import check_float

__all__ = [
    "SurrogateFunction",
    "ATan",
    "Sigmoid",
    "FastSigmoid",
    "S2NN",
    "resolve",
    "available",
    "heaviside",
]


def heaviside(x: torch.Tensor, fire_ge: bool = True) -> torch.Tensor:
    """Step function in the dtype (and layout) of ``x``: ``x >= 0`` (``fire_ge``) or ``x > 0``.
    One pass: the comparison writes the floats directly."""
    return (torch.ge if fire_ge else torch.gt)(x, 0, out=torch.empty_like(x))


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward; ``grad_fn(x, grad_output, *params)`` backward.

    The parameters travel as one tuple: a fixed argument count keeps ``torch._dynamo`` from
    mis-aligning arguments (a graph break) when no input requires grad.
    """

    @staticmethod
    def forward(
        x: torch.Tensor, grad_fn: Callable, fire_ge: bool, params: tuple[float, ...]
    ) -> torch.Tensor:
        return heaviside(x, fire_ge)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, grad_fn, _fire_ge, params = inputs
        ctx.save_for_backward(x)
        ctx.grad_fn = grad_fn
        ctx.params = params

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        grad_x = ctx.grad_fn(x, grad_output, *ctx.params) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None


class SurrogateFunction(nn.Module):
    """Base class: ``forward(x)`` is the spike (``spiking=True``) or the smooth primitive.

    Subclasses define ``_param_names`` and the static methods ``grad(x, grad_output, *params)``
    (the surrogate derivative times ``grad_output``) and ``primitive(x, *params)``.
    """

    _param_names: tuple[str, ...] = ()
    name: str = ""

    def __init__(self, *, spiking: bool = True, fire_ge: bool = True) -> None:
        super().__init__()
        if not isinstance(spiking, bool) or not isinstance(fire_ge, bool):
            raise TypeError("spiking and fire_ge must be bool")
        self.spiking = spiking
        self.fire_ge = fire_ge

    # -- subclass hooks -------------------------------------------------------------------
    @staticmethod
    def grad(x: torch.Tensor, grad_output: torch.Tensor, *params: float) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def primitive(x: torch.Tensor, *params: float) -> torch.Tensor:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------
    @property
    def params(self) -> tuple[float, ...]:
        return tuple(getattr(self, n) for n in self._param_names)

    def set_spiking_mode(self, spiking: bool) -> None:
        """SpikingJelly-compatible switch between spikes and the smooth primitive."""
        self.spiking = bool(spiking)

    @classmethod
    def fused_grad(cls, x: torch.Tensor, grad_output: torch.Tensor, *params: float) -> torch.Tensor:
        """`grad` in fewer passes over memory (equal to rounding); default: `grad` itself."""
        return cls.grad(x, grad_output, *params)

    def spike(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """The spike with the `grad` backward, or the `fused_grad` one (``fused=True``)."""
        grad = self.fused_grad if fused else self.grad
        return _SurrogateSpike.apply(x, grad, self.fire_ge, self.params)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative g'(x) itself (no autograd graph)."""
        return self.grad(x, torch.ones_like(x), *self.params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects a floating-point tensor (membrane minus "
                f"threshold), got {type(x).__name__}"
                + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else "")
            )
        if self.spiking:
            return _SurrogateSpike.apply(x, self.grad, self.fire_ge, self.params)
        return self.primitive(x, *self.params)

    def extra_repr(self) -> str:
        ps = ", ".join(f"{n}={getattr(self, n)}" for n in self._param_names)
        return f"{ps}, spiking={self.spiking}, fire_ge={self.fire_ge}"


class ATan(SurrogateFunction):
    """g'(x) = (alpha/2) / (1 + (pi*alpha*x/2)^2), peak alpha/2: SJ ``ATan``, snnTorch ``atan``."""

    _param_names = ("alpha",)
    name = "atan"

    def __init__(self, alpha: float = 2.0, *, spiking: bool = True, fire_ge: bool = True) -> None:
        super().__init__(spiking=spiking, fire_ge=fire_ge)
        self.alpha = check_float("alpha", alpha, positive=True)

    @staticmethod
    def grad(x, grad_output, alpha):
        a = alpha / 2
        ax = math.pi * a * x
        return a / (1 + ax * ax) * grad_output

    @classmethod
    def fused_grad(cls, x, grad_output, alpha):
        # grad_output / (1/a + pi^2 a x^2): two passes instead of six
        a = alpha / 2
        den = torch.addcmul(x.new_tensor(1.0 / a), x, x, value=math.pi**2 * a)
        return torch.div(grad_output, den, out=den)

    @staticmethod
    def primitive(x, alpha):
        return (math.pi / 2 * alpha * x).atan_() / math.pi + 0.5


class Sigmoid(SurrogateFunction):
    """g'(x) = alpha*sigmoid(alpha x)(1 - sigmoid(alpha x)); SpikingJelly ``Sigmoid`` (alpha=4)."""

    _param_names = ("alpha",)
    name = "sigmoid"

    def __init__(self, alpha: float = 4.0, *, spiking: bool = True, fire_ge: bool = True) -> None:
        super().__init__(spiking=spiking, fire_ge=fire_ge)
        self.alpha = check_float("alpha", alpha, positive=True)

    @staticmethod
    def grad(x, grad_output, alpha):
        sgax = (x * alpha).sigmoid_()
        return grad_output * (1.0 - sgax) * sgax * alpha

    @staticmethod
    def primitive(x, alpha):
        return (x * alpha).sigmoid()


class FastSigmoid(SurrogateFunction):
    """g'(x) = 1 / (slope*|x| + 1)^2; snnTorch ``fast_sigmoid`` (slope=25)."""

    _param_names = ("slope",)
    name = "fast_sigmoid"

    def __init__(self, slope: float = 25.0, *, spiking: bool = True, fire_ge: bool = True) -> None:
        super().__init__(spiking=spiking, fire_ge=fire_ge)
        self.slope = check_float("slope", slope, positive=True)

    @staticmethod
    def grad(x, grad_output, slope):
        return grad_output / (slope * torch.abs(x) + 1.0) ** 2

    @staticmethod
    def primitive(x, slope):
        # exact antiderivative of the surrogate, shifted so that primitive(0) = 0.5
        return 0.5 + torch.sign(x) * (1 - 1 / (slope * torch.abs(x) + 1.0)) / slope


class S2NN(SurrogateFunction):
    """The S3NN / S2NN surrogate (Suetake et al. 2023), SpikingJelly ``S2NN`` formula.

    g'(x) = alpha*sigmoid(alpha x)(1 - sigmoid(alpha x)) for x < 0, beta / (x + 1) for x >= 0.
    With alpha = 4 beta (the default 4, 1) both g and g' are continuous at 0 (g'(0) = 1).
    """

    _param_names = ("alpha", "beta")
    name = "s2nn"

    def __init__(
        self, alpha: float = 4.0, beta: float = 1.0, *, spiking: bool = True, fire_ge: bool = True
    ) -> None:
        super().__init__(spiking=spiking, fire_ge=fire_ge)
        self.alpha = check_float("alpha", alpha, positive=True)
        self.beta = check_float("beta", beta, positive=True)

    @staticmethod
    def grad(x, grad_output, alpha, beta):
        sgax = torch.sigmoid(alpha * x)
        # beta/(x+1) is only evaluated on x >= 0: no pole at x = -1 (same values as SJ's where)
        grad_x = torch.where(x < 0.0, alpha * sgax * (1.0 - sgax), beta / (x.clamp_min(0.0) + 1.0))
        return grad_x * grad_output

    @staticmethod
    def primitive(x, alpha, beta):
        # exact antiderivative; SpikingJelly adds 1e-5 inside the log against x = -1, which the
        # clamp makes unnecessary (so g(0) = 0.5 exactly and g' = beta / (x + 1) exactly)
        pos = beta * torch.log1p(x.clamp_min(0.0)) + 0.5
        return torch.where(x < 0.0, torch.sigmoid(alpha * x), pos)


_REGISTRY: dict[str, type[SurrogateFunction]] = {
    cls.name: cls for cls in (ATan, Sigmoid, FastSigmoid, S2NN)
}


def available() -> tuple[str, ...]:
    """Names accepted by `resolve`."""
    return tuple(sorted(_REGISTRY))


def resolve(
    surrogate: str | Callable[[torch.Tensor], torch.Tensor] | None,
    *,
    default: Callable[[], Callable] = S2NN,
    fire_ge: bool = True,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Turn a user's surrogate argument into a callable ``x -> spikes``.

    Accepts ``None`` (``default()``), a name from `available` (built with ``fire_ge``;
    ``"atan:4"`` sets the first parameter, alpha, to 4),
    any of our `SurrogateFunction` objects, a SpikingJelly ``SurrogateFunctionBase``
    object or an snnTorch ``spike_grad`` callable (used as given, with its own tie rule).
    """
    if surrogate is None:
        made = default()
        if isinstance(made, SurrogateFunction):
            made.fire_ge = fire_ge
        return made
    if isinstance(surrogate, str):
        key, _, alpha = surrogate.lower().replace("-", "_").partition(":")
        if key not in _REGISTRY:
            raise ValueError(
                f"unknown surrogate name {surrogate!r}; expected one of {', '.join(available())} "
                "or a callable such as a SpikingJelly surrogate object or an snnTorch spike_grad"
            )
        if not alpha:
            return _REGISTRY[key](fire_ge=fire_ge)
        try:
            value = float(alpha)
        except ValueError:
            raise ValueError(
                f"surrogate {surrogate!r}: the part after ':' is the first "
                f"parameter (alpha), a number; got {alpha!r}"
            ) from None
        return _REGISTRY[key](value, fire_ge=fire_ge)
    if isinstance(surrogate, type):
        raise TypeError(
            f"surrogate must be an instance or callable, got the class {surrogate.__name__}; "
            f"write {surrogate.__name__}() instead"
        )
    if not callable(surrogate):
        raise TypeError(
            f"surrogate must be a name, a surrogate object or a callable x -> spikes, "
            f"got {type(surrogate).__name__}"
        )
    return surrogate
