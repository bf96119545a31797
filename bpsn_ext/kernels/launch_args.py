"""Arguments of the fused BPSN kernels, prepared in plain torch (no CuPy import).

Shared by the CuPy provider and by the test that runs the same kernel code compiled as host
C++, so both see exactly the same layout and parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bpsn_ext.core.masks import as_mask

__all__ = ["KernelArgs", "prepare", "channel_sums"]


@dataclass
class KernelArgs:
    x2: torch.Tensor  # [T, M] contiguous
    mask_u8: torch.Tensor  # [T, N] uint8, or a 1-element dummy when has_mask is False
    lam_f: torch.Tensor  # [C] float32 (C = 1 for shared parameters)
    lam_b: torch.Tensor
    w_f: torch.Tensor  # fusion weight of the forward branch
    w_b: torch.Tensor
    thr: torch.Tensor
    shape: tuple[int, int, int, int, int]  # T, M, N, C, inner
    has_mask: bool
    cfg: dict


def prepare(module, x: torch.Tensor, mask: torch.Tensor | None) -> KernelArgs:
    """Validate and lay out the inputs of a `bpsn_ext.BPSN` for the fused kernel."""
    from bpsn_ext.kernels.provider import cupy_config

    cfg = cupy_config(module, x)  # ValueError for configurations without a kernel
    if x.dim() < 2:
        raise ValueError(f"x_seq must have shape [T, N, *], got {list(x.shape)}")
    dim = module._check_channels(x)
    T, N = x.shape[:2]
    if T == 0:
        raise ValueError("x_seq has T = 0 time steps; BPSN needs at least one")
    M = math.prod(x.shape[1:])
    m = as_mask(mask, T, N, x.device)
    mask_u8 = (
        m.to(torch.uint8).contiguous()
        if m is not None
        else torch.zeros(1, device=x.device, dtype=torch.uint8)
    )
    # split fusion gives every channel its own gate even when the other parameters are shared
    per_channel = dim is not None and (module.channels is not None or module.fusion == "split")
    C = x.shape[dim] if per_channel else 1
    inner = math.prod(x.shape[dim + 1 :]) if per_channel else 1

    def vec(p) -> torch.Tensor:
        p = torch.as_tensor(p, device=x.device, dtype=torch.float32)
        return p.reshape(1).expand(C).contiguous() if p.dim() == 0 else p.contiguous()

    w_f, w_b = cfg.pop("weights")
    return KernelArgs(
        x.contiguous().reshape(T, M),
        mask_u8,
        vec(module.decay_f),
        vec(module.decay_b),
        vec(w_f),
        vec(w_b),
        vec(module.v_threshold),
        (T, M, N, C, inner),
        m is not None,
        cfg,
    )


def channel_sums(partial: torch.Tensor, C: int, inner: int) -> torch.Tensor:
    """Per-neuron sums ``[M]`` -> per channel ``[C]`` (neurons are laid out [outer, C, inner])."""
    return partial.reshape(-1, C, inner).sum(dim=(0, 2))
