"""Differences between SpikingJelly generations that the adapter must bridge.

* generation 2 (2.0.0): stateless functional forwards, no ``backend`` argument, reset cache;
* generation 1 (0.0.0.0.14): ``neuronal_charge`` hooks, ``backend``/``supported_backends``,
  ``functional.set_backend``.
"""

from __future__ import annotations

import sys

from spikingjelly.activation_based import functional, layer, neuron

from bpsn_ext.kernels.dispatch import check_backend

__all__ = [
    "SJ_GENERATION",
    "STEP_CONTAINERS",
    "reset_after_swap",
    "refuse_step_container",
    "step_mode_of",
    "BackendMixin",
    "SingleStepFromFire",
]

SJ_GENERATION: int = 2 if hasattr(neuron.BaseNode, "single_step_functional_forward") else 1

# containers that drive their children step by step (and, in 2.0, refuse non-'s' children)
STEP_CONTAINERS: tuple[type, ...] = tuple(
    getattr(layer, name)
    for name in (
        "MultiStepContainer",
        "SeqToANNContainer",
        "StepModeContainer",
        "TLastMultiStepContainer",
        "TLastSeqToANNContainer",
    )
    if hasattr(layer, name)
)


def step_mode_of(m) -> str:
    """A SpikingJelly module's step mode; a multi-step-only module without the attribute
    (SpikingJelly 2.0's ``PSN`` family) runs in ``'m'``."""
    mode = getattr(m, "step_mode", None)
    if mode is None:
        modes = getattr(m, "supported_step_mode", None)
        mode = "m" if callable(modes) and tuple(modes()) == ("m",) else "s"
    return mode


def refuse_step_container(node) -> None:
    """Raise a clear ValueError when a step-by-step container's constructor reads the step mode
    of a multi-step-only `node` (SpikingJelly 0.0.0.0.14 asserts bare ``step_mode == 's'``)."""
    caller = sys._getframe(2)  # the code that read node.step_mode
    owner = caller.f_locals.get("self")
    if caller.f_code.co_name == "__init__" and isinstance(owner, STEP_CONTAINERS):
        raise ValueError(
            f"{type(node).__name__} cannot sit inside {type(owner).__name__}: the container "
            f"drives its children one step at a time, and {type(node).__name__} needs the whole "
            f"[T, N, *] sequence in one call.  Put it outside the container, in step mode 'm' "
            f"(e.g. nn.Sequential(layer.SeqToANNContainer(...), "
            f"{type(node).__name__}(step_mode='m')))"
        )


def reset_after_swap(net) -> None:
    """Drop SpikingJelly 2.0's cached reset list (it would reset the old modules), then reset."""
    invalidate = getattr(functional, "invalidate_reset_cache", None)
    if invalidate is not None:
        invalidate(net)
    functional.reset_net(net)


class BackendMixin:
    """``backend`` / ``supported_backends`` as SpikingJelly 0.0.0.0.14 (and the 2.0 pre-releases)
    define them, so ``functional.set_backend(net, 'cupy')`` works; ``'auto'`` is accepted too.
    Put it before the SpikingJelly base class.  ``_refuse_backend(value)`` may raise for a
    configuration the backend does not cover."""

    @property
    def supported_backends(self) -> tuple[str, ...]:
        return ("torch", "cupy")

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in self.supported_backends + ("auto",):
            raise NotImplementedError(
                f"{value!r} is not a supported backend of {type(self).__name__} "
                f"{self.supported_backends}"
            )
        check_backend(value)
        self._refuse_backend(value)
        self._backend = value

    def _refuse_backend(self, value: str) -> None:
        """Hook: raise if ``value`` cannot run this module's configuration."""


class _LegacySingleStep:
    """Generation 1's one-step forward, written from the node's `_fire(x) -> (spike, v)`:
    0.0.0.0.14 would otherwise charge, fire and reset through its own hooks."""

    def single_step_forward(self, x):
        spike, self.v = self._fire(x)
        return spike


class _BaseSingleStep:
    """Generation 2: nothing to add; `BaseNode.single_step_forward` runs the node's functional
    forward and keeps `store_v_seq` working."""


SingleStepFromFire: type = _LegacySingleStep if SJ_GENERATION == 1 else _BaseSingleStep
