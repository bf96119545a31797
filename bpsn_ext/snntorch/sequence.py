"""Run snnTorch models on whole ``[T, B, ...]`` sequences, so whole-sequence neurons fit in.

snnTorch models are usually called once per time step.  A BPSN needs all T steps in one call,
so per-step layers must see the sequence with time folded into the batch (what SpikingJelly's
``SeqToANNContainer`` does).  `to_sequence` rewrites an ``nn.Sequential`` that way:

    net = to_sequence(tutorial_net)            # [T, B, ...] in, [T, B, ...] out
    swap_neurons(net, {snn.Leaky: BPSNLeaky})  # now a BPSN gets the whole sequence
"""

from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

__all__ = ["TimeFolded", "StepLoop", "to_sequence"]


class TimeFolded(nn.Sequential):
    """Per-step layers applied to every step of a ``[T, B, *]`` sequence at once.

    Shape: ``[T, B, *in]`` -> ``[T, B, *out]`` (the layers see ``[T * B, *in]``).

    Example:
        >>> conv = TimeFolded(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2))
        >>> conv(torch.randn(25, 4, 1, 28, 28)).shape
        torch.Size([25, 4, 8, 12, 12])
    """

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"TimeFolded expects [T, B, *], got shape {list(x_seq.shape)}")
        T, B = x_seq.shape[:2]
        y = super().forward(x_seq.flatten(0, 1))
        return y.reshape(T, B, *y.shape[1:])


class StepLoop(nn.Module):
    """A step neuron (``init_hidden=True``) run over the T steps of ``[T, B, *]``.

    Its hidden state is reset before each sequence.  Returns the stacked outputs: spikes
    ``[T, B, *]``, or ``(spk, mem)`` stacked when the neuron returns both.
    """

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        if not getattr(neuron, "init_hidden", False):
            raise ValueError(
                f"StepLoop needs a neuron built with init_hidden=True (it keeps its own state "
                f"between steps), got {type(neuron).__name__}(init_hidden=False)"
            )
        self.neuron = neuron

    def forward(self, x_seq: torch.Tensor):
        from bpsn_ext.snntorch.state import reset

        reset(self.neuron)
        outs = [self.neuron(x_t) for x_t in x_seq.unbind(0)]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(part) for part in zip(*outs))
        return torch.stack(outs)


def _is_neuron(m: nn.Module) -> bool:
    return isinstance(m, snn.SpikingNeuron) or getattr(m, "consumes_whole_sequence", False)


def to_sequence(net: nn.Sequential) -> nn.Sequential:
    """The ``[T, B, ...]`` version of a per-step ``nn.Sequential`` (same modules, shared).

    Runs of per-step layers become `TimeFolded`, step neurons a `StepLoop`, whole-sequence
    neurons (BPSN) stay as they are.  The result can take BPSN through ``swap_neurons``.

    Args:
        net: a sequential snnTorch model whose neurons use ``init_hidden=True``.

    Shape: ``[T, B, *in]`` -> the last module's outputs with a leading ``T``.
    """
    if not isinstance(net, nn.Sequential):
        raise TypeError(
            f"to_sequence rewrites an nn.Sequential, got {type(net).__name__}; for a model "
            f"with its own forward loop, wrap its per-step layers in TimeFolded yourself"
        )
    out: list[nn.Module] = []
    run: list[nn.Module] = []
    for m in net:
        if not _is_neuron(m):
            run.append(m)
            continue
        if run:
            out.append(TimeFolded(*run))
            run = []
        out.append(m if getattr(m, "consumes_whole_sequence", False) else StepLoop(m))
    if run:
        out.append(TimeFolded(*run))
    return nn.Sequential(*out)
