"""Helpers shared by the SSM layers: argument checks and the step-by-step driver."""

from __future__ import annotations

import torch
from torch import nn

from bpsn_ext.core.diagonal_ssm import check_sequence
from bpsn_ext.core.masks import as_mask
from bpsn_ext.util.arguments import check_float, check_int

__all__ = [
    "check_d_model",
    "check_dropout",
    "check_choice",
    "stream_steps",
    "Streaming",
    "set_fused",
]


def check_d_model(d_model: object) -> int:
    return check_int("d_model", d_model)


def check_dropout(p: object) -> float:
    check_float("dropout", p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {p}")
    return p


def check_choice(name: str, value: object, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def stream_steps(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Run ``module.step`` over every step of ``x`` ``[T, N, D]``: the recurrent form of a
    whole sequence (a Python loop over T; for checks and step-by-step inference)."""
    check_sequence(type(module).__name__, x, module.d_model, x.dtype)
    m = as_mask(mask, x.shape[0], x.shape[1], x.device)
    steps = x.unbind(0)  # one backward node for all steps (x[t] would cost O(T^2) in backward)
    masks = (None,) * len(steps) if m is None else m.unbind(0)
    return torch.stack([module.step(x_t, m_t) for x_t, m_t in zip(steps, masks)])


class Streaming:
    """Streaming inference for a layer with ``step_with_state(x_t, state, mask_t)``: the state
    lives in ``ssm_state`` (set by the layer's ``__init__``; never in ``state_dict``)."""

    def reset_state(self) -> None:
        """Forget the streaming state (the next `step` starts from zero)."""
        self.ssm_state = None

    def step(self, x_t: torch.Tensor, mask_t: torch.Tensor | None = None) -> torch.Tensor:
        """Streaming inference: one step ``[N, H]`` -> ``[N, H]``, state kept in ``ssm_state``."""
        out, self.ssm_state = self.step_with_state(x_t, self.ssm_state, mask_t)
        return out

    def stream(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`step` over every step of ``x`` ``[T, N, H]`` (continues from ``ssm_state``)."""
        return stream_steps(self, x, mask)


def set_fused(module: nn.Module, fused: bool) -> nn.Module:
    """Set ``fused`` on ``module`` and every submodule that has it (the SSM layers and
    blocks); ``False`` selects the op-by-op reference paths.  Returns ``module``.

    Example::

        ref = set_fused(copy.deepcopy(model), False)   # same weights, unfused maths
    """
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be bool, got {type(fused).__name__}")
    for sub in module.modules():
        if "fused" in dir(type(sub)):
            sub.fused = fused
    return module
