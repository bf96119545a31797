"""Framework-agnostic machinery to replace modules of a model in place.

The framework adapters (``bpsn_ext.spikingjelly.swap_neurons``,
``bpsn_ext.snntorch.swap_neurons``) add their own checks and clean-up on top of this.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from bpsn_ext.layout_probe import attach_layout_probe
from bpsn_ext.swap_losses import refuse_extra_state, warn_dropped

__all__ = [
    "Swap",
    "SwapReport",
    "normalise_rules",
    "plan_swaps",
    "apply_swaps",
    "reference_tensor",
    "carried_surrogate",
]

Matcher = type | Callable[[nn.Module], bool]
Factory = Callable[[nn.Module], nn.Module]
Rules = Mapping[Matcher, object] | Iterable[tuple[Matcher, object]]


@dataclass
class Swap:
    """One planned replacement: ``parent.<attr>`` (qualified name ``name``) ``old -> new``."""

    name: str
    parent: nn.Module
    attr: str
    old: nn.Module
    factory: Factory
    new: nn.Module | None = None


def carried_surrogate(old_surrogate, given, keep_surrogate: bool, arg: str):
    """The surrogate a converted neuron gets: the old neuron's if `keep_surrogate`, else `given`
    (`None`: the new class's default).

    `arg` is the framework's name for the surrogate argument, used in the messages.
    """
    if keep_surrogate and given is not None:
        raise ValueError(f"pass either {arg} or keep_surrogate=True, not both")
    return old_surrogate if keep_surrogate else given


class SwapReport(list):
    """List of ``(qualified_name, old, new)``; ``.model`` is the model that was changed."""

    model: nn.Module


def _as_factory(target: object) -> Factory:
    if isinstance(target, type) and issubclass(target, nn.Module):
        from_neuron = getattr(target, "from_neuron", None)
        if from_neuron is None:
            raise TypeError(
                f"{target.__name__} has no from_neuron(old) classmethod; pass a factory "
                f"callable old_module -> new_module instead of the class"
            )
        return from_neuron
    if callable(target):
        return target
    raise TypeError(
        f"a swap rule target must be a module class with from_neuron() or a callable "
        f"old -> new, got {type(target).__name__}"
    )


def _as_matcher(key: object) -> Callable[[nn.Module], bool]:
    if isinstance(key, type):
        return lambda m, cls=key: type(m) is cls  # exact type: subclasses are not replaced
    if callable(key):
        return key
    raise TypeError(
        f"a swap rule key must be a module class (matched by exact type) or a predicate "
        f"module -> bool, got {type(key).__name__}"
    )


def normalise_rules(rules: Rules) -> list[tuple[Callable[[nn.Module], bool], Factory]]:
    """``{Type: Target}`` or ``[(Type | predicate, Target | factory), ...]`` -> matcher list."""
    items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    if not items:
        raise ValueError("swap rules are empty; expected {OldClass: NewClass or factory}")
    out = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"each swap rule must be a pair (match, target), got {item!r}")
        out.append((_as_matcher(item[0]), _as_factory(item[1])))
    return out


def plan_swaps(model: nn.Module, rules: Rules) -> list[Swap]:
    """Find every child matching a rule (outermost match wins; its descendants are skipped)."""
    compiled = normalise_rules(rules)
    if any(match(model) for match, _ in compiled):
        raise ValueError(
            f"the model itself ({type(model).__name__}) matches a swap rule; swap_neurons "
            f"replaces children of a model: build the replacement directly instead"
        )
    plan: list[Swap] = []
    matched_prefixes: list[str] = []
    for parent_name, parent in model.named_modules():
        if any(parent_name == p or parent_name.startswith(p + ".") for p in matched_prefixes):
            continue
        for attr, child in parent.named_children():
            for match, factory in compiled:
                if match(child):
                    name = f"{parent_name}.{attr}" if parent_name else attr
                    plan.append(Swap(name, parent, attr, child, factory))
                    matched_prefixes.append(name)
                    break
    return plan


def reference_tensor(*modules: nn.Module) -> torch.Tensor | None:
    """First floating parameter, buffer or tensor attribute of the given modules, in order."""
    for m in modules:
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
            if t.is_floating_point():
                return t
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
                return value
        memories = getattr(m, "_memories", None)  # SpikingJelly state
        if isinstance(memories, dict):
            for value in memories.values():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    return value
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point():
                return t
    return None


def _deepcopy_detached(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works after a forward pass: state tensors that are part of an
    autograd graph (snnTorch ``mem``, SpikingJelly ``v``) are copied detached."""
    memo: dict[int, object] = {}
    for m in model.modules():
        values = list(vars(m).values()) + list(m._buffers.values())
        memories = getattr(m, "_memories", None)
        if isinstance(memories, dict):
            values += list(memories.values())
        for value in values:
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def apply_swaps(
    model: nn.Module,
    rules: Rules,
    *,
    inplace: bool = True,
    check: Callable[[Swap], None] | None = None,
    followers: tuple[type, ...] = (),
) -> SwapReport:
    """Build all replacements, ``check`` each (may raise), then ``setattr`` them all.

    Nothing is modified unless every replacement passes ``check`` and
    `bpsn_ext.swap_losses.refuse_extra_state`; then each swap that drops state or parameters
    warns, naming them (`bpsn_ext.swap_losses.warn_dropped`).  The new modules keep
    the old module's ``training`` flag and the device/dtype of the nearest tensor.  A new BPSN
    without ``channel_dim`` finds its channel axis on the model's first forward
    (`bpsn_ext.layout_probe`; ``followers``: the framework's neuron classes, whose outputs
    keep their input's layout).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = _deepcopy_detached(model)
    plan = plan_swaps(model, rules)
    for swap in plan:
        new = swap.factory(swap.old)
        if not isinstance(new, nn.Module):
            raise TypeError(
                f"the factory for {swap.name} returned {type(new).__name__}, expected an nn.Module"
            )
        ref = reference_tensor(swap.old, swap.parent, model)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        new.train(swap.old.training)
        swap.new = new
        if check is not None:
            check(swap)
        refuse_extra_state(swap.name, swap.old, new)
    report = SwapReport()
    report.model = model
    for swap in plan:
        warn_dropped(swap.name, swap.old, swap.new)
        setattr(swap.parent, swap.attr, swap.new)
        report.append((swap.name, swap.old, swap.new))
    attach_layout_probe(model, [(swap.name, swap.new) for swap in plan], followers)
    if not plan:
        warnings.warn(
            "swap_neurons: no module matched the rules; nothing was replaced", stacklevel=3
        )
    return report
