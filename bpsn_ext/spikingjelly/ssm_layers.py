"""The SSM layers as SpikingJelly ``base.MemoryModule`` s (SpikingJelly 2.0.0 and 0.0.0.0.14).

``S4DLayer``, ``BinaryS4DLayer``, ``GSULayer`` and ``SpikingS5Layer`` are the
`bpsn_ext.layers` modules (same arguments, same ``state_dict``) with SpikingJelly's
step modes:

* ``step_mode='m'``: the parallel form on ``[T, N, D]`` (FFT convolution / associative scan).
  By default every call is an independent sequence and the memory is left alone; with
  ``carry_state=True`` it starts from the memory and stores the state after its last step, so
  consecutive chunks equal one call on the whole sequence.
* ``step_mode='s'``: the streaming (recurrent) form on ``[N, D]``, one step per call.

The recurrent state is the registered memory ``ssm_state`` (reset value ``None``, never in
``state_dict``); ``functional.reset_net`` clears it.  ``forward(x, mask=None)`` takes the padding
mask as in `bpsn_ext.layers` (bool ``[T, N]`` or lengths ``[N]`` in ``'m'``; bool ``[N]``
in ``'s'``).  Bidirectional S4D layers are ``'m'`` only.

``backend``: ``'torch'``, ``'cupy'`` or ``'auto'`` (``supported_backends = ('torch', 'cupy')``,
so SpikingJelly 0.0.0.0.14's ``functional.set_backend`` works).  ``'cupy'`` needs CuPy and CUDA
tensors and raises a clear error otherwise.  The backend is a request to the S4D inside
(`bpsn_ext.layers.S4D.scan_backend`), which asks `bpsn_ext.kernels.dispatch.choose_scan` for
its whole-sequence form exactly as the plain layers and the snnTorch faces do: with ``'cupy'``
(or ``'auto'`` on a CUDA tensor) a causal float32 S4D of ``S4DLayer``, ``BinaryS4DLayer`` and
``GSULayer`` runs in ``'m'`` mode as a fused scan over time.  Everything else runs the torch
code: ``'s'`` mode, ``SpikingS5Layer`` and, under ``'auto'``, bidirectional or non-float32
layers (an explicit ``'cupy'`` refuses those with a clear error).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import base

from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5
from bpsn_ext.spikingjelly._compat import BackendMixin

__all__ = ["S4DLayer", "BinaryS4DLayer", "GSULayer", "SpikingS5Layer"]

_BIDIRECTIONAL_CUPY = (
    "backend='cupy': {}(bidirectional=True) has no fused CuPy kernel (the scan is causal); use "
    "backend='torch' or 'auto' (which runs the torch FFT form)"
)


class _SSMMemoryModule(BackendMixin):
    """Mixin (put first in the bases): SpikingJelly step modes, memory and backend for a core
    SSM module with ``forward``/``forward_with_state``/``step_with_state``."""

    # -- construction --------------------------------------------------------------------
    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        step_mode: str = "s",
        backend: str = "torch",
        carry_state: bool = False,
        **options,
    ) -> None:
        super().__init__(d_model, d_state, **options)
        self._setup(step_mode, backend, carry_state)

    def _setup(self, step_mode: str, backend: str, carry_state: bool) -> None:
        if not isinstance(carry_state, bool):
            raise TypeError(f"carry_state must be bool, got {type(carry_state).__name__}")
        if self._bidirectional():
            if step_mode != "m":
                raise ValueError(
                    f"{type(self).__name__}(bidirectional=True) needs the whole sequence: use "
                    f"step_mode='m' (got {step_mode!r})"
                )
            if carry_state:
                raise ValueError("carry_state=True needs a causal layer (bidirectional=False)")
        self.__dict__.pop("ssm_state", None)  # the core layer's plain attribute becomes memory
        self.register_memory("ssm_state", None)
        self.carry_state = carry_state
        self.backend = backend
        self.step_mode = step_mode

    def _bidirectional(self) -> bool:
        # False while a SpikingJelly base class sets step mode or backend before the layer exists
        return bool(getattr(self, "bidirectional", False))

    def supported_step_mode(self) -> tuple[str, ...]:
        return ("m",) if self._bidirectional() else ("s", "m")

    # -- backend (the property itself comes from BackendMixin) ------------------------------
    def _refuse_backend(self, value: str) -> None:
        if value == "cupy" and self._bidirectional():
            raise ValueError(_BIDIRECTIONAL_CUPY.format(type(self).__name__))
        for module in self.modules():  # the request goes to the S4D(s) the dispatch asks
            if isinstance(module, S4D):
                module.scan_backend = value

    # -- SpikingJelly forwards -------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self.step_mode == "s":
            return self.single_step_forward(*args, **kwargs)
        if self.step_mode == "m":
            return self.multi_step_forward(*args, **kwargs)
        raise ValueError(self.step_mode)

    def single_step_forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """One step ``[N, D]`` -> ``[N, D]``; updates the memory ``ssm_state``."""
        inputs = (x,) if mask is None else (x, mask)
        (y,), (self.ssm_state,) = self.single_step_functional_forward(inputs, (self.ssm_state,))
        return y

    def multi_step_forward(self, x_seq: torch.Tensor, mask: torch.Tensor | None = None):
        """A sequence ``[T, N, D]`` -> ``[T, N, D]`` in parallel (see ``carry_state``)."""
        inputs = (x_seq,) if mask is None else (x_seq, mask)
        (y,), (self.ssm_state,) = self.multi_step_functional_forward(inputs, (self.ssm_state,))
        return y

    # pure functional forwards (SpikingJelly 2.0 API; states = (ssm_state,))
    def single_step_functional_forward(self, inputs, states, **kwargs):
        x, mask = inputs[0], (inputs[1] if len(inputs) > 1 else None)
        y, state = self.step_with_state(x, states[0], mask)
        return (y,), (state,)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        x, mask = inputs[0], (inputs[1] if len(inputs) > 1 else None)
        if self.carry_state:
            y, state = self.forward_with_state(x, states[0], mask)
            return (y,), (state,)
        return (super().forward(x, mask),), tuple(states)

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", step_mode={self.step_mode!r}, backend={self._backend!r}, "
            f"carry_state={self.carry_state}"
        )


class _SpikingSSMMemoryModule(_SSMMemoryModule):
    """`_SSMMemoryModule` for the spiking layers: their ``surrogate`` is SpikingJelly's
    ``surrogate_function`` (any SpikingJelly surrogate object, a name, or the layer's default
    ``ATan(alpha=2)``); every other option goes to the core layer."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        surrogate_function: Callable | str | None = None,
        step_mode: str = "s",
        backend: str = "torch",
        carry_state: bool = False,
        **options,
    ) -> None:
        super().__init__(
            d_model,
            d_state,
            step_mode=step_mode,
            backend=backend,
            carry_state=carry_state,
            surrogate=surrogate_function,
            **options,
        )


class S4DLayer(_SSMMemoryModule, S4D, base.MemoryModule):
    """`bpsn_ext.layers.S4D` as a SpikingJelly memory module (see the module docstring).

    ``S4DLayer(d_model, d_state=64, *, step_mode='s', backend='torch', carry_state=False,
    dt_min=0.001, dt_max=0.1, bidirectional=False)``.
    """


class BinaryS4DLayer(_SpikingSSMMemoryModule, BinaryS4D, base.MemoryModule):
    """`bpsn_ext.layers.BinaryS4D` as a SpikingJelly memory module.

    Takes every ``BinaryS4D`` option; the surrogate is ``surrogate_function`` (SpikingJelly's
    name; any SpikingJelly surrogate object, default ``ATan(alpha=2)``).
    """


class GSULayer(_SpikingSSMMemoryModule, GSU, base.MemoryModule):
    """`bpsn_ext.layers.GSU` as a SpikingJelly memory module (``surrogate_function`` is
    the surrogate of ``grad_mode='surrogate'`` and ``'prf_surrogate'``)."""


class SpikingS5Layer(_SpikingSSMMemoryModule, SpikingS5, base.MemoryModule):
    """`bpsn_ext.layers.SpikingS5` as a SpikingJelly memory module (``surrogate_function``
    default ``ATan(alpha=2)``)."""
