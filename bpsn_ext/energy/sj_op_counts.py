"""Our operators' counts for SpikingJelly 2.0's operation counters (``op_counter``).

SpikingJelly 2.0 counts operations with a dispatch mode, ``DispatchCounterMode``, and counters
(``SynOpCounter``, ``ACCounter``, ...) whose rules are keyed by operator.  Our compiled kernels
are single opaque operators (``bpsn_ext::bpsn_cpu_forward``), and BPSN's torch paths run
different ATen operators for the same neuron; without rules the counters undercount BPSN, and
differently per path.  Here:

* `OP_COUNTS` is the table ``operator name -> fn(args, kwargs, out) -> (mul, add)``: the
  neuron's multiplications and additions (a threshold comparison is an add), the same numbers
  as `bpsn_ext.energy.estimate` (`bpsn_ext.energy.neurons.bpsn_costs_of`).  A new kernel
  operator adds its row here;
* `bpsn_ext::bpsn_neuron` is the one operator BPSN shows a registered counting mode, whichever
  path computes it (torch scan, FFT, native or GPU kernel): the path runs out of the counter's
  sight (`bpsn_ext.core.counting`), so every path counts the same.  The kernel operators' rows
  count them where they are seen directly (a counter whose mode is not registered);
* `sj_counter_rules` turns the table into ``extra_rules`` for SpikingJelly's counters, and
  registers ``DispatchCounterMode`` as a counting mode.

Example::

    from spikingjelly.activation_based.op_counter import ACCounter, DispatchCounterMode
    ac = ACCounter(extra_rules=sj_counter_rules("ac"))
    with DispatchCounterMode([ac]):
        net(x_seq)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bpsn_ext.core.counting import register_counting_mode
from bpsn_ext.core.masks import as_mask
from bpsn_ext.energy.neurons import bpsn_costs_of

__all__ = ["OP_COUNTS", "COUNTER_FIELDS", "sj_counter_rules", "bpsn_neuron"]


@torch.library.custom_op("bpsn_ext::bpsn_neuron", mutates_args=())
def bpsn_neuron(
    x_seq: Tensor,
    spikes: Tensor,
    mask: Tensor | None,
    kernel: str,
    fusion: str,
    runaway: str,
    taps: int,
) -> None:
    """Marks one BPSN call for operation counters; computes nothing."""


def _real_elements(x: Tensor, mask: Tensor | None) -> int:
    """Neuron-steps that count: all of ``x`` ``[T, N, *]``, or its real (unpadded) steps."""
    if mask is None or x.dim() < 2:
        return x.numel()
    T, N = x.shape[:2]
    return int(as_mask(mask, T, N, x.device).sum()) * (x.numel() // max(T * N, 1))


def _marker(args, kwargs, out) -> tuple[int, int]:
    x, _, mask, kernel, fusion, runaway, taps = args[:7]
    mul, add, _ = bpsn_costs_of(kernel, fusion, runaway, taps)
    n = _real_elements(x, mask)
    return mul * n, add * n


def _native_cpu(args, kwargs, out) -> tuple[int, int]:
    x, mask, refractory = args[0], args[4], args[8]
    mul, add, _ = bpsn_costs_of("leak", "split", "refractory" if refractory else "none")
    n = _real_elements(x, None if mask is None else mask.bool())
    return mul * n, add * n


# operator name -> (mul, add) of one call; a kernel operator of a neuron adds its row here
OP_COUNTS: dict[str, Callable[[tuple, dict, object], tuple[int, int]]] = {
    "bpsn_ext::bpsn_neuron": _marker,
    "bpsn_ext::bpsn_cpu_forward": _native_cpu,
}
# SpikingJelly counter -> what it counts of (mul, add): accumulates are the additions;
# synaptic operations are weight accumulates driven by spikes, which a neuron has none of
COUNTER_FIELDS: dict[str, Callable[[int, int], int]] = {
    "ac": lambda mul, add: add,
    "synop": lambda mul, add: 0,
}


def _overload(name: str):
    namespace, op = name.split("::")
    return getattr(getattr(torch.ops, namespace), op).default


def sj_counter_rules(kind: str) -> dict:
    """``extra_rules`` for SpikingJelly 2.0's counter ``kind`` (``"ac"``: ``ACCounter``,
    ``"synop"``: ``SynOpCounter``) covering every operator of `OP_COUNTS` that is loaded, and
    ``DispatchCounterMode`` registered as a counting mode (BPSN then shows it one operator)."""
    if kind not in COUNTER_FIELDS:
        raise ValueError(f"kind must be one of {tuple(COUNTER_FIELDS)}, got {kind!r}")
    from spikingjelly.activation_based.op_counter import DispatchCounterMode

    register_counting_mode(DispatchCounterMode)
    field = COUNTER_FIELDS[kind]
    rules = {}
    for name, counts in OP_COUNTS.items():
        try:
            op = _overload(name)
        except (AttributeError, RuntimeError):
            continue  # a kernel operator that is not loaded (e.g. no Triton here)
        rules[op] = lambda args, kwargs, out, counts=counts: field(*counts(args, kwargs, out))
    return rules
