"""Differences between SpikingJelly generations that the adapter must bridge.

* generation 2 (2.0.0): stateless functional forwards, no ``backend`` argument, reset cache;
* generation 1 (0.0.0.0.14): ``neuronal_charge`` hooks, ``backend``/``supported_backends``,
  ``functional.set_backend``.
"""

from __future__ import annotations

from spikingjelly.activation_based import functional, layer, neuron

__all__ = ["SJ_GENERATION", "STEP_CONTAINERS", "reset_after_swap"]

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
