"""How a module declares its cost: `register_counter`, or an ``energy_ops`` method.

Lookup order for a module ``m`` (the first hit wins):

1. a counter registered with ``register_counter(cls, fn)`` for ``type(m)`` or a base class
   (the most specific class in the MRO wins);
2. the protocol method ``m.energy_ops(inputs, output)``;
3. the built-in counters (this package's SSM layers, registered by `bpsn_ext.energy.ssm_counters`;
   PyTorch layers, BPSN, single-step, SpikingJelly, snnTorch neurons).

A counter returns an `Ops`, a list of them, or None (nothing to
count), with totals for the whole call.  A counter that also wants the call's keyword
arguments (e.g. ``mask=``) declares a parameter ``kwargs``: ``energy_ops(self, inputs,
output, kwargs)`` / ``fn(module, inputs, output, kwargs)``; they are passed as ``kwargs=``.

A counter covers the module's *own* arithmetic: child
modules are counted by their own hooks, unless the counter is *exclusive*
(``register_counter(..., exclusive=True)`` or a class attribute ``energy_exclusive = True``),
in which case it covers the whole subtree and the children are not counted again.  Matmuls
made directly inside a counted module are never captured separately: the counter owns them
(this is what keeps training-time FFT/scan/Toeplitz kernels out of the count).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from bpsn_ext.energy.neurons import EXCLUSIVE, STANDALONE, neuron_counter
from bpsn_ext.energy.ops import Ops
from bpsn_ext.energy.torch_layers import EXCLUSIVE_TORCH, TORCH_COUNTERS

__all__ = ["register_counter", "unregister_counter", "find_counter", "Counter"]

_REGISTRY: dict[type, tuple[Callable, bool]] = {}


@dataclass(frozen=True)
class Counter:
    """A resolved counter: ``fn(module, args, kwargs, output, options)``."""

    fn: Callable
    exclusive: bool
    source: str  # "registered", "protocol" or "builtin"
    standalone_only: bool = False  # count only outside every other counted module


def register_counter(cls: type, fn: Callable | None = None, *, exclusive: bool = False):
    """Count modules of ``cls`` (and subclasses) with ``fn(module, inputs, output)``.

    ``inputs`` is the tuple of positional arguments of the call, ``output`` what it returned.
    Usable as a decorator: ``@register_counter(MyLayer)``.  Registering again replaces the
    previous counter; `unregister_counter` removes it.
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"register_counter needs an nn.Module subclass, got {cls!r}")

    def add(f: Callable) -> Callable:
        if not callable(f):
            raise TypeError(f"the counter for {cls.__name__} must be callable, got {f!r}")
        _REGISTRY[cls] = (f, bool(exclusive))
        return f

    return add if fn is None else add(fn)


_BUILTIN_LAYERS: list[tuple[type, Callable, bool]] = []


def register_builtin_layer(cls: type, fn: Callable, *, exclusive: bool) -> None:
    """This package's own layers (filled by `bpsn_ext.energy.ssm_counters`): looked up after a
    module's ``energy_ops`` method, so a user's subclass can still declare its own cost."""
    _BUILTIN_LAYERS.append((cls, fn, bool(exclusive)))


def unregister_counter(cls: type) -> None:
    """Forget the counter registered for exactly ``cls`` (no error if there is none)."""
    _REGISTRY.pop(cls, None)


def _takes_kwargs(fn: Callable) -> bool:
    """Whether ``fn`` accepts the call's keyword arguments (a ``kwargs`` parameter or ``**``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "kwargs" or p.kind is p.VAR_KEYWORD for p in params)


def _user(fn: Callable) -> Callable:
    with_kwargs = _takes_kwargs(fn)

    def call(module, args, kwargs, output, options):
        if with_kwargs:
            return fn(module, args, output, kwargs=kwargs)
        return fn(module, args, output)

    return call


def _protocol(module, args, kwargs, output, options):
    if _takes_kwargs(module.energy_ops):
        return module.energy_ops(args, output, kwargs=kwargs)
    return module.energy_ops(args, output)


def find_counter(module: nn.Module) -> Counter | None:
    """The `Counter` for ``module``, or None."""
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            fn, exclusive = _REGISTRY[cls]
            return Counter(_user(fn), exclusive, "registered")
    method = getattr(module, "energy_ops", None)
    if method is not None and callable(method):
        if len(inspect.signature(method).parameters) < 2:
            raise TypeError(f"{type(module).__name__}.energy_ops must take (inputs, output)")
        return Counter(_protocol, bool(getattr(module, "energy_exclusive", False)), "protocol")
    for cls, fn, exclusive in _BUILTIN_LAYERS:
        if isinstance(module, cls):
            return Counter(_user(fn), exclusive, "builtin")
    found = neuron_counter(module)
    if found is not None:
        return Counter(found, found in EXCLUSIVE, "builtin", found in STANDALONE)
    for classes, fn in TORCH_COUNTERS:
        if isinstance(module, classes):
            return Counter(fn, fn in EXCLUSIVE_TORCH, "builtin")
    return None


def as_ops_list(result) -> list[Ops]:
    """Normalise a counter's return value to a list of `Ops`."""
    if result is None:
        return []
    if isinstance(result, Ops):
        return [result]
    try:
        items = list(result)
    except TypeError:
        items = None
    if items is None or not all(isinstance(r, Ops) for r in items):
        raise TypeError(
            f"it must return an Ops, a list of Ops or None, got {type(result).__name__}"
        )
    return items
