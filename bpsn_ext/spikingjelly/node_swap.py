"""Swap neurons inside an existing SpikingJelly model."""

from __future__ import annotations

from torch import nn

from bpsn_ext.module_swap import Rules, Swap, SwapReport, apply_swaps
from bpsn_ext.spikingjelly._compat import STEP_CONTAINERS, reset_after_swap, step_mode_of

__all__ = ["swap_neurons", "to_single_step"]


def _supported_modes(m: nn.Module) -> tuple[str, ...]:
    fn = getattr(m, "supported_step_mode", None)
    return tuple(fn()) if callable(fn) else ("s", "m")


def _check(swap: Swap) -> None:
    new, old, parent = swap.new, swap.old, swap.parent
    modes = _supported_modes(new)
    old_mode = step_mode_of(old)
    if isinstance(parent, STEP_CONTAINERS) and "s" not in modes:
        raise ValueError(
            f"cannot put {type(new).__name__} (step modes {modes}) at {swap.name}: its parent "
            f"{type(parent).__name__} drives children one step at a time; rebuild that part "
            f"of the model without the container, in step mode 'm'"
        )
    if old_mode not in modes:
        raise ValueError(
            f"cannot put {type(new).__name__} (step modes {modes}) at {swap.name}: the model "
            f"runs it in step mode {old_mode!r}; call functional.set_step_mode(model, 'm') "
            f"first (the whole sequence must reach the neuron in one call)"
        )
    if hasattr(new, "step_mode"):
        new.step_mode = old_mode  # also tells a multi-step-only node that sequences arrive


def swap_neurons(model: nn.Module, rules: Rules, *, inplace: bool = True) -> SwapReport:
    """Replace SpikingJelly neurons in ``model`` by ``rules``; returns ``[(name, old, new)]``.

    ``rules`` maps an old class (matched by exact type, so subclasses stay) or a predicate to a
    new class with ``from_neuron(old)`` or to a factory ``old -> new``.  The new neurons keep
    the old step mode, training flag, device and dtype.  A multi-step-only neuron is refused
    where the model drives neurons step by step.  A BPSN without ``channel_dim`` finds its
    channel axis on the model's first forward, following the tensor from the layer that made
    it (a convolution or norm: channels first; ``Linear``: features last) through views,
    transposes and reshapes, and raises, naming ``channel_dim`` and the shape, where the axis
    is lost on the way (`bpsn_ext.layout_probe`).  Afterwards SpikingJelly's reset cache is
    invalidated and the net is reset, so ``functional.reset_net`` reaches the new neurons.

    Example: ``swap_neurons(net, {neuron.LIFNode: SingleStepNode})``.
    For model-zoo builders prefer ``spiking_vgg11(spiking_neuron=SingleStepNode, ...)``.
    """
    from spikingjelly.activation_based import neuron

    followers = (neuron.BaseNode,)
    report = apply_swaps(model, rules, inplace=inplace, check=_check, followers=followers)
    reset_after_swap(report.model)
    return report


def to_single_step(
    model: nn.Module,
    *,
    surrogate_function=None,
    keep_surrogate: bool = False,
    inplace: bool = True,
) -> SwapReport:
    """Convert IF/LIF/PLIF nodes of a SpikingJelly model into S3NN ``SingleStepNode``s.

    The surrogate becomes S2NN unless ``surrogate_function`` is given; ``keep_surrogate=True``
    keeps each node's own.  Run the converted model with a single time step (T = 1, or step
    mode 's').
    """
    from spikingjelly.activation_based import neuron

    from bpsn_ext.spikingjelly.single_step_node import SingleStepNode

    names = ("IFNode", "LIFNode", "ParametricLIFNode")
    kinds = [getattr(neuron, n) for n in names if hasattr(neuron, n)]

    def factory(old):
        return SingleStepNode.from_neuron(old, surrogate_function, keep_surrogate=keep_surrogate)

    return swap_neurons(model, [(k, factory) for k in kinds], inplace=inplace)
