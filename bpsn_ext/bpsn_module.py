"""``BPSN``: the Bidirectional Parallel Spiking Neuron as a framework-agnostic ``nn.Module``.

A reconstruction of SNN-BERT's neuron (see `bpsn_ext.core.bpsn_functional` and the docs page
"What is reconstructed"): every time step is computed at once, padded steps neither fire nor
influence real ones, and forward and backward temporal information are fused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import _disable_current_modes

from bpsn_ext.core.bpsn_functional import FUSIONS, KERNELS, RUNAWAY, bpsn
from bpsn_ext.core.channels import check_channel_dim_arg, resolve_channel_dim
from bpsn_ext.core.checks import check_floating, check_rank
from bpsn_ext.core.counting import counting_mode_active
from bpsn_ext.core.leaky_integrate import METHODS
from bpsn_ext.surrogate import ATan, resolve
from bpsn_ext.util.arguments import check_float, check_int

__all__ = ["BPSN", "BPSN_METHODS"]

# "native": the compiled CPU kernel (bpsn_ext.kernels.cpu_native); the rest integrate in torch
BPSN_METHODS = METHODS + ("native",)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _gate_logit(gate_init: float) -> float:
    """The gate's logit; `gate_init` 0 or 1 gives an infinite logit, so the gate is exactly
    0 or 1."""
    if 0.0 < gate_init < 1.0:
        return _logit(gate_init)
    return math.inf if gate_init == 1.0 else -math.inf


def _check_options(
    *,
    channels,
    kernel,
    window,
    fusion,
    runaway,
    refractory_steps,
    decay_init,
    gate_init,
    v_threshold,
    method,
) -> None:
    """Raise `ValueError` naming the first argument of `BPSN` that is out of range."""
    for name, value, options in (
        ("kernel", kernel, KERNELS),
        ("fusion", fusion, FUSIONS),
        ("runaway", runaway, RUNAWAY),
        ("method", method, BPSN_METHODS),
    ):
        if value not in options:
            raise ValueError(f"{name} must be one of {options}, got {value!r}")
    check_int("channels", channels, none_ok=True)
    check_int("window", window)
    if (
        isinstance(refractory_steps, bool)
        or not isinstance(refractory_steps, int)
        or (refractory_steps < 1)
    ):
        raise ValueError(f"refractory_steps must be an int >= 1, got {refractory_steps!r}")
    if runaway == "soft_reset" and kernel != "leak":
        raise ValueError("runaway='soft_reset' needs kernel='leak'")
    if fusion == "split" and channels is not None and channels < 2:
        raise ValueError("fusion='split' needs channels >= 2 (half forward, half backward)")
    check_float("decay_init", decay_init)
    check_float("gate_init", gate_init)
    check_float("v_threshold", v_threshold)
    if not 0.0 < decay_init < 1.0:
        raise ValueError(f"decay_init must lie in (0, 1), got {decay_init}")
    if not 0.0 <= gate_init <= 1.0:
        raise ValueError(f"gate_init must lie in [0, 1], got {gate_init}")


class BPSN(nn.Module):
    """Bidirectional parallel spiking neuron on ``[T, N, *]`` (``T`` = tokens under individual
    coding).  ``forward(x_seq, mask=None)`` returns spikes of the same shape.

    Args:
        channels: number of channels C for per-channel decays, gate and threshold (the size of
            ``x.shape[channel_dim]``); ``None`` shares one value across all neurons.
        channel_dim: which dimension of ``[T, N, *]`` holds the channels.  ``None`` (auto):
            dimension 2 of `[T, N, C]`, `[T, N, C, H, W]` and `[T, N, C, D, H, W]` (PyTorch's
            `BatchNorm` rule), no channel axis for `[T, N]`, and an error for rank-4 inputs,
            where `[T, N, C, L]` and `[T, N, L, D]` look alike (see `bpsn_ext.core.channels`).
            ``swap_neurons`` sets it from the data flow on the model's first forward (or
            raises where that cannot tell, see `bpsn_ext.layout_probe`).  The split fusion
            and per-channel parameters act on this axis; every other dimension (samples,
            positions, tokens) is treated alike.
        kernel: ``"leak"`` (exponential, learnable decays) or ``"window"`` (``window`` taps).
        fusion: ``"split"`` (the first half of the channels forward-only, the second half
            backward-only), ``"gate"`` (learnable mix), ``"avg"``, ``"sum"`` or ``"concat"``
            (doubles the channels).
        runaway: ``"refractory"``, ``"soft_reset"`` or ``"none"``
            (see `bpsn_ext.core.bpsn_functional`).
        refractory_steps: silent steps after a spike under ``"refractory"``.
        decay_init: initial forward and backward decay lambda (0.5: tau = 2).
        gate_init: initial weight of the forward branch under ``"gate"``.
        v_threshold: initial threshold.
        learn_decay / learn_gate / learn_threshold: make those parameters trainable.
        surrogate: name, bpsn_ext / SpikingJelly surrogate object or snnTorch ``spike_grad``;
            default ``ATan(alpha=2)`` with the tie rule ``fire_ge``.
        detach_reset: no gradient through the reset under ``"soft_reset"``.
        method: ``"auto"``: on CPU the native kernel (``"native"``) where it covers the
            configuration (leak kernel, split fusion, refractory or no rule, ATan/Sigmoid/S2NN/
            FastSigmoid surrogate, float32/float64) and builds (a C++ compiler is needed; unset
            by ``BPSN_EXT_CPU_KERNEL=0``), else the chunked block scan in torch; the choice is
            made in `bpsn_ext.kernels.provider`.  Explicit
            choices: ``"native"`` (raises where it cannot run), or a torch integration:
            ``"chunked"``, ``"fft"``, ``"matmul"`` (dense T x T) or ``"loop"`` (the recurrence,
            for reference).
    """

    consumes_whole_sequence = True  # swap helpers refuse it where neurons are driven per step

    def __init__(
        self,
        channels: int | None = None,
        *,
        channel_dim: int | None = None,
        kernel: str = "leak",
        window: int = 4,
        fusion: str = "split",
        runaway: str = "refractory",
        refractory_steps: int = 1,
        decay_init: float = 0.5,
        gate_init: float = 0.5,
        v_threshold: float = 1.0,
        learn_decay: bool = True,
        learn_gate: bool = True,
        learn_threshold: bool = True,
        surrogate: Callable | str | None = None,
        fire_ge: bool = True,
        detach_reset: bool = False,
        method: str = "auto",
    ) -> None:
        super().__init__()
        _check_options(
            channels=channels,
            kernel=kernel,
            window=window,
            fusion=fusion,
            runaway=runaway,
            refractory_steps=refractory_steps,
            decay_init=decay_init,
            gate_init=gate_init,
            v_threshold=v_threshold,
            method=method,
        )
        self.channels, self.channel_dim = channels, check_channel_dim_arg(channel_dim)
        self.kernel, self.fusion, self.runaway, self.method = kernel, fusion, runaway, method
        self.refractory_steps, self.detach_reset = refractory_steps, detach_reset
        self.surrogate_function = resolve(surrogate, default=ATan, fire_ge=fire_ge)
        if kernel == "leak":
            self._add_tensor("decay_f_logit", _logit(decay_init), learn_decay)
            self._add_tensor("decay_b_logit", _logit(decay_init), learn_decay)
        else:
            taps = 2.0 ** -torch.arange(window, dtype=torch.float32)  # 1, 1/2, 1/4, ...
            self.taps_f = nn.Parameter(taps.clone(), requires_grad=learn_decay)
            self.taps_b = nn.Parameter(taps.clone(), requires_grad=learn_decay)
        if fusion == "gate":
            self._add_tensor("gate_logit", _gate_logit(gate_init), learn_gate)
        self._add_tensor("v_threshold", v_threshold, learn_threshold)

    def _add_tensor(self, name: str, value: float, learn: bool) -> None:
        """`name` filled with `value`, shape `[channels]` (or `[]`): a parameter if `learn`,
        else a buffer."""
        t = torch.full((self.channels,) if self.channels is not None else (), value)
        self.__dict__.pop(name, None)  # a host base class (BaseNode) may have set a float
        if learn:
            self.register_parameter(name, nn.Parameter(t))
        else:
            self.register_buffer(name, t)

    # -- derived quantities ---------------------------------------------------------------
    @property
    def decay_f(self) -> torch.Tensor:
        return torch.sigmoid(self.decay_f_logit)

    @property
    def decay_b(self) -> torch.Tensor:
        return torch.sigmoid(self.decay_b_logit)

    @property
    def gate(self) -> torch.Tensor:
        """Weight of the forward branch under ``fusion="gate"``."""
        return torch.sigmoid(self.gate_logit)

    def fusion_gate(self, x_seq: torch.Tensor) -> torch.Tensor | None:
        """Weight of the forward branch for this input: the learnable gate, or for ``"split"``
        1 on the first half of the channels and 0 on the rest (``[C]``); None otherwise."""
        if self.fusion == "gate":
            return self.gate
        if self.fusion == "split":
            dim = self.resolve_channel_dim(x_seq)
            C = 0 if dim is None else x_seq.shape[dim]
            if C < 2:
                where = "no channel axis" if dim is None else f"{C} channel in dimension {dim}"
                raise ValueError(
                    f"fusion='split' (half of the channels look back, half ahead) needs at "
                    f"least 2 channels, but the input of shape {list(x_seq.shape)} has {where}; "
                    f"feed [T, N, C, *] with C >= 2, set channel_dim, or use fusion='gate'"
                )
            return (torch.arange(C, device=x_seq.device) < (C + 1) // 2).float()
        return None

    def resolve_channel_dim(self, x_seq: torch.Tensor) -> int | None:
        """The channel dimension (>= 2) of this input, or None for ``[T, N]``; see
        ``channel_dim``.  Raises ValueError naming ``channel_dim`` and the shape when it is
        ambiguous or out of range."""
        return resolve_channel_dim(tuple(x_seq.shape), self.channel_dim, owner=type(self).__name__)

    def _check_channels(self, x_seq: torch.Tensor) -> int | None:
        dim = self.resolve_channel_dim(x_seq)
        if self.channels is not None:
            if dim is None or x_seq.shape[dim] != self.channels:
                got = "no channel axis" if dim is None else f"x.shape[{dim}] = {x_seq.shape[dim]}"
                raise ValueError(
                    f"{type(self).__name__}(channels={self.channels}) expects {self.channels} "
                    f"channels in dimension {dim if dim is not None else 2} (channel_dim="
                    f"{self.channel_dim}), got input of shape {list(x_seq.shape)} with {got}"
                )
        return dim

    def forward_with_membrane(
        self, x_seq: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spikes, membrane)``, both ``[T, N, *]``; the membrane is the fused pre-spike H."""
        return self._compute(x_seq, mask, "torch")

    def _compute(self, x_seq: torch.Tensor, mask: torch.Tensor | None, backend: str):
        """Spikes and membrane from the provider that `bpsn_ext.kernels.provider.choose`
        picks for this input (``backend``: SpikingJelly's CUDA backend request)."""
        check_rank("x_seq", check_floating("x_seq", x_seq), 2, "[T, N, *]")
        dim = self._check_channels(x_seq)
        from bpsn_ext.kernels import provider  # plain torch + ctypes; CuPy only on CUDA

        chosen = provider.choose(self, x_seq, backend)
        if counting_mode_active():
            return self._compute_as_one_op(x_seq, mask, chosen, dim)
        return self._compute_with(x_seq, mask, chosen, dim)

    def _compute_as_one_op(self, x_seq, mask, chosen: str, dim):
        """Under an operation counter (`bpsn_ext.core.counting`): compute out of its sight
        (whichever provider runs), then show it the neuron as one operator,
        ``bpsn_ext::bpsn_neuron``, whose cost is registered (`bpsn_ext.energy.sj_op_counts`)."""
        with _disable_current_modes():
            spikes, membrane = self._compute_with(x_seq, mask, chosen, dim)
            # one layout on every path: how the next layer runs (addmm, or mm + add for
            # a strided input) must not depend on the path either
            spikes, membrane = spikes.contiguous(), membrane.contiguous()
        taps = int(self.taps_f.shape[0]) if self.kernel == "window" else 0
        torch.ops.bpsn_ext.bpsn_neuron(
            x_seq, spikes, mask, self.kernel, self.fusion, self.runaway, taps
        )
        return spikes, membrane

    def _compute_with(self, x_seq, mask, chosen: str, dim):
        """Spikes and membrane from the provider ``chosen``."""
        if chosen == "native":
            from bpsn_ext.kernels.bpsn_cpu_ops import bpsn_native

            return bpsn_native(self, x_seq, mask)
        if chosen == "cupy":
            from bpsn_ext.kernels.cupy_bpsn import bpsn_cupy  # imported only on CUDA

            return bpsn_cupy(self, x_seq, mask)
        leak = self.kernel == "leak"
        return bpsn(
            x_seq,
            mask,
            v_threshold=self.v_threshold,
            surrogate=self.surrogate_function,
            kernel=self.kernel,
            decay_f=self.decay_f if leak else None,
            decay_b=self.decay_b if leak else None,
            taps_f=None if leak else self.taps_f,
            taps_b=None if leak else self.taps_b,
            fusion=self.fusion,
            gate=self.fusion_gate(x_seq),
            runaway=self.runaway,
            refractory_steps=self.refractory_steps,
            channel_dim=-1 if dim is None else dim,  # [T, N]: scalar parameters only
            detach_reset=self.detach_reset,
            method="auto" if self.method == "native" else self.method,
        )

    def forward(self, x_seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Spikes ``[T, N, *]`` for ``x_seq`` ``[T, N, *]``; ``mask`` is a bool ``[T, N]``
        (True = real step) or integer lengths ``[N]``.  Padded steps output 0."""
        return self.forward_with_membrane(x_seq, mask)[0]

    def extra_repr(self) -> str:
        parts = [
            f"channels={self.channels}",
            f"kernel={self.kernel!r}",
            f"fusion={self.fusion!r}",
            f"runaway={self.runaway!r}",
        ]
        if self.runaway == "refractory":
            parts.append(f"refractory_steps={self.refractory_steps}")
        return ", ".join(parts)
