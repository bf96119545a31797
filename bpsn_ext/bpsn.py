"""``BPSN``: the Bidirectional Parallel Spiking Neuron as a framework-agnostic ``nn.Module``.

A reconstruction of SNN-BERT's neuron (see :mod:`bpsn_ext.core.bpsn` and the docs page
"What is reconstructed"): every time step is computed at once, padded steps neither fire nor
influence real ones, and forward and backward temporal information are fused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn

from bpsn_ext.core.bpsn import FUSIONS, KERNELS, RUNAWAY, bpsn
from bpsn_ext.core.checks import check_float
from bpsn_ext.core.leaky_integrate import METHODS
from bpsn_ext.surrogate import ATan, resolve

__all__ = ["BPSN", "BPSN_METHODS"]

# "native": the compiled CPU kernel (bpsn_ext.kernels.cpu_native); the rest integrate in torch
BPSN_METHODS = METHODS + ("native",)
_NATIVE_DTYPES = (torch.float32, torch.float64)
_native_fallback_logged = False


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class BPSN(nn.Module):
    """Bidirectional parallel spiking neuron on ``[T, N, *]`` (``T`` = tokens under individual
    coding).  ``forward(x_seq, mask=None)`` returns spikes of the same shape.

    Args:
        channels: number of channels C for per-channel decays, gate and threshold (the size of
            ``x.shape[channel_dim]``); ``None`` shares one value across all neurons.
        channel_dim: which dimension of ``[T, N, *]`` holds the channels (default last).
        kernel: ``"leak"`` (exponential, learnable decays) or ``"window"`` (``window`` taps).
        fusion: ``"split"`` (the first half of the channels forward-only, the second half
            backward-only), ``"gate"`` (learnable mix), ``"avg"``, ``"sum"`` or ``"concat"``
            (doubles the channels).
        runaway: ``"refractory"``, ``"soft_reset"`` or ``"none"`` (see :mod:`bpsn_ext.core.bpsn`).
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
            by ``BPSN_EXT_CPU_KERNEL=0``), else the chunked block scan in torch.  Explicit
            choices: ``"native"`` (raises where it cannot run), or a torch integration:
            ``"chunked"``, ``"fft"``, ``"matmul"`` (dense T x T) or ``"loop"`` (the recurrence,
            for reference).
    """

    consumes_whole_sequence = True  # swap helpers refuse it where neurons are driven per step

    def __init__(
        self,
        channels: int | None = None,
        *,
        channel_dim: int = -1,
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
        for name, value, options in (
            ("kernel", kernel, KERNELS),
            ("fusion", fusion, FUSIONS),
            ("runaway", runaway, RUNAWAY),
            ("method", method, BPSN_METHODS),
        ):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int)
                                     or channels < 1):
            raise ValueError(f"channels must be a positive int or None, got {channels!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        if isinstance(refractory_steps, bool) or not isinstance(refractory_steps, int) or (
            refractory_steps < 1
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
        self.channels, self.channel_dim = channels, channel_dim
        self.kernel, self.fusion, self.runaway, self.method = kernel, fusion, runaway, method
        self.refractory_steps, self.detach_reset = refractory_steps, detach_reset
        self.surrogate_function = resolve(surrogate, default=ATan, fire_ge=fire_ge)
        shape = (channels,) if channels is not None else ()

        def tensor(value: float, learn: bool, name: str) -> None:
            t = torch.full(shape, value)
            if learn:
                self.register_parameter(name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)

        if kernel == "leak":
            tensor(_logit(decay_init), learn_decay, "decay_f_logit")
            tensor(_logit(decay_init), learn_decay, "decay_b_logit")
        else:
            taps = 2.0 ** -torch.arange(window, dtype=torch.float32)  # 1, 1/2, 1/4, ...
            self.taps_f = nn.Parameter(taps.clone(), requires_grad=learn_decay)
            self.taps_b = nn.Parameter(taps.clone(), requires_grad=learn_decay)
        if fusion == "gate":
            # gate_init 0 or 1 gives an infinite logit, so the gate is exactly 0 or 1
            if 0.0 < gate_init < 1.0:
                g = _logit(gate_init)
            else:
                g = math.inf if gate_init == 1.0 else -math.inf
            tensor(g, learn_gate, "gate_logit")
        tensor(v_threshold, learn_threshold, "v_threshold")

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
            C = x_seq.shape[self.channel_dim]
            if C < 2:
                raise ValueError(
                    f"fusion='split' needs at least 2 channels in x.shape[{self.channel_dim}], "
                    f"got input of shape {list(x_seq.shape)}"
                )
            return (torch.arange(C, device=x_seq.device) < (C + 1) // 2).float()
        return None

    def _check_channels(self, x_seq: torch.Tensor) -> None:
        if self.channels is not None and x_seq.dim() >= 2:
            dim = self.channel_dim % x_seq.dim()
            if dim < 2:
                raise ValueError(
                    f"channel_dim={self.channel_dim} points at T or N of the [T, N, *] input "
                    f"of shape {list(x_seq.shape)}; it must name a feature dimension"
                )
            if x_seq.shape[dim] != self.channels:
                raise ValueError(
                    f"BPSN(channels={self.channels}) expects x.shape[{self.channel_dim}] == "
                    f"{self.channels}, got input of shape {list(x_seq.shape)}"
                )

    def cuda_kernel_config(self, x_seq: torch.Tensor | None = None) -> dict:
        """Arguments of the fused CUDA kernel, or ValueError naming what it does not cover."""
        problems = []
        if self.kernel != "leak":
            problems.append(f"kernel={self.kernel!r}")
        if self.fusion == "concat":
            problems.append("fusion='concat'")
        if self.runaway == "soft_reset":
            problems.append("runaway='soft_reset'")
        sg = self.surrogate_function
        kinds = {"ATan": 0, "Sigmoid": 1, "S2NN": 2, "FastSigmoid": 3}
        name = type(sg).__name__
        module = type(sg).__module__
        known = module in ("bpsn_ext.surrogate", "spikingjelly.activation_based.surrogate")
        if not (known and name in kinds and getattr(sg, "spiking", True)):
            problems.append(f"surrogate {module}.{name}")
        if problems:
            raise ValueError(
                "the fused BPSN kernel covers leak kernels, split/gate/avg/sum fusion, the "
                "refractory or no runaway rule and the ATan/Sigmoid/S2NN/FastSigmoid "
                "surrogates; not "
                + ", ".join(problems)
            )
        if self.fusion in ("gate", "split"):
            if x_seq is None and self.fusion == "split":
                weights = None  # the split depends on the input's channel count
            else:
                g = self.gate if x_seq is None else self.fusion_gate(x_seq)
                weights = (g, 1 - g)
        else:
            weights = (torch.tensor(0.5), torch.tensor(0.5)) if self.fusion == "avg" else (
                torch.tensor(1.0), torch.tensor(1.0))
        return {
            "fire_ge": int(getattr(sg, "fire_ge", True)),
            "refractory": self.refractory_steps if self.runaway == "refractory" else 0,
            "k0": 1.0 if self.fusion == "sum" else 0.0,
            "sg_kind": kinds[name],
            "sg_a": float(getattr(sg, "alpha", getattr(sg, "slope", 0.0))),
            "sg_b": float(getattr(sg, "beta", 0.0)),
            "weights": weights,
        }

    def uses_native_kernel(self, x_seq: torch.Tensor) -> bool:
        """Whether ``forward`` runs the native CPU kernel for this input.

        ``method="native"`` raises (RuntimeError / ValueError, saying why) where it cannot;
        ``"auto"`` answers False there (a missing compiler gives one warning) and under
        ``torch.compile``, which traces the torch path instead.
        """
        if self.method not in ("auto", "native"):
            return False
        from bpsn_ext.kernels import cpu_native  # plain torch + ctypes; compiles on first use

        if self.method == "native":
            if not cpu_native.enabled():
                raise RuntimeError(
                    f"method='native' was requested but {cpu_native.ENV_SWITCH}=0 disables the "
                    "native BPSN CPU kernel; unset it or use method='auto'"
                )
            cpu_native.native_config(self, x_seq)  # ValueError naming what is not covered
            reason = cpu_native.unavailable_reason()
            if reason is not None:
                raise cpu_native.NativeKernelUnavailable(
                    f"method='native' was requested but the BPSN CPU kernel is unavailable: "
                    f"{reason}"
                )
            return True
        if (x_seq.device.type != "cpu" or x_seq.dtype not in _NATIVE_DTYPES
                or torch.compiler.is_compiling()  # a ctypes call would break the graph
                or x_seq.dim() < 3 or x_seq.shape[0] == 0 or x_seq.shape[1] == 0
                or not cpu_native.enabled()):
            return False  # odd shapes: the torch path gives its own errors
        try:
            cpu_native.native_config(self, x_seq)
        except ValueError:
            return False
        reason = cpu_native.unavailable_reason()
        if reason is not None:
            global _native_fallback_logged
            if not _native_fallback_logged:
                _native_fallback_logged = True
                warnings.warn(
                    f"bpsn_ext: BPSN runs the slower torch path on CPU because the native kernel "
                    f"is unavailable: {reason}. Install a C++ compiler (e.g. g++) or point "
                    f"${cpu_native.ENV_CXX} at one for the native kernel; set "
                    f"{cpu_native.ENV_SWITCH}=0 to choose the torch path without this warning",
                    RuntimeWarning, stacklevel=3,
                )
            return False
        return True

    def forward_with_membrane(
        self, x_seq: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spikes, membrane)``, both ``[T, N, *]``; the membrane is the fused pre-spike H."""
        self._check_channels(x_seq)
        if self.uses_native_kernel(x_seq):
            from bpsn_ext.kernels.cpu_native import bpsn_native

            return bpsn_native(self, x_seq, mask)
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
            channel_dim=self.channel_dim,
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
