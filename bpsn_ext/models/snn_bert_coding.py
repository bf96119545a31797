"""SNN-BERT's codings, decided once: each names its time layout (`bpsn_ext.core.coding`) and
the neuron that runs in it.

* ``"individual"`` (the paper's proposal): one token per step, ``[L, B, D]``; the neuron is
  `bpsn_ext.BPSN`, parallel over the tokens.
* ``"repeat"`` (the baseline): the sequence at each of ``T`` steps, ``[T, B, L, D]``; the
  neuron is `MultiStepLIF` (a loop over ``T``), one state per ``(b, l, d)``.
* ``"ann"`` (the ANN twin): the individual layout with a real-valued activation
  (`RealActivation`) instead of every neuron.

`SNNBert`, its attention and its energy report ask the `SNNBertCoding` object
(``model.coding``) instead of testing the name.

Example:
    >>> coding = snn_bert_coding("repeat")
    >>> coding.layout.name, type(coding.make_neuron(8, {}, {"tau": 2.0})).__name__
    ('repeat', 'MultiStepLIF')
"""

from __future__ import annotations

import torch
from torch import nn

from bpsn_ext.bpsn_module import BPSN
from bpsn_ext.core.coding import INDIVIDUAL, REPEAT, Coding
from bpsn_ext.energy.estimate import estimate
from bpsn_ext.energy.ops import Ops
from bpsn_ext.energy.report import EnergyReport
from bpsn_ext.surrogate import ATan, resolve
from bpsn_ext.util.arguments import check_float

__all__ = [
    "ANN_ACTIVATIONS",
    "CODINGS",
    "MultiStepLIF",
    "RealActivation",
    "SNNBertCoding",
    "snn_bert_coding",
]

ANN_ACTIVATIONS = ("relu", "gelu", "identity")


class MultiStepLIF(nn.Module):
    """Leaky integrate-and-fire neuron over the leading time axis of ``[T, *]`` (plain torch).

    ``v <- v + (x - v) / tau``; ``s = Theta(v - v_threshold)``; reset ``v <- v (1 - s)``
    (``"hard"``, to 0) or ``v <- v - v_threshold s`` (``"soft"``).  This is SpikingJelly's
    ``LIFNode(tau, decay_input=True, v_reset=0.0)`` in multi-step mode (tested against it),
    written in plain torch so that the model needs no SNN framework.  Surrogate: ATan(2).

    ``forward(x, mask=None)``: ``x`` ``[T, B, L, C]`` (repeat coding), ``mask`` bool ``[B, L]``
    (True = real token); spikes of padded tokens are set to 0.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        reset: str = "hard",
        surrogate=None,
        detach_reset: bool = False,
    ) -> None:
        super().__init__()
        check_float("tau", tau)
        check_float("v_threshold", v_threshold)
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1, got {tau}")
        if reset not in ("hard", "soft"):
            raise ValueError(f"reset must be 'hard' or 'soft', got {reset!r}")
        self.tau, self.v_threshold, self.reset = float(tau), float(v_threshold), reset
        self.detach_reset = detach_reset
        self.surrogate_function = resolve(surrogate, default=ATan)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            v = v + (x[t] - v) / self.tau
            s = self.surrogate_function(v - self.v_threshold)
            r = s.detach() if self.detach_reset else s
            v = v * (1.0 - r) if self.reset == "hard" else v - self.v_threshold * r
            out.append(s)
        spikes = torch.stack(out)
        if mask is not None:
            spikes = spikes * mask.reshape(1, *mask.shape, *([1] * (x.dim() - 3))).to(x.dtype)
        return spikes

    def energy_ops(self, inputs, output, kwargs=None) -> Ops:
        """1 mul + 3 add (leak, charge, compare, reset) per neuron, step and real token."""
        x = inputs[0]
        mask = inputs[1] if len(inputs) > 1 else (kwargs or {}).get("mask")
        n = x.numel()
        if mask is not None:
            n = int(mask.sum()) * x.shape[0] * (x.numel() // (x.shape[0] * mask.numel()))
        return Ops(mul=n, add=3 * n, dense=0, label="LIF: leak, charge, compare, reset")

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, reset={self.reset!r}"


class RealActivation(nn.Module):
    """The ANN twin's stand-in for a neuron: a real-valued activation on ``[L, B, C]``.

    ``forward(x, mask=None)`` returns ``act(x)`` with padded tokens (``mask`` bool ``[L, B]``,
    False) set to 0, like the neurons' spikes.  ``"relu"`` (default; thresholded and
    non-negative like a spike count), ``"gelu"`` or ``"identity"``.

    Example: ``RealActivation("relu")(torch.randn(5, 2, 8)).shape == (5, 2, 8)``.
    """

    def __init__(self, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ANN_ACTIVATIONS:
            raise ValueError(f"ann activation must be one of {ANN_ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.activation == "relu":
            x = torch.relu(x)
        elif self.activation == "gelu":
            x = torch.nn.functional.gelu(x)
        if mask is not None:
            x = x * mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim()))).to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return repr(self.activation)


class SNNBertCoding:
    """One coding of SNN-BERT: its name, its time ``layout`` and its neuron (`make_neuron`)."""

    name: str = ""
    layout: Coding = INDIVIDUAL
    label: str = ""  # how energy reports name the model

    def make_neuron(
        self,
        channels: int,
        bpsn_options: dict,
        lif_options: dict,
        ann_activation: str = "relu",
    ) -> nn.Module:
        """The neuron (or activation) of ``channels`` features in this coding."""
        raise NotImplementedError

    def estimate(
        self, model: nn.Module, ids: torch.Tensor, forward_kwargs: dict | None = None
    ) -> EnergyReport:
        """The `EnergyReport` of one forward run of the SNN-BERT ``model`` (of this coding) on
        ``ids`` ``[L, B]`` (time-first); ``forward_kwargs`` (``mask``, ``segment_ids``) go
        to every call."""
        steps = None if self.layout.steps_from_data else model.config.T
        title = self.label + ("" if steps is None else f" T={steps}") + f", L={ids.shape[0]}"
        return estimate(
            model,
            ids,
            T=steps,
            coding=self.layout,
            batch_size=ids.shape[1],
            forward_kwargs=forward_kwargs,
            title=title,
        )

    def __repr__(self) -> str:
        return f"snn_bert_coding({self.name!r})"


class _Individual(SNNBertCoding):
    name, layout, label = "individual", INDIVIDUAL, "SNN-BERT individual coding"

    def make_neuron(self, channels, bpsn_options, lif_options, ann_activation="relu"):
        return BPSN(channels, **bpsn_options)


class _Repeat(SNNBertCoding):
    name, layout, label = "repeat", REPEAT, "SNN-BERT repeat coding"

    def make_neuron(self, channels, bpsn_options, lif_options, ann_activation="relu"):
        return MultiStepLIF(**lif_options)


class _ANNTwin(SNNBertCoding):
    name, layout, label = "ann", INDIVIDUAL, "ANN twin"

    def make_neuron(self, channels, bpsn_options, lif_options, ann_activation="relu"):
        return RealActivation(ann_activation)


_CODINGS = {c.name: c for c in (_Individual(), _Repeat(), _ANNTwin())}
#: The names of SNN-BERT's codings.
CODINGS = tuple(_CODINGS)


def snn_bert_coding(coding: str | SNNBertCoding) -> SNNBertCoding:
    """The SNN-BERT coding named ``coding`` (one of `CODINGS`; an object is returned as is).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(coding, SNNBertCoding):
        return coding
    if coding not in _CODINGS:
        raise ValueError(f"coding must be one of {CODINGS}, got {coding!r}")
    return _CODINGS[coding]
