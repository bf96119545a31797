"""Model-local reset and detach of snnTorch neuron state (nested neurons included)."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

__all__ = ["reset", "detach"]

# state attributes of snnTorch neurons (Leaky: mem; Synaptic: syn, mem; RLeaky: spk, mem; ...)
_STATE_NAMES = ("mem", "syn", "spk", "syn_exc", "syn_inh", "c", "mem_prev", "prev_input")


def reset(net: nn.Module) -> nn.Module:
    """Zero and detach the state of every snnTorch neuron inside ``net`` (recursively), and
    call ``reset_state()`` on every module that has one (the bpsn_ext SSM layers).

    Unlike ``snntorch.utils.reset`` it reaches nested neurons and touches no other model.
    """
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            for name in _STATE_NAMES:
                value = getattr(m, name, None)
                if isinstance(value, torch.Tensor):
                    setattr(m, name, torch.zeros_like(value))
        reset_state = getattr(m, "reset_state", None)
        if callable(reset_state):
            reset_state()
    return net


def detach(net: nn.Module) -> nn.Module:
    """Detach (in place) the state of every snnTorch neuron inside ``net`` from the graph."""
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            for name in _STATE_NAMES:
                value = getattr(m, name, None)
                if isinstance(value, torch.Tensor):
                    value.detach_()
    return net
