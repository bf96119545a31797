"""snnTorch faces of the SSM layers: ``S4DLeaky``, ``BinaryS4DLeaky``, ``GSULeaky``,
``SpikingS5Leaky``.

Each takes the arguments of its core layer (`bpsn_ext.layers`; the surrogate is named
``spike_grad``, snnTorch's name, and defaults to a picklable ATan(2) firing at ``> 0``,
snnTorch's tie rule) and has the same ``state_dict``.  Conventions follow snnTorch:

* **whole sequence**, like ``StateLeaky``: ``layer(x)`` with ``x`` ``[T, B, D]`` (time first)
  runs the parallel form from a zero state and returns ``out`` ``[T, B, D]``, or
  ``(out, record)`` with ``output=True`` (``record``: the spikes of ``BinaryS4DLeaky``,
  ``Tern(y)`` of ``GSULeaky``, the membrane ``y`` of ``SpikingS5Leaky``; ``S4DLeaky`` always
  returns ``y``, its membrane).  ``mask=`` takes padding as in the core layers.
* **one step**, like ``Leaky``: ``layer(x_t)`` with ``x_t`` ``[B, D]`` advances the hidden
  state kept in ``layer.mem`` (the SSM state; complex).  It returns ``out_t`` when
  ``init_hidden=True`` and ``output=False``, else ``(out_t, mem)``.  The explicit form
  ``out_t, mem = layer(x_t, mem)`` (``mem = layer.init_leaky()`` at the start) is pure;
  passing ``mem`` with ``init_hidden=True`` raises ``TypeError`` (``Leaky``'s rule).

**Reset.**  The classes subclass ``snn.Leaky`` (without its LIF parameters) and keep the state
in ``mem``, so ``snntorch.utils.reset(net)`` clears them in snnTorch 1.0.0 and 0.9.4.  That
function only inspects ``net``'s *direct* children and then resets *every* ``Leaky`` in the
process (a class-level list): these layers are cleared when ``net`` has at least one ``Leaky``
(any of ours counts) as a direct child.  ``bpsn_ext.snntorch.reset(net)`` reaches nested
layers and touches no other model.  A replaced ``mem`` (what ``utils.reset`` does) means "start
from zero", whatever the next batch size.  Because they are ``Leaky`` subclasses, snnTorch's
NIR export would describe them as LIF neurons: it does not support them.
"""

from __future__ import annotations

from collections.abc import Callable

import snntorch as snn
import torch
from torch import nn

from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5
from bpsn_ext.surrogate import ATan, resolve

__all__ = ["S4DLeaky", "BinaryS4DLeaky", "GSULeaky", "SpikingS5Leaky"]


class _LeakyBase(snn.Leaky):
    """``snn.Leaky`` identity (``isinstance``, the global instance list, ``mem``) without the
    LIF constructor: ``__init__`` is ``nn.Module``'s plus the ``mem`` buffer."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.register_buffer("mem", torch.zeros(0), persistent=False)
        snn.SpikingNeuron.instances.append(self)


class _SnnTorchSSM:
    """Mixin (first in the bases): snnTorch calling conventions for a core SSM layer."""

    _surrogate = "spike"  # "spike": spike_grad with snnTorch's tie rule; "pass"; "none"

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        spike_grad: Callable | str | None = None,
        init_hidden: bool = False,
        output: bool = False,
        **options,
    ) -> None:
        if self._surrogate == "none":
            if spike_grad is not None:
                raise TypeError(f"{type(self).__name__} has no spikes: spike_grad does not apply")
        else:
            spiking = options.get("activation", "spike") == "spike"
            if self._surrogate == "spike" and spiking:
                spike_grad = resolve(spike_grad, default=ATan, fire_ge=False)
            options["surrogate"] = spike_grad
        super().__init__(d_model, d_state, **options)
        self._options(init_hidden, output)

    # -- the state lives in ``mem`` ------------------------------------------------------------
    @property
    def ssm_state(self) -> torch.Tensor | None:
        mem = self._buffers.get("mem")
        if mem is None or mem.numel() == 0 or mem is not self.__dict__.get("_state_ref"):
            return None  # empty, or replaced by snntorch.utils.reset: a zero state
        return mem

    @ssm_state.setter
    def ssm_state(self, value: torch.Tensor | None) -> None:
        if value is None:
            value = torch.zeros(0)
        self.mem = value
        object.__setattr__(self, "_state_ref", value if value.numel() else None)

    def _options(self, init_hidden: bool, output: bool) -> None:
        for name, flag in (("init_hidden", init_hidden), ("output", output)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be bool, got {type(flag).__name__}")
        self.init_hidden, self.output = init_hidden, output

    def init_leaky(self) -> torch.Tensor:
        """An empty ``mem``: the zero state for the explicit ``layer(x_t, mem)`` loop."""
        return torch.zeros(0)

    def reset_mem(self) -> None:
        self.reset_state()

    # -- calls ---------------------------------------------------------------------------------
    def _sequence(self, x: torch.Tensor, mask):
        """The blocks: ``out`` or ``(out, activation)``; S4D and S5 override it."""
        out, act = self.forward_with_activation(x, mask)
        return (out, act) if self.output else out

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None, mask=None):
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if isinstance(input_, torch.Tensor) and input_.dim() == 3:
            if mem is not None:
                raise TypeError("a whole sequence [T, B, D] starts from a zero state: no `mem`")
            return self._sequence(input_, mask)
        if mem is not None:  # explicit state: pure
            state = mem if mem.numel() else None
            out, new = self.step_with_state(input_, state, mask)
            return out, new
        out, self.ssm_state = self.step_with_state(input_, self.ssm_state, mask)
        if self.init_hidden and not self.output:
            return out
        return out, self.mem


class S4DLeaky(_SnnTorchSSM, S4D, _LeakyBase):
    """`bpsn_ext.layers.S4D` for snnTorch (module docstring); returns ``y`` (no spikes).

    Example::

        layer = S4DLeaky(16, 64, init_hidden=True)
        y = layer(torch.randn(100, 8, 16))            # [T, B, D] at once
        y_t = layer(torch.randn(8, 16))               # one step, state in layer.mem
    """

    _surrogate = "none"

    def _sequence(self, x, mask):
        return S4D.forward(self, x, mask)


class BinaryS4DLeaky(_SnnTorchSSM, BinaryS4D, _LeakyBase):
    """`bpsn_ext.layers.BinaryS4D` for snnTorch (module docstring).

    Example::

        layer = BinaryS4DLeaky(16, 64, output=True)
        out, spikes = layer(torch.randn(784, 8, 16))
    """


class GSULeaky(_SnnTorchSSM, GSU, _LeakyBase):
    """`bpsn_ext.layers.GSU` for snnTorch (module docstring); ``spike_grad`` is the
    surrogate of the ``"surrogate"`` / ``"prf_surrogate"`` ternarisations.

    Example::

        layer = GSULeaky(16, 64, grad_mode="prf_surrogate")
        out = layer(torch.randn(784, 8, 16))
    """

    _surrogate = "pass"


class SpikingS5Leaky(_SnnTorchSSM, SpikingS5, _LeakyBase):
    """`bpsn_ext.layers.SpikingS5` for snnTorch (module docstring); ``output=True``
    returns ``(spk, mem)`` with ``mem`` the pre-spike SSM output, as ``StateLeaky`` does.

    Example::

        layer = SpikingS5Leaky(16, 32, output=True)
        spk, mem = layer(torch.randn(784, 8, 16))
    """

    def _sequence(self, x, mask):
        out, y = self.forward_with_membrane(x, mask)
        return (out, y) if self.output else out
