"""A firing-rate regulariser for SNN-BERT's BPSNs (ours; the paper does not describe one).

Under individual coding the synaptic energy of SNN-BERT grows with the rate at which its BPSNs
fire (every spike is one accumulate per synapse it drives).  `SpikeRates` records, during one
forward pass, the mean firing rate of every `bpsn_ext.BPSN` output over the real tokens (the
padding mask the neuron receives), differentiably through the surrogate gradient;
`rate_penalty` turns them into a loss term::

    penalty = weight * sum_i w_i max(0, rate_i - target) / sum_i w_i

over the BPSN calls ``i`` of the pass.  ``weighting="neuron"`` gives every BPSN the same
``w_i = 1``; ``weighting="synapse"`` weighs each by the synapses its spikes drive, ``w_i =
channels x (out_features of the Linear layers fed by its output)``, so the term is the
accumulate count of those layers over their dense count (spikes that feed no Linear, such as
q, k and v into the attention products, get ``w_i = 0``).  ``target=0`` is a plain L1 penalty
on the spike count; a target above 0 leaves neurons alone once they fire at or below it.
`glue_loss` (``rate_reg`` / ``rate_target`` / ``rate_weighting``) adds it to the task loss;
weight 0 adds nothing and records nothing.

Example::

    with SpikeRates(model) as rates:
        logits = model(ids, lengths)
    loss = F.cross_entropy(logits, labels) + rates.penalty(1.0, target=0.05)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "WEIGHTINGS",
    "RateReg",
    "SpikeRates",
    "check_rate_args",
    "masked_rate",
    "rate_penalty",
]

WEIGHTINGS = ("neuron", "synapse")


class SpikeRates:
    """Context manager: the mean firing rate of each BPSN's output in the forward passes run
    inside it, as 0-d tensors that carry gradients (``rates``, one per BPSN call), and their
    weights (``weights``, floats; see the module docstring).

    Args:
        model: a module holding `bpsn_ext.BPSN` neurons (SNN-BERT under individual coding).
        weighting: ``"neuron"`` (each BPSN alike) or ``"synapse"`` (by the synapses it drives).

    Raises:
        ValueError: ``model`` holds no BPSN (repeat coding, the ANN twin), or another weighting.
    """

    def __init__(self, model: nn.Module, weighting: str = "neuron") -> None:
        from bpsn_ext.bpsn_module import BPSN

        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.neurons = [m for m in model.modules() if isinstance(m, BPSN)]
        if not self.neurons:
            raise ValueError(
                "the firing-rate regulariser needs BPSN neurons (SNN-BERT with "
                f"coding='individual'); {type(model).__name__} has none"
            )
        self.weighting = weighting
        self.linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.rates: list[torch.Tensor] = []
        self.weights: list[float] = []
        self._outputs: dict[int, int] = {}  # id of a BPSN output -> its index in rates
        self._handles: list = []

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
        self._outputs[id(out)] = len(self.rates)
        self.rates.append(masked_rate(out, mask))
        self.weights.append(1.0 if self.weighting == "neuron" else 0.0)

    def _linear_hook(self, module: nn.Linear, args: tuple) -> None:
        i = self._outputs.get(id(args[0])) if args else None
        if i is not None:
            self.weights[i] += float(module.in_features * module.out_features)

    def __enter__(self) -> SpikeRates:
        self.rates, self.weights, self._outputs = [], [], {}
        self._handles = [
            m.register_forward_hook(self._hook, with_kwargs=True) for m in self.neurons
        ]
        if self.weighting == "synapse":
            self._handles += [m.register_forward_pre_hook(self._linear_hook) for m in self.linears]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._outputs = [], {}

    def penalty(self, weight: float, target: float = 0.0) -> torch.Tensor:
        """`rate_penalty` of the recorded rates with their weights."""
        return rate_penalty(self.rates, weight, target, self.weights)


@dataclass(frozen=True)
class RateReg:
    """The regulariser's settings: ``weight`` (0: off), ``target`` rate and ``weighting``
    (``"neuron"`` or ``"synapse"``), validated on creation.

    Example:
        >>> RateReg(2.0, weighting="synapse").active
        True
    """

    weight: float = 0.0
    target: float = 0.0
    weighting: str = "neuron"

    def __post_init__(self) -> None:
        check_rate_args(self.weight, self.target, self.weighting)

    @property
    def active(self) -> bool:
        return self.weight > 0.0


def masked_rate(spikes: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``spikes`` ``[T, N, *]`` over the real steps of the bool ``mask`` ``[T, N]``
    (all steps when None): a 0-d tensor."""
    if mask is None:
        return spikes.mean()
    w = mask.to(spikes.dtype).reshape(*mask.shape, *([1] * (spikes.dim() - 2)))
    per_step = spikes[0, 0].numel()
    return (spikes * w).sum() / (w.sum() * per_step).clamp_min(1.0)


def check_rate_args(weight: float, target: float, weighting: str = "neuron") -> None:
    """Raise ValueError unless ``weight >= 0``, ``0 <= target < 1`` (finite floats) and
    ``weighting`` is one of `WEIGHTINGS`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"the rate weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not weight >= 0.0 or weight == float("inf"):
        raise ValueError(f"the rate regulariser's weight must be a finite float >= 0, got {weight}")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"the target firing rate must lie in [0, 1), got {target}")


def rate_penalty(
    rates: list[torch.Tensor],
    weight: float,
    target: float = 0.0,
    weights: list[float] | None = None,
) -> torch.Tensor:
    """``weight * sum_i w_i max(0, rates[i] - target) / sum_i w_i``: the regulariser's loss
    term (0-d); ``weights`` ``w_i`` default to 1.

    Args:
        rates: the firing rates of `SpikeRates` (0-d tensors).
        weight: the term's weight (>= 0).
        target: the rate under which a neuron is not penalised, in [0, 1).
        weights: one float >= 0 per rate (not all 0), or None.

    Example:
        >>> round(float(rate_penalty([torch.tensor(0.3), torch.tensor(0.1)], 2.0, 0.2)), 4)
        0.1
    """
    check_rate_args(weight, target)
    if not rates:
        raise ValueError("no firing rate was recorded (no BPSN ran in the forward pass)")
    w = torch.ones(len(rates)) if weights is None else torch.tensor(weights, dtype=torch.float32)
    if w.shape != (len(rates),) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError(f"weights must be {len(rates)} floats >= 0, not all 0; got {weights}")
    excess = torch.stack([torch.clamp(r - target, min=0.0) for r in rates])
    w = w.to(excess.device, excess.dtype)
    return weight * (excess * w).sum() / w.sum()
