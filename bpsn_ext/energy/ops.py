"""Operation records: what a layer reports for one call, and the helper for synaptic ops.

A counter (built in, registered with `bpsn_ext.energy.register_counter`, or a module's
own ``energy_ops(inputs, output)`` method) returns one `Ops` or a list of them.  The
counts are totals over the whole call (every sample, every time step in the tensor).

* ``mac``: multiply-accumulates with real-valued operands (synaptic or state updates);
* ``ac``: accumulates driven by spike or ternary operands (nonzero fraction x dense MACs);
* ``mul`` / ``add``: elementwise multiplies and adds (neuron updates, norms, bias, gating;
  a threshold comparison counts as an add);
* ``nonlin``: nonlinear function evaluations (sigmoid, GELU, exp, rsqrt, ...);
* ``dense``: what the record costs as MACs in the ANN counterpart of the network.  ``None``
  means ``mac + ac`` (the dense-equivalent of the MACs and ACs).  Neuron updates have
  ``dense=0``: an ANN has no neurons.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from bpsn_ext.energy.detect import classify, kind_of, nonzero_rate

__all__ = ["Ops", "synaptic", "COUNT_FIELDS"]

COUNT_FIELDS = ("mac", "ac", "mul", "add", "nonlin")


@dataclass
class Ops:
    """Operation counts of one part of one layer call (see the module docstring)."""

    mac: float = 0.0
    ac: float = 0.0
    mul: float = 0.0
    add: float = 0.0
    nonlin: float = 0.0
    dense: float | None = None
    label: str = ""

    def __post_init__(self) -> None:
        for f in (*COUNT_FIELDS, "dense"):
            value = getattr(self, f)
            if value is None and f == "dense":
                continue
            if isinstance(value, torch.Tensor):
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Ops.{f} must be a number >= 0, got {value!r}")
            setattr(self, f, float(value))

    @property
    def dense_macs(self) -> float:
        return self.mac + self.ac if self.dense is None else self.dense

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def synaptic(
    x: torch.Tensor,
    dense: float,
    *,
    weight: torch.Tensor | None = None,
    label: str = "",
) -> Ops:
    """Ops of a weighted sum with ``dense`` MACs whose activation operand is ``x``.

    * ``x`` real and ``weight`` real (or not given): ``mac = dense``;
    * ``x`` spike/ternary: ``ac = nonzero_rate(x) * dense``;
    * ``x`` real, ``weight`` spike/ternary (e.g. GSU's Tern(W) y): ``ac = nonzero_rate(W) *
      dense`` (zero weights are skipped);
    * both spike/ternary: ``ac = rate(x) * rate(W) * dense`` (independence assumed).

    ``dense`` is always recorded for the ANN baseline.  The kind of ``x`` honours
    ``estimate(..., input_kind=...)`` for the layer being counted.
    """
    dense = float(dense)
    x_sparse = kind_of(x) != "real"
    rate = nonzero_rate(x) if x_sparse else 1.0
    w_sparse = False
    if weight is not None:
        w_sparse = classify(weight) != "real"
        if w_sparse:
            rate *= nonzero_rate(weight)
    if x_sparse or w_sparse:
        return Ops(ac=rate * dense, dense=dense, label=label)
    return Ops(mac=dense, dense=dense, label=label)
