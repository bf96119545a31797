"""Counters for spiking neurons: bpsn_ext's BPSN and single-step neurons, SpikingJelly and
snnTorch neurons.  Neuron updates are elementwise ops per neuron per time step (``dense=0``:
an ANN has no neurons); a threshold comparison and a reset each count as one add.

| neuron | mul | add | per neuron and step |
|---|---|---|---|
| single-step (S3NN) ``SingleStepNode`` / ``SingleStepLeaky`` | 0 | 1 | compare only: u = x |
| IF (SpikingJelly ``IFNode`` family) | 0 | 3 | charge, compare, reset |
| LIF (SpikingJelly ``*LIF*Node``; snnTorch ``Leaky``, ``RLeaky``, ``Lapicque``) | 1 | 3 | + leak |
| snnTorch ``Synaptic``/``RSynaptic`` | 2 | 4 | + synaptic current |
| snnTorch ``Alpha`` | 3 | 5 | + two synaptic currents |
| other neurons of either framework | 1 | 3 | approximated as LIF (a note says so) |

BPSN (recurrent, inference form; the FFT / Toeplitz-matmul training kernels are not counted):
each leaky branch ``h = lam h + x`` is 1 mul + 1 add (a ``window`` kernel of k taps: k mul +
k-1 add), one branch per neuron under ``split``; fusion ``gate`` 2 mul + 1 add, ``avg`` 1 mul +
1 add, ``sum`` 2 add, ``concat`` and ``split`` none; firing 1 compare per output stream;
``refractory`` 1 add (the gate) and ``soft_reset``
2 mul + 2 add per output stream.  With a padding mask only real steps are counted.
Recurrent weights inside a neuron (snnTorch ``RLeaky``'s ``nn.Linear``) are child modules and
are counted as synapses on their own.

A spike function used on its own as an activation (a bpsn_ext or SpikingJelly surrogate module
called outside any counted neuron, e.g. Binary S4D's Heaviside) costs 1 compare (add) per
element, or 1 nonlin in its smooth (``spiking=False``) mode.  Inside a neuron it is part of the
neuron's cost and not counted again.
"""

from __future__ import annotations

import sys

import torch

from bpsn_ext.energy.ops import Ops

__all__ = ["neuron_counter", "bpsn_costs_of", "EXCLUSIVE", "STANDALONE"]


def _first(args, kwargs, *names):
    if args:
        return args[0]
    for name in names:
        if name in kwargs:
            return kwargs[name]
    return next(iter(kwargs.values()), None)


def _per_neuron(x: torch.Tensor, mul: int, add: int, label: str) -> Ops:
    n = x.numel()
    return Ops(mul=mul * n, add=add * n, dense=0, label=label)


def bpsn_costs(m) -> tuple[int, int, str]:
    """(mul, add, description) per neuron and real step of a `bpsn_ext.BPSN`."""
    taps = int(m.taps_f.shape[0]) if m.kernel == "window" else 0
    return bpsn_costs_of(m.kernel, m.fusion, m.runaway, taps)


def bpsn_costs_of(kernel: str, fusion: str, runaway: str, taps: int = 0) -> tuple[int, int, str]:
    """(mul, add, description) per neuron and real step of a BPSN with these options
    (``taps``: the window length of ``kernel="window"``)."""
    # under "split" each neuron runs one branch only (half forward, half backward)
    branches = 1 if fusion == "split" else 2
    if kernel == "leak":
        mul, add, branch = branches, branches, f"{branches} leaky branch(es)"
    else:
        mul, add = branches * taps, branches * (taps - 1)
        branch = f"{branches} window branch(es) ({taps} taps)"
    fused = {"gate": (2, 1), "avg": (1, 1), "sum": (0, 2), "concat": (0, 0), "split": (0, 0)}[
        fusion
    ]
    streams = 2 if fusion == "concat" else 1
    rule = {"refractory": (0, 1), "soft_reset": (2, 2), "none": (0, 0)}[runaway]
    mul += fused[0] + streams * rule[0]
    add += fused[1] + streams * (1 + rule[1])  # 1 compare per stream
    return mul, add, f"{branch}, {fusion} fusion, {runaway}"


def bpsn(m, args, kwargs, output, options) -> Ops:
    from bpsn_ext.core.masks import as_mask

    x = _first(args, kwargs, "x_seq", "input_")
    mask = args[1] if len(args) > 1 else kwargs.get("mask")
    mul, add, label = bpsn_costs(m)
    n = x.numel()
    if mask is not None and x.dim() >= 2:
        T, N = x.shape[:2]
        m_bool = as_mask(mask, T, N, x.device)
        n = int(m_bool.sum()) * (x.numel() // max(T * N, 1))
    return Ops(mul=mul * n, add=add * n, dense=0, label=label)


def single_step(m, args, kwargs, output, options) -> Ops:
    return _per_neuron(_first(args, kwargs, "x", "input_"), 0, 1, "single step: compare")


def _sj_costs(m) -> tuple[int, int, str]:
    names = [c.__name__ for c in type(m).__mro__]
    if any("LIF" in n for n in names):
        return 1, 3, "LIF: leak, charge, compare, reset"
    if any(n.endswith("IFNode") for n in names):
        return 0, 3, "IF: charge, compare, reset"
    return 1, 3, f"{type(m).__name__} approximated as LIF"


def sj_neuron(m, args, kwargs, output, options) -> Ops:
    mul, add, label = _sj_costs(m)
    return _per_neuron(_first(args, kwargs, "x", "x_seq"), mul, add, label)


_SNN_COSTS = {
    "Leaky": (1, 3),
    "RLeaky": (1, 3),
    "Lapicque": (1, 3),
    "Synaptic": (2, 4),
    "RSynaptic": (2, 4),
    "Alpha": (3, 5),
}


def snntorch_neuron(m, args, kwargs, output, options) -> Ops:
    for cls in type(m).__mro__:
        if cls.__name__ in _SNN_COSTS:
            mul, add = _SNN_COSTS[cls.__name__]
            label = f"{cls.__name__}: {mul} mul + {add} add"
            break
    else:
        mul, add, label = 1, 3, f"{type(m).__name__} approximated as Leaky"
    return _per_neuron(_first(args, kwargs, "input_", "x"), mul, add, label)


def spike_function(m, args, kwargs, output, options) -> Ops:
    x = _first(args, kwargs, "x", "input")
    if getattr(m, "spiking", True):
        return Ops(add=x.numel(), dense=0, label="spike: compare")
    return Ops(nonlin=x.numel(), dense=0, label="smooth surrogate primitive")


def _cls(module: str, name: str):
    """The class ``module.name`` if that module is already imported (never imports it)."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def neuron_counter(m):
    """The counter for a neuron module, or None if ``m`` is not one."""
    from bpsn_ext.bpsn_module import BPSN

    if isinstance(m, BPSN):  # also SpikingJelly's BPSNNode and snnTorch's BPSNLeaky
        return bpsn
    for module, name in (
        ("bpsn_ext.spikingjelly.single_step_node", "SingleStepNode"),
        ("bpsn_ext.snntorch.single_step_leaky", "SingleStepLeaky"),
    ):
        cls = _cls(module, name)
        if cls is not None and isinstance(m, cls):
            return single_step
    sj_base = _cls("spikingjelly.activation_based.neuron", "BaseNode")
    if sj_base is not None and isinstance(m, sj_base):
        return sj_neuron
    snn_base = _cls("snntorch", "SpikingNeuron")
    if snn_base is not None and isinstance(m, snn_base):
        return snntorch_neuron
    for module, name in (
        ("bpsn_ext.surrogate", "SurrogateFunction"),
        ("spikingjelly.activation_based.surrogate", "SurrogateFunctionBase"),
    ):
        cls = _cls(module, name)
        if cls is not None and isinstance(m, cls):
            return spike_function
    return None


# counters that cover their module's children too (none at present)
EXCLUSIVE: frozenset = frozenset()
# counters that only count outside any counted module (inside a neuron they are its cost)
STANDALONE = frozenset({spike_function})
