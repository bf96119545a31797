"""The demo's three experiments on scikit-learn's 8x8 digits, each against its baseline.

* ``single_step``: an MLP with single-step (S3NN) neurons, one pass, against the same MLP with
  LIF neurons over T = 4 repeats of the image;
* ``bpsn``: the 8 rows of a digit as 8 tokens (individual coding, one row a time step), read
  out from the first token only, as BERT reads its [CLS] token.  A forward-only LIF neuron has
  seen one row at that step; BPSN's backward half has seen all of them.  LIF read out at the
  last token (where it has seen everything) is shown too;
* ``ssm``: the 64 pixels as a sequence (sequential digits), Binary S4D and GSU against a
  real-valued S4D classifier of the same size.

Every network is built with the neurons of the framework the user has (`Neurons`):
SpikingJelly's, else snnTorch's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Neurons", "neurons_for", "single_step_models", "bpsn_models", "ssm_models"]


@dataclass
class Neurons:
    """Factories of the user's framework: ``single()`` maps ``[N, D]``; ``lif()`` and
    ``bpsn(D)`` map ``[T, N, D]``; ``reset(model)`` clears state between batches."""

    framework: str
    single: Callable[[], nn.Module]
    lif: Callable[[], nn.Module]
    bpsn: Callable[[int], nn.Module]
    reset: Callable[[nn.Module], None] | None


def neurons_for(framework: str = "auto") -> Neurons:
    """The neurons of ``framework``: ``"spikingjelly"``, ``"snntorch"`` or ``"auto"`` (the
    first of the two that imports)."""
    if framework == "auto":
        for name in ("spikingjelly", "snntorch"):
            try:
                return neurons_for(name)
            except ImportError:
                continue
        raise ImportError(
            "the demo needs SpikingJelly or snnTorch: pip install -c "
            'torch-pin.txt "bpsn-ext[spikingjelly]" (or [snntorch])'
        )
    if framework == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        from bpsn_ext.spikingjelly import BPSNNode, SingleStepNode

        return Neurons(
            "spikingjelly",
            SingleStepNode,
            lambda: neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True),
            lambda d: BPSNNode(d, step_mode="m"),
            functional.reset_net,
        )
    if framework == "snntorch":
        import snntorch as snn

        from bpsn_ext.snntorch import BPSNLeaky, SingleStepLeaky, StepLoop

        return Neurons(
            "snntorch",
            lambda: SingleStepLeaky(init_hidden=True),
            lambda: StepLoop(snn.Leaky(beta=0.5, init_hidden=True)),
            lambda d: BPSNLeaky(d, init_hidden=True),
            None,
        )
    raise ValueError(f"framework must be 'auto', 'spikingjelly' or 'snntorch', got {framework!r}")


class RepeatMLP(nn.Module):
    """``[N, D_in]`` -> logits ``[N, C]``: two spiking layers; with ``T`` > 1 the image is
    repeated T times (direct coding) through multi-step neurons and the logits averaged."""

    def __init__(self, dims: tuple[int, int, int], neuron: Callable[[], nn.Module], T: int):
        super().__init__()
        d_in, hidden, classes = dims
        self.T = T
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden),
            neuron(),
            nn.Linear(hidden, hidden),
            neuron(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.T == 1:
            return self.net(x)
        return self.net(x.unsqueeze(0).expand(self.T, *x.shape)).mean(0)


class TokenReader(nn.Module):
    """``[T, N, D_in]`` tokens -> logits ``[N, C]`` read at token ``read`` (0: first, -1:
    last) after two spiking layers ``Linear -> neuron(width)``."""

    def __init__(self, dims: tuple[int, int, int], neuron: Callable[[int], nn.Module], read: int):
        super().__init__()
        d_in, hidden, classes = dims
        self.read = read
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), neuron(hidden), nn.Linear(hidden, hidden), neuron(hidden)
        )
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x)[self.read])


def single_step_models(n: Neurons, hidden: int, T: int) -> dict[str, tuple[str, int, Callable]]:
    """``{key: (label, T, build)}`` of the single-step experiment (input ``[N, 64]``)."""
    dims = (64, hidden, 10)
    return {
        "s3nn": (f"S3NN single-step ({n.framework})", 1, lambda: RepeatMLP(dims, n.single, 1)),
        "lif": (f"LIF, T={T} repeats ({n.framework})", T, lambda: RepeatMLP(dims, n.lif, T)),
    }


def bpsn_models(n: Neurons, hidden: int) -> dict[str, tuple[str, int, Callable]]:
    """The BPSN experiment (input ``[8, N, 8]``, one image row a token)."""
    dims = (8, hidden, 10)
    return {
        "bpsn_first": ("BPSN, first token", 8, lambda: TokenReader(dims, n.bpsn, 0)),
        "lif_first": ("LIF, first token", 8, lambda: TokenReader(dims, lambda d: n.lif(), 0)),
        "lif_last": ("LIF, last token", 8, lambda: TokenReader(dims, lambda d: n.lif(), -1)),
    }


def ssm_models(d_model: int, d_state: int) -> dict[str, tuple[str, int, Callable]]:
    """The SSM experiment (input ``[64, N, 1]``, one pixel a step): 2 residual blocks."""
    from bpsn_ext.models import LRAClassifier

    def build(layer: str) -> Callable[[], nn.Module]:
        return lambda: LRAClassifier(
            1, 10, layer=layer, d_model=d_model, n_layers=2, d_state=d_state
        )

    return {
        "binary_s4d": ("Binary S4D", 64, build("binary_s4d")),
        "gsu": ("GSU", 64, build("gsu")),
        "s4d": ("S4D (real-valued)", 64, build("s4d")),
    }
