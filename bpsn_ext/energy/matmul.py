"""Capture of matrix products made outside counted layers (attention: ``q @ k.T``, ``a @ v``).

`MatmulCapture` is a `torch.overrides.TorchFunctionMode` active while
``estimate`` runs the model.  It sees ``torch.matmul`` / ``@`` / ``mm`` / ``bmm`` /
``addmm`` / ``baddbmm`` and ``F.linear`` and reports each call's `Ops` to a callback,
which attributes them to the innermost module being executed (or drops them when a counted
module owns them).  ``einsum`` and convolutions called as functions are not captured.

Per call, with ``dense = out.numel() * k`` (k the contracted size):

* both operands spike/ternary: ``AC`` = the number of products of two nonzero entries
  (exact, computed with a matmul of the nonzero masks);
* one operand spike/ternary: ``AC = nonzero fraction of that operand * dense``;
* both real: ``MAC = dense``;
* ``addmm`` / ``baddbmm`` / ``F.linear`` with a bias: one add per output element.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from bpsn_ext.energy.detect import classify, kind_of, nonzero_rate
from bpsn_ext.energy.ops import Ops

__all__ = ["MatmulCapture", "matmul_ops", "operands", "CAPTURED"]

_PAIR = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.mm,
    torch.Tensor.mm,
    torch.bmm,
    torch.Tensor.bmm,
}
_ADD = {torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}
_NAMES = {
    F.linear: "linear",
    torch.addmm: "addmm",
    torch.Tensor.addmm: "addmm",
    torch.baddbmm: "baddbmm",
    torch.Tensor.baddbmm: "baddbmm",
    torch.bmm: "bmm",
    torch.Tensor.bmm: "bmm",
    torch.mm: "mm",
    torch.Tensor.mm: "mm",
}
CAPTURED = _PAIR | _ADD | {F.linear}


def _arg(args, kwargs, i: int, *names):
    if len(args) > i:
        return args[i]
    for n in names:
        if n in kwargs:
            return kwargs[n]
    return None


def _product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, label: str) -> Ops:
    k = a.shape[-1]
    dense = out.numel() * k
    sa, sb = kind_of(a) != "real", classify(b) != "real"
    if sa and sb:
        with torch.no_grad():
            hits = torch.matmul((a != 0).to(torch.float64), (b != 0).to(torch.float64)).sum()
        return Ops(ac=float(hits), dense=dense, label=f"{label} spike x spike")
    if sa:
        return Ops(ac=nonzero_rate(a) * dense, dense=dense, label=f"{label} spike x real")
    if sb:
        return Ops(ac=nonzero_rate(b) * dense, dense=dense, label=f"{label} real x spike")
    return Ops(mac=dense, dense=dense, label=f"{label} real x real")


def operands(func, args, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors ``(a, b)`` of ``a @ b`` for a captured call (``F.linear``: ``x, W.T``)."""
    if func is F.linear:
        return _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight").t()
    if func in _ADD:
        return (_arg(args, kwargs, 1, "mat1", "batch1"), _arg(args, kwargs, 2, "mat2", "batch2"))
    return _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "other", "mat2")


def matmul_ops(func, args, kwargs, out) -> list[Ops]:
    """The `Ops` of one captured call (see the module docstring)."""
    name = _NAMES.get(func, "matmul")
    a, b = operands(func, args, kwargs)
    ops = [_product(a, b, out, name)]
    if func is F.linear:
        bias = _arg(args, kwargs, 2, "bias")
    elif func in _ADD:
        bias = _arg(args, kwargs, 0, "input")
    else:
        bias = None
    if isinstance(bias, torch.Tensor):
        ops.append(Ops(add=out.numel(), dense=0, label=f"{name} bias"))
    return ops


class MatmulCapture(TorchFunctionMode):
    """Calls ``on_call(name, func, args, kwargs, out)`` after every captured product."""

    def __init__(self, on_call: Callable) -> None:
        super().__init__()
        self.on_call = on_call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            captured = func in CAPTURED
        except TypeError:  # an unhashable callable
            captured = False
        if captured and isinstance(out, torch.Tensor):
            self.on_call(_NAMES.get(func, "matmul"), func, args, kwargs, out)
        return out
