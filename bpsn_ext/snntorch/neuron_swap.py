"""Swap neurons inside an existing snnTorch model, and a model-local reset."""

from __future__ import annotations

import snntorch as snn
from torch import nn

from bpsn_ext.module_swap import Rules, Swap, SwapReport, apply_swaps
from bpsn_ext.snntorch.sequence import StepLoop
from bpsn_ext.snntorch.state import detach, reset

__all__ = ["swap_neurons", "to_single_step", "reset", "detach"]


def _forget_instance(old: nn.Module) -> None:
    """Remove ``old`` from snnTorch's global instance list (global resets, garbage collection)."""
    snn.SpikingNeuron.instances[:] = [m for m in snn.SpikingNeuron.instances if m is not old]


def swap_neurons(
    model: nn.Module, rules: Rules, *, inplace: bool = True, allow_sequence_neurons: bool = False
) -> SwapReport:
    """Replace snnTorch neurons in ``model`` by ``rules``; returns ``[(name, old, new)]``.

    ``rules`` maps an old class (exact type) or a predicate to a new class with
    ``from_neuron(old)`` or a factory ``old -> new``.  Replaced neurons are removed from
    ``snn.SpikingNeuron.instances``.  A whole-sequence neuron (BPSN) replaces a step neuron
    inside a model made by `to_sequence` (it takes the place of the neuron's `StepLoop`).  A
    BPSN without ``channel_dim`` takes its channel axis from the data flow on the model's first
    forward, and raises where that cannot tell (`bpsn_ext.layout_probe`).  Elsewhere the
    model's ``forward`` must hand it the whole ``[T, B, ...]`` sequence, which cannot be
    checked, so it needs ``allow_sequence_neurons=True``.

    Example: ``swap_neurons(net, {snn.Leaky: SingleStepLeaky})``.
    """

    def check(swap: Swap) -> None:
        if isinstance(swap.parent, StepLoop):
            return  # replaced by the new neuron below: it will see the whole sequence
        if getattr(swap.new, "consumes_whole_sequence", False) and not allow_sequence_neurons:
            raise ValueError(
                f"{type(swap.new).__name__} processes a whole [T, B, ...] sequence per call, but "
                f"{swap.name} ({type(swap.old).__name__}) is a step neuron, usually called once "
                f"per time step; pass allow_sequence_neurons=True only if the model's forward "
                f"gives it the whole sequence"
            )

    known = {id(m) for m in snn.SpikingNeuron.instances}
    try:
        report = apply_swaps(
            model, rules, inplace=inplace, check=check, followers=(snn.SpikingNeuron,)
        )
        _unloop(report.model)
    except Exception:
        # replacements built before the failure must not linger in snnTorch's global list
        snn.SpikingNeuron.instances[:] = [m for m in snn.SpikingNeuron.instances if id(m) in known]
        raise
    for _, old, _ in report:
        _forget_instance(old)
    return report


def _unloop(model: nn.Module) -> None:
    """Replace each `StepLoop` that now holds a whole-sequence neuron by that neuron."""
    for parent in list(model.modules()):
        for attr, child in list(parent.named_children()):
            inner = getattr(child, "neuron", None)
            if isinstance(child, StepLoop) and getattr(inner, "consumes_whole_sequence", False):
                setattr(parent, attr, inner)


def to_single_step(
    model: nn.Module, *, spike_grad=None, keep_surrogate: bool = False, inplace: bool = True
) -> SwapReport:
    """Convert every ``snn.Leaky`` of ``model`` into an S3NN ``SingleStepLeaky``.

    The surrogate becomes S2NN unless ``spike_grad`` is given; ``keep_surrogate=True`` keeps
    each neuron's own.  Run the converted model for a single time step.
    """
    from bpsn_ext.snntorch.single_step_leaky import SingleStepLeaky

    def factory(old):
        return SingleStepLeaky.from_neuron(old, spike_grad, keep_surrogate=keep_surrogate)

    return swap_neurons(model, {snn.Leaky: factory}, inplace=inplace)
