"""Optimizer parameter groups for state-space models, the way S4/S4D training sets them up.

The SSM's own parameters (eigenvalues ``log_A_real``/``A_imag``, step sizes ``log_dt`` and, for
S5, the input matrix ``B``) train with a small learning rate ``min(ssm_lr, lr)`` and no weight
decay; everything else (``C``, ``D``, linear layers, norms) uses the base ``lr`` and
``weight_decay``.  Example::

    opt = torch.optim.AdamW(ssm_param_groups(model, lr=0.01, weight_decay=0.01))
"""

from __future__ import annotations

from torch import nn

from bpsn_ext.core.checks import check_float

__all__ = ["ssm_parameters", "ssm_param_groups"]


def ssm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The SSM parameters of ``model`` (each once, in module order).

    A module declares them by name in ``ssm_parameter_names`` (bpsn_ext's ``S4D`` and
    ``SpikingS5``); a parameter that carries an ``_optim`` attribute (the state-spaces/s4
    convention) counts as well.
    """
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name in getattr(module, "ssm_parameter_names", ()):
            p = module._parameters.get(name)
            if p is not None:
                found.setdefault(id(p), p)
    for p in model.parameters():
        if hasattr(p, "_optim"):
            found.setdefault(id(p), p)
    return list(found.values())


def ssm_param_groups(
    model: nn.Module, lr: float, weight_decay: float, ssm_lr: float = 0.001
) -> list[dict]:
    """Parameter groups for ``torch.optim`` (AdamW in the S4 recipe).

    Returns ``[{"params": others, "lr": lr, "weight_decay": weight_decay},
    {"params": ssm, "lr": min(ssm_lr, lr), "weight_decay": 0.0}]``; a group without parameters
    is left out, and parameters with ``requires_grad=False`` are skipped.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_float("lr", lr, positive=True)
    check_float("ssm_lr", ssm_lr, positive=True)
    check_float("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    ssm = [p for p in ssm_parameters(model) if p.requires_grad]
    ssm_ids = {id(p) for p in ssm}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ssm_ids]
    groups = []
    if others:
        groups.append({"params": others, "lr": lr, "weight_decay": weight_decay})
    if ssm:
        groups.append({"params": ssm, "lr": min(ssm_lr, lr), "weight_decay": 0.0})
    return groups
