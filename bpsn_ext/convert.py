"""Turn a multi-step spiking model into its single-step (S3NN) counterpart, for either framework."""

from __future__ import annotations

from torch import nn

from bpsn_ext.module_swap import SwapReport

__all__ = ["to_single_step"]


def _framework_of(model: nn.Module) -> str:
    found = {type(m).__module__.split(".")[0] for m in model.modules()}
    hosts = found & {"spikingjelly", "snntorch"}
    if len(hosts) != 1:
        raise ValueError(
            "to_single_step needs a model with SpikingJelly or snnTorch neurons "
            f"(found neurons from: {sorted(hosts) or 'neither'}); use "
            "bpsn_ext.spikingjelly.to_single_step or bpsn_ext.snntorch.to_single_step directly"
        )
    return hosts.pop()


def to_single_step(
    model: nn.Module, *, surrogate=None, keep_surrogate: bool = False, inplace: bool = True
) -> SwapReport:
    """Replace the multi-step neurons of ``model`` by single-step S3NN neurons (S2NN surrogate).

    SpikingJelly IF/LIF/PLIF nodes become ``SingleStepNode``; snnTorch ``Leaky`` becomes
    ``SingleStepLeaky``.  ``surrogate`` replaces S2NN; ``keep_surrogate=True`` keeps each
    neuron's own.  Feed the converted model one time step (T = 1).
    """
    if _framework_of(model) == "spikingjelly":
        from bpsn_ext.spikingjelly import to_single_step as convert

        return convert(
            model, surrogate_function=surrogate, keep_surrogate=keep_surrogate, inplace=inplace
        )
    from bpsn_ext.snntorch import to_single_step as convert

    return convert(model, spike_grad=surrogate, keep_surrogate=keep_surrogate, inplace=inplace)
