"""``BPSNNode``: the BPSN as a SpikingJelly multi-step module.

Like SpikingJelly's ``PSN`` it sees the whole sequence at once and keeps no state between
calls; unlike ``PSN`` it accepts any T and a padding mask, and it declares step mode ``'m'``
so that ``functional.set_step_mode(net, 's')`` raises instead of silently skipping it.  It is a
``base.MemoryModule`` whose only memory is the optional ``v_seq``, so ``functional.reset_net``
resets it without the "not a MemoryModule" warning of SpikingJelly 0.0.0.0.14.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import base

from bpsn_ext.bpsn import BPSN
from bpsn_ext.core.dispatch import resolve_backend
from bpsn_ext.spikingjelly._compat import BackendMixin

__all__ = ["BPSNNode"]


class BPSNNode(BackendMixin, BPSN, base.MemoryModule):
    """BPSN for SpikingJelly: ``[T, N, *]`` -> spikes ``[T, N, *]``, ``forward(x_seq, mask=None)``.

    Takes every :class:`bpsn_ext.BPSN` option; ``surrogate_function`` accepts SpikingJelly
    surrogate objects (default ``ATan(alpha=2)``, firing at ``>=``).  ``backend`` is
    ``'torch'``, ``'cupy'`` or ``'auto'`` (``supported_backends = ('torch', 'cupy')``, so
    SpikingJelly 0.0.0.0.14's ``functional.set_backend`` works).  Not for
    ``MultiStepContainer``/``SeqToANNContainer``, which drive children one step at a time.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        surrogate_function: Callable | str | None = None,
        v_threshold: float = 1.0,
        step_mode: str = "m",
        backend: str = "torch",
        store_v_seq: bool = False,
        **bpsn_options,
    ) -> None:
        if step_mode != "m":
            raise ValueError(
                f"BPSNNode is multi-step only (it needs the whole sequence), got step_mode="
                f"{step_mode!r}"
            )
        super().__init__(
            channels, surrogate=surrogate_function, v_threshold=v_threshold, fire_ge=True,
            **bpsn_options,
        )
        self.backend = backend
        self.store_v_seq = store_v_seq
        self.register_memory("v_seq", None)
        self._multi_step_only = True  # from here on, step_mode='s' raises

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("m",)

    @property
    def step_mode(self) -> str:
        return "m"

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        # MemoryModule.__init__ assigns 's' before the node exists; later requests raise
        if value != "m" and self.__dict__.get("_multi_step_only", False):
            raise ValueError(
                f"BPSNNode is multi-step only (it needs the whole sequence): step_mode can "
                f"only be ('m',), but got {value!r}"
            )

    @classmethod
    def from_neuron(cls, old: torch.nn.Module, **bpsn_options) -> BPSNNode:
        """Build from a SpikingJelly neuron: threshold and surrogate carry over (unless given in
        ``bpsn_options``), and a LIF's ``tau`` becomes the initial decay ``1 - 1/tau`` of both
        branches."""
        tau = getattr(old, "tau", None)
        if isinstance(tau, torch.Tensor):
            tau = float(tau.mean())
        options = {"decay_init": 1.0 - 1.0 / float(tau)} if tau and float(tau) > 1.0 else {}
        options.update(bpsn_options)
        options.setdefault("v_threshold", float(old.v_threshold))
        options.setdefault("surrogate_function", old.surrogate_function)
        return cls(**options)

    def forward(self, x_seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        use_cupy = resolve_backend(self._backend, x_seq) == "cupy"
        if use_cupy and self._backend != "cupy":  # auto: fall back where no kernel exists
            try:
                self.cuda_kernel_config()
            except ValueError:
                use_cupy = False
        if use_cupy:
            from bpsn_ext.kernels.cupy_bpsn import bpsn_cupy  # imported only on CUDA

            spikes, membrane = bpsn_cupy(self, x_seq, mask)
        else:
            spikes, membrane = self.forward_with_membrane(x_seq, mask)
        self.v_seq = membrane if self.store_v_seq else None
        return spikes

    def extra_repr(self) -> str:
        return super().extra_repr() + f", step_mode='m', backend={self._backend!r}"
