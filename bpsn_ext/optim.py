"""Optimizer parameter groups for state-space models, the way S4/S4D training sets them up.

The SSM's own parameters (eigenvalues ``log_A_real``/``A_imag``, step sizes ``log_dt`` and, for
S5, the input matrix ``B``) train with a small learning rate ``min(ssm_lr, lr)`` and no weight
decay; everything else (``C``, ``D``, linear layers, norms) uses the base ``lr`` and
``weight_decay``.  Other parameters with a state-spaces ``_optim`` hint (for example the
learnable scale of a GSU ternarisation, ``{"lr": 0.001, "weight_decay": 0.0}`` as in the PRF
code) get the hint's values.  Example::

    opt = torch.optim.AdamW(ssm_param_groups(model, lr=0.01, weight_decay=0.01))

The same hints also drive state-spaces/s4's own ``setup_optimizer`` (one group per distinct
hint): bpsn_ext's SSM parameters carry ``{"lr": 0.001, "weight_decay": 0.0}``.  A module mixing
in `OptimHints` lists its hinted parameters in ``ssm_parameter_names`` and calls
``self._tag_optim()`` at the end of ``__init__``; the hints survive ``copy.deepcopy`` and
pickling (``deepcopy`` of a parameter drops its attributes, so ``__setstate__`` re-applies
them).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bpsn_ext.util.arguments import check_float

__all__ = [
    "SSM_OPTIM",
    "OptimHints",
    "neuron_param_groups",
    "ssm_parameters",
    "ssm_param_groups",
]

SSM_OPTIM = {"lr": 0.001, "weight_decay": 0.0}  # s4 example.py: lr min(0.001, base), no decay


class OptimHints:
    """Mixin for an ``nn.Module``: tag ``ssm_parameter_names`` with ``optim_hint``.

    Example::

        layer = S4D(64)
        layer.log_dt._optim        # {'lr': 0.001, 'weight_decay': 0.0}
    """

    ssm_parameter_names: tuple[str, ...] = ()
    optim_hint: dict = SSM_OPTIM

    def _tag_optim(self) -> None:
        for name in self.ssm_parameter_names:
            p = self._parameters.get(name)
            if p is not None:
                p._optim = dict(self.optim_hint)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._tag_optim()


def _declared(model: nn.Module) -> dict[int, nn.Parameter]:
    """Parameters named in a module's ``ssm_parameter_names``, each once, in module order."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name in getattr(module, "ssm_parameter_names", ()):
            p = module._parameters.get(name)
            if p is not None:
                found.setdefault(id(p), p)
    return found


def ssm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The SSM parameters of ``model`` (each once, in module order).

    A module declares them by name in ``ssm_parameter_names`` (bpsn_ext's ``S4D`` and
    ``SpikingS5``); a parameter that carries an ``_optim`` attribute (the state-spaces/s4
    convention) counts as well.
    """
    found = _declared(model)
    for p in model.parameters():
        if hasattr(p, "_optim"):
            found.setdefault(id(p), p)
    return list(found.values())


def _hint(p: nn.Parameter, default_lr: float) -> tuple[float, float]:
    hint = getattr(p, "_optim", None)
    if not isinstance(hint, dict):
        raise TypeError(f"a parameter's _optim hint must be a dict, got {type(hint).__name__}")
    return float(hint.get("lr", default_lr)), float(hint.get("weight_decay", 0.0))


def ssm_param_groups(
    model: nn.Module, lr: float, weight_decay: float, ssm_lr: float = 0.001
) -> list[dict]:
    """Parameter groups for ``torch.optim`` (AdamW in the S4 recipe).

    Returns ``[{"params": others, "lr": lr, "weight_decay": weight_decay},
    {"params": ssm, "lr": min(ssm_lr, lr), "weight_decay": 0.0}, ...]``.  ``ssm`` holds the
    parameters declared in ``ssm_parameter_names`` (their own ``_optim`` hint is overruled by
    ``ssm_lr``); any other parameter with an ``_optim`` hint gets the hint's ``lr`` (default
    ``min(ssm_lr, lr)``) and ``weight_decay`` (default 0), in a further group unless those
    equal the SSM group's.  Groups without parameters are left out; parameters with
    ``requires_grad=False`` are skipped.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_float("lr", lr, positive=True)
    check_float("ssm_lr", ssm_lr, positive=True)
    check_float("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    small = min(ssm_lr, lr)
    declared = _declared(model)
    hinted: dict[tuple[float, float], list[nn.Parameter]] = {(small, 0.0): []}
    others = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in declared:
            hinted[(small, 0.0)].append(p)
        elif hasattr(p, "_optim"):
            hinted.setdefault(_hint(p, small), []).append(p)
        else:
            others.append(p)
    groups = [{"params": others, "lr": lr, "weight_decay": weight_decay}] if others else []
    for (g_lr, g_wd), params in hinted.items():
        if params:
            groups.append({"params": params, "lr": g_lr, "weight_decay": g_wd})
    return groups


def neuron_param_groups(neuron_lr_mult: float) -> Callable[[nn.Module, float, float], list[dict]]:
    """A `TrainConfig.param_groups` builder ``groups(model, lr, weight_decay)`` for a model
    with ``neuron_parameters()`` (SNN-BERT): weights with decay; biases and norms without;
    the neurons' parameters (decays, gates, thresholds) without decay at
    ``lr * neuron_lr_mult``.

    Example::

        groups = neuron_param_groups(10.0)
        opt = torch.optim.AdamW(groups(model, lr=1e-4, weight_decay=0.01))
    """
    check_float("neuron_lr_mult", neuron_lr_mult, positive=True)

    def groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        neuron = {id(p) for p in model.neuron_parameters()}
        decay, no_decay, neurons = [], [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in neuron:
                neurons.append(p)
            elif p.dim() < 2 or "norm" in name:
                no_decay.append(p)
            else:
                decay.append(p)
        out = [
            {"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
        if neurons:
            out.append({"params": neurons, "lr": lr * neuron_lr_mult, "weight_decay": 0.0})
        return out

    groups.__qualname__ = f"neuron_param_groups(neuron_lr_mult={neuron_lr_mult})"
    return groups
