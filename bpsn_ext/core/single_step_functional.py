"""The single-step (S3NN) neuron as plain functions.

A single-step neuron has no time dimension and no state: from a zero initial potential the
membrane equals the input current, ``u = x``, and the output is ``s = Theta(u - V_th)``.
Training uses the S2NN surrogate (Suetake et al. 2023), the single-step collapse of a
multi-step surrogate.  One step of an IF neuron started from ``v = 0`` is exactly this neuron.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bpsn_ext.core.checks import check_floating

__all__ = ["single_step_fire", "membrane_after_reset"]


def single_step_fire(
    x: torch.Tensor, v_threshold: float | torch.Tensor, surrogate: Callable
) -> torch.Tensor:
    """Spikes ``Theta(x - v_threshold)`` of shape ``x.shape`` ([N, *] or [T, N, *]).

    Every element is independent: a ``[T, N, *]`` input is T independent single steps.
    """
    check_floating("x", x)
    return surrogate(x - v_threshold)


def membrane_after_reset(
    u: torch.Tensor,
    spike: torch.Tensor,
    v_threshold: float | torch.Tensor,
    v_reset: float | None,
    detach_reset: bool = False,
) -> torch.Tensor:
    """Membrane after the step's reset: hard (``v_reset`` float) or soft (``v_reset=None``)."""
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        return u - s * v_threshold
    return s * v_reset + (1.0 - s) * u
