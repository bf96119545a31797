"""Arguments of the fused BPSN kernels, prepared in plain torch (no CuPy import).

Shared by the CuPy provider and by the test that runs the same kernel code compiled as host
C++, so both see exactly the same layout and parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bpsn_ext.core.bpsn_options import BPSNOptions, BPSNParams, SurrogateArgs
from bpsn_ext.core.masks import as_mask

__all__ = [
    "KernelArgs",
    "Launchers",
    "prepare",
    "channel_sums",
    "channel_layout",
    "per_channel",
    "weights",
]


class Launchers:
    """Who runs a kernel's code, per device type: ``register(device_type, forward,
    backward)``; ``launcher(x, 0)`` / ``launcher(x, 1)`` the forward / backward one for
    ``x``'s device (a RuntimeError where none is registered)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.table: dict[str, tuple] = {}

    def register(self, device_type: str, forward, backward) -> None:
        self.table[device_type] = (forward, backward)

    def launcher(self, x: torch.Tensor, which: int):
        if x.device.type not in self.table:
            raise RuntimeError(f"no launcher of the {self.what} for {x.device.type} tensors")
        return self.table[x.device.type][which]


def channel_layout(x: torch.Tensor, channel_dim: int | None) -> tuple[int, int]:
    """``(C, inner)`` of ``x`` ``[T, N, *]``: the channel count at ``channel_dim`` and the
    product of the dimensions after it (``(1, 1)`` without a channel axis), which locate a
    neuron's channel in the contiguous layout: ``c = (j // inner) % C``."""
    if channel_dim is None:
        return 1, 1
    return x.shape[channel_dim], math.prod(x.shape[channel_dim + 1 :])


def per_channel(p, C: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """A scalar or ``[C]`` parameter as a contiguous ``[C]`` tensor (gradients flow back)."""
    p = torch.as_tensor(p, device=device).to(dtype)
    return p.reshape(1).expand(C).contiguous() if p.dim() == 0 else p.contiguous()


def weights(options: BPSNOptions, gate) -> tuple:
    """``(w_f, w_b, k0)``: the fused membrane is ``w_f hf + w_b hb - k0 x`` (gate and split:
    the gate and its complement; avg: halves; sum: both, the lag-0 input counted once)."""
    if options.fusion in ("gate", "split"):
        return gate, 1 - gate, 0.0
    w = 0.5 if options.fusion == "avg" else 1.0
    return torch.tensor(w), torch.tensor(w), 1.0 if options.fusion == "sum" else 0.0


@dataclass
class KernelArgs:
    x2: torch.Tensor  # [T, M] contiguous
    mask_u8: torch.Tensor  # [T, N] uint8, or a 1-element dummy when has_mask is False
    decay_f: torch.Tensor  # [C] float32
    decay_b: torch.Tensor
    w_f: torch.Tensor  # fusion weight of the forward branch
    w_b: torch.Tensor
    thr: torch.Tensor
    shape: tuple[int, int, int, int, int]  # T, M, N, C, inner
    has_mask: bool
    cfg: dict


def prepare(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    sg: SurrogateArgs,
    channel_dim: int | None,
) -> KernelArgs:
    """Lay out the inputs of a BPSN for the fused CUDA kernel (options checked by the
    dispatch)."""
    T, N = x.shape[:2]
    M = math.prod(x.shape[1:])
    m = as_mask(mask, T, N, x.device)
    mask_u8 = (
        m.to(torch.uint8).contiguous()
        if m is not None
        else torch.zeros(1, device=x.device, dtype=torch.uint8)
    )
    C, inner = channel_layout(x, channel_dim)
    w_f, w_b, k0 = weights(options, params.gate)
    f32 = torch.float32
    cfg = {"fire_ge": int(sg.fire_ge), "refractory": options.refractory, "k0": k0}
    cfg.update(sg_kind=sg.kind, sg_a=sg.a, sg_b=sg.b)
    return KernelArgs(
        x.contiguous().reshape(T, M),
        mask_u8,
        *(per_channel(p, C, f32, x.device) for p in (params.decay_f, params.decay_b, w_f, w_b)),
        per_channel(params.v_threshold, C, f32, x.device),
        (T, M, N, C, inner),
        m is not None,
        cfg,
    )


def channel_sums(partial: torch.Tensor, C: int, inner: int) -> torch.Tensor:
    """Per-neuron sums ``[M]`` -> per channel ``[C]`` (neurons are laid out [outer, C, inner])."""
    return partial.reshape(-1, C, inner).sum(dim=(0, 2))
