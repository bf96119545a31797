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

from bpsn_ext.core.bpsn_options import BPSN_METHODS, BPSNOptions, BPSNParams
from bpsn_ext.core.channels import resolve_channel_dim
from bpsn_ext.core.checks import check_floating, check_rank
from bpsn_ext.core.counting import counting_mode_active
from bpsn_ext.surrogate import ATan, resolve

__all__ = ["BPSN", "BPSN_METHODS"]


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _gate_logit(gate_init: float) -> float:
    """The gate's logit; `gate_init` 0 or 1 gives an infinite logit, so the gate is exactly
    0 or 1."""
    if 0.0 < gate_init < 1.0:
        return _logit(gate_init)
    return math.inf if gate_init == 1.0 else -math.inf


class _Option:
    """An attribute of the module that reads (and replaces) a field of its `BPSNOptions`."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, module, owner=None):
        return self if module is None else getattr(module.options, self.name)

    def __set__(self, module, value) -> None:
        if "options" in module.__dict__:  # a host base class may assign before ours exist
            module.__dict__["options"] = module.options.replace(**{self.name: value})


class BPSN(nn.Module):
    """Bidirectional parallel spiking neuron on ``[T, N, *]`` (``T`` = tokens under individual
    coding).  ``forward(x_seq, mask=None)`` returns spikes of the same shape.

    Every option but ``surrogate`` is a field of `BPSNOptions`: pass them by name, or one
    record as ``options=`` (options named beside it replace its fields).  The record is what
    the kernels receive (`bpsn_ext.kernels.dispatch`); ``module.options`` holds it and the
    attributes ``kernel``, ``fusion``, ``method``, ... read (and replace) its fields.

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
            by ``BPSN_EXT_CPU_KERNEL=0``), on CUDA the Triton or CuPy kernel, else the chunked
            block scan in torch; the choice is made in `bpsn_ext.kernels.dispatch`.  Explicit
            choices: ``"native"``, ``"triton"`` (the Triton kernels; CPU tensors only under
            ``TRITON_INTERPRET=1``), each raising where it cannot run, or a torch integration:
            ``"chunked"``, ``"fft"``, ``"matmul"`` (dense T x T) or ``"loop"`` (the recurrence,
            for reference).
    """

    consumes_whole_sequence = True  # swap helpers refuse it where neurons are driven per step

    channels = _Option()
    channel_dim = _Option()
    kernel = _Option()
    fusion = _Option()
    runaway = _Option()
    refractory_steps = _Option()
    detach_reset = _Option()
    method = _Option()

    def __init__(
        self,
        channels: int | None = None,
        *,
        surrogate: Callable | str | None = None,
        options: BPSNOptions | None = None,
        **option_values,
    ) -> None:
        super().__init__()
        if options is None:
            options = BPSNOptions(channels, **option_values)
        elif option_values or channels is not None:
            options = options.replace(
                **option_values, **({} if channels is None else {"channels": channels})
            )
        self.__dict__["options"] = options
        o = options
        self.surrogate_function = resolve(surrogate, default=ATan, fire_ge=o.fire_ge)
        if o.kernel == "leak":
            self._add_tensor("decay_f_logit", _logit(o.decay_init), o.learn_decay)
            self._add_tensor("decay_b_logit", _logit(o.decay_init), o.learn_decay)
        else:
            taps = 2.0 ** -torch.arange(o.window, dtype=torch.float32)  # 1, 1/2, 1/4, ...
            self.taps_f = nn.Parameter(taps.clone(), requires_grad=o.learn_decay)
            self.taps_b = nn.Parameter(taps.clone(), requires_grad=o.learn_decay)
        if o.fusion == "gate":
            self._add_tensor("gate_logit", _gate_logit(o.gate_init), o.learn_gate)
        self._add_tensor("v_threshold", o.v_threshold, o.learn_threshold)

    def _add_tensor(self, name: str, value: float, learn: bool) -> None:
        """`name` filled with `value`, shape `[channels]` (or `[]`): a parameter if `learn`,
        else a buffer."""
        t = torch.full((self.channels,) if self.channels is not None else (), value)
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
        return self._compute(x_seq, mask, None)

    def params(self, x_seq: torch.Tensor) -> BPSNParams:
        """The tensors of a call on ``x_seq``: decays (or taps), fusion gate, threshold."""
        leak = self.kernel == "leak"
        return BPSNParams(
            self.decay_f if leak else None,
            self.decay_b if leak else None,
            self.fusion_gate(x_seq),
            self.v_threshold,
            None if leak else self.taps_f,
            None if leak else self.taps_b,
        )

    def implementation(self, x_seq: torch.Tensor, backend: str | None = None) -> str:
        """Who computes this neuron for ``x_seq``: ``"native"``, ``"triton"``, ``"cupy"`` or
        ``"torch"`` (see `bpsn_ext.kernels.dispatch`)."""
        from bpsn_ext.kernels.dispatch import choose_bpsn

        return choose_bpsn(self.options, x_seq, self.surrogate_function, backend)

    def _compute(
        self,
        x_seq: torch.Tensor,
        mask: torch.Tensor | None,
        backend: str | None,
        membrane: bool = True,
    ):
        """Spikes and membrane from the implementation `bpsn_ext.kernels.dispatch` chooses
        (``backend``: SpikingJelly's request, None elsewhere); ``membrane=False``: the caller
        uses the spikes only (the membrane may then be None)."""
        check_rank("x_seq", check_floating("x_seq", x_seq), 2, "[T, N, *]")
        dim = self._check_channels(x_seq)
        from bpsn_ext.kernels.dispatch import bpsn_forward  # plain torch; providers lazily

        if counting_mode_active():
            return self._compute_as_one_op(x_seq, mask, dim, backend)
        params = self.params(x_seq)
        return bpsn_forward(
            x_seq, mask, params, self.options, self.surrogate_function, dim, backend, membrane
        )

    def _compute_as_one_op(self, x_seq, mask, dim, backend: str | None):
        """Under an operation counter (`bpsn_ext.core.counting`): compute out of its sight
        (whichever implementation runs), then show it the neuron as one operator,
        ``bpsn_ext::bpsn_neuron``, whose cost is registered (`bpsn_ext.energy.sj_op_counts`)."""
        from bpsn_ext.kernels.dispatch import bpsn_forward

        with _disable_current_modes():
            params = self.params(x_seq)
            spikes, membrane = bpsn_forward(
                x_seq, mask, params, self.options, self.surrogate_function, dim, backend
            )
            # one layout on every path: how the next layer runs (addmm, or mm + add for
            # a strided input) must not depend on the path either
            spikes, membrane = spikes.contiguous(), membrane.contiguous()
        taps = int(self.taps_f.shape[0]) if self.kernel == "window" else 0
        torch.ops.bpsn_ext.bpsn_neuron(
            x_seq, spikes, mask, self.kernel, self.fusion, self.runaway, taps
        )
        return spikes, membrane

    def forward(self, x_seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Spikes ``[T, N, *]`` for ``x_seq`` ``[T, N, *]``; ``mask`` is a bool ``[T, N]``
        (True = real step) or integer lengths ``[N]``.  Padded steps output 0."""
        return self._compute(x_seq, mask, None, membrane=False)[0]

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
