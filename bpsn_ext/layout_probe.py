"""Find a swapped BPSN's channel axis from the data flow, on the model's first forward.

``swap_neurons`` cannot see a model's ``forward``: which layer feeds a neuron, and what happens
to the tensor on the way (a ``transpose``, a ``reshape`` that folds time into the batch), shows
only when data flows.  So a swapped BPSN whose ``channel_dim`` was not given is resolved lazily:
during the first forward of the swapped model a `torch.overrides.TorchFunctionMode` follows
every tensor that leaves a layer with a known channel axis (the rule table is
`bpsn_ext.core.channels.PRODUCERS`) through the operations that keep that axis intact (views,
transposes, permutes, reshapes that keep it whole, copies, elementwise operations, pooling,
spiking neurons).  When the tensor reaches the BPSN its ``channel_dim`` is set from where the
axis ended up.  Where the axis is lost on the way (merged by a reshape, mixed by a matmul, or
passed through an operation not followed) or lands on T or N, the BPSN raises a ValueError
naming ``channel_dim`` and the input's shape.  Once every swapped BPSN knows its axis the hooks
are removed and later forwards run untouched.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from bpsn_ext.core.channels import PRODUCERS, follow_layout

__all__ = ["LayoutProbe", "attach_layout_probe"]


class _Tracker(TorchFunctionMode):
    """Marks each tensor whose channel axis is known with that axis (by identity)."""

    def __init__(self) -> None:
        super().__init__()
        self.dims: dict[int, tuple[weakref.ref, int]] = {}

    def mark(self, t: object, dim: int | None) -> None:
        if isinstance(t, torch.Tensor) and dim is not None:
            self.dims[id(t)] = (weakref.ref(t), dim % max(t.dim(), 1))

    def dim_of(self, t: torch.Tensor) -> int | None:
        ref, dim = self.dims.get(id(t), (None, None))
        return dim if ref is not None and ref() is t else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        first = out[0] if isinstance(out, tuple) and out else out
        if not isinstance(first, torch.Tensor):
            return out
        rule = PRODUCERS.get(name)
        if rule is not None:
            self.mark(first, rule(first))
            return out
        for arg in args:  # the first followed tensor among the arguments
            if isinstance(arg, torch.Tensor) and self.dim_of(arg) is not None:
                self.mark(first, follow_layout(name, args, kwargs, arg, self.dim_of(arg), first))
                break
        return out


class _ProbeHook:
    """Base of the probe's hooks (found again by type when the probe removes them)."""

    def __init__(self, probe: LayoutProbe) -> None:
        self.probe = probe


class _Enter(_ProbeHook):
    def __call__(self, module, args):
        if self.probe.tracker is not None or not self.probe.pending:
            return
        self.probe.tracker = _Tracker()
        self.probe.tracker.__enter__()


class _Exit(_ProbeHook):
    def __call__(self, module, args, output):
        tracker, self.probe.tracker = self.probe.tracker, None
        if tracker is not None:
            tracker.__exit__(None, None, None)
        if not self.probe.pending:
            self.probe.remove()


class _Follow(_ProbeHook):
    """A spiking neuron's outputs keep its input's layout."""

    def __call__(self, module, args, output):
        tracker = self.probe.tracker
        if tracker is None or not args or not isinstance(args[0], torch.Tensor):
            return
        dim = tracker.dim_of(args[0])
        for out in output if isinstance(output, tuple) else (output,):
            if isinstance(out, torch.Tensor) and out.shape == args[0].shape:
                tracker.mark(out, dim)


class _Resolve(_ProbeHook):
    def __init__(self, probe: LayoutProbe, name: str) -> None:
        super().__init__(probe)
        self.name = name

    def __call__(self, module, args):
        if module.channel_dim is not None or self.name not in self.probe.pending:
            self.probe.pending.discard(self.name)
            return
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor):
            return  # the neuron's own argument check speaks
        dim = None if self.probe.tracker is None else self.probe.tracker.dim_of(x)
        if dim is None or dim < 2:
            raise ValueError(_unknown_axis_message(module, self.name, x, dim, self.probe))
        module.channel_dim = -1 if dim == x.dim() - 1 and dim != 2 else dim
        self.probe.pending.discard(self.name)


def _unknown_axis_message(module, name: str, x: torch.Tensor, dim, probe) -> str:
    if probe.tracker is None:
        why = "it was called outside the swapped model's forward, so the data flow was not seen"
    elif dim is not None:
        why = f"the channel axis of the layer that feeds it arrives in dimension {dim} (T or N)"
    else:
        why = (
            "no layer with a channel axis (convolution, norm, Linear) feeds it through "
            "operations that keep that axis whole (a reshape that merges it, a matmul, or an "
            "operation bpsn_ext does not follow lies in between)"
        )
    return (
        f"{type(module).__name__} at {name!r} cannot tell which dimension of its input of shape "
        f"{list(x.shape)} holds the channels: {why}.  Give channel_dim yourself, e.g. "
        f"swap_neurons(model, {{Old: lambda old: {type(module).__name__}.from_neuron(old, "
        f"channel_dim=2)}}) for [T, N, C, ...] or channel_dim=-1 for features last, or set "
        f"model.{name}.channel_dim before the first forward"
    )


class LayoutProbe:
    """The hooks that resolve the channel axis of swapped BPSNs on the first forward.

    Args:
        model: the model whose ``forward`` carries the data (its pre-hook starts following).
        neurons: ``(qualified_name, neuron)`` pairs whose ``channel_dim`` is None.
        followers: module classes whose outputs keep their input's layout (spiking neurons).
    """

    def __init__(self, model: nn.Module, neurons, followers: tuple[type, ...]) -> None:
        self.model, self.tracker = model, None
        self.pending = {name for name, _ in neurons}
        model.register_forward_pre_hook(_Enter(self))
        model.register_forward_hook(_Exit(self), always_call=True)
        for name, neuron in neurons:
            neuron.register_forward_pre_hook(_Resolve(self, name))
        for m in model.modules():
            if followers and isinstance(m, followers) and m is not model:
                m.register_forward_hook(_Follow(self))

    def remove(self) -> None:
        """Remove every hook of this probe from the model."""
        for m in self.model.modules():
            for hooks in (m._forward_pre_hooks, m._forward_hooks):
                for key, hook in list(hooks.items()):
                    if isinstance(hook, _ProbeHook) and hook.probe is self:
                        del hooks[key]
                        m._forward_hooks_always_called.pop(key, None)


def attach_layout_probe(model: nn.Module, neurons, followers: tuple[type, ...] = ()) -> None:
    """Resolve the channel axis of each ``(name, neuron)`` whose ``channel_dim`` is None and
    that needs one (per-channel parameters or ``fusion="split"``) on ``model``'s first forward.
    """
    waiting = [
        (name, n)
        for name, n in neurons
        if getattr(n, "channel_dim", 0) is None
        and (getattr(n, "channels", None) is not None or getattr(n, "fusion", "") == "split")
    ]
    if waiting:
        LayoutProbe(model, waiting, followers)
