"""Differences between SpikingJelly generations that the adapter must bridge.

* generation 2 (2.0.0): stateless functional forwards, no ``backend`` argument, reset cache;
* generation 1 (0.0.0.0.14): ``neuronal_charge`` hooks, ``backend``/``supported_backends``,
  ``functional.set_backend``.
"""

from __future__ import annotations

from spikingjelly.activation_based import functional, layer, neuron

from bpsn_ext.kernels.dispatch import check_backend

__all__ = [
    "SJ_GENERATION",
    "STEP_CONTAINERS",
    "reset_after_swap",
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
