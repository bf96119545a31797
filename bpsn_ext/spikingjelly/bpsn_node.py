"""``BPSNNode``: the BPSN as a SpikingJelly neuron (a ``neuron.BaseNode``, multi-step only).

Like SpikingJelly's ``PSN`` it sees the whole sequence at once and keeps no state between
calls; unlike ``PSN`` it accepts any T and a padding mask.  Being a ``BaseNode`` it is found by
``isinstance(m, neuron.BaseNode)`` (monitors, op counters, SpikingJelly 2.0's neuron-config
registry after ``bpsn_ext.register()``), has ``v`` (the fused membrane of the last step) and,
with ``store_v_seq=True``, ``v_seq`` (``[T, N, *]``), and is reset by ``functional.reset_net``.

**Step mode.**  A bidirectional neuron cannot run one step at a time.  It runs only once the
model has told it that the whole sequence arrives: ``functional.set_step_mode(net, 'm')``,
``BPSNNode(step_mode='m')``, a transformer builder (which passes ``step_mode='m'``) or
``swap_neurons`` from a neuron in step mode ``'m'``.  Otherwise -- e.g. a model-zoo CNN built
with ``spiking_neuron=BPSNNode`` and left in step mode ``'s'``, which would feed it ``[N, C, H,
W]`` and make it read the batch axis as time -- ``forward`` raises and says what to call.
``set_step_mode(net, 's')`` does not raise halfway through the net (the other layers would be
left switched); the node remembers the request and ``forward`` raises instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import neuron

from bpsn_ext.bpsn_module import BPSN
from bpsn_ext.spikingjelly._compat import BackendMixin, refuse_step_container, step_mode_of
from bpsn_ext.util.arguments import check_float
from bpsn_ext.util.warn import warn_once

__all__ = ["BPSNNode"]


def _lif_decay(old: torch.nn.Module) -> float | None:
    """The per-step decay ``1 - 1/tau`` of a LIF (``tau``) or PLIF (``w``) neuron, else None."""
    tau = getattr(old, "tau", None)
    if tau is None and isinstance(getattr(old, "w", None), torch.Tensor):
        return float(1.0 - torch.sigmoid(old.w.detach()).mean())  # PLIF: 1/tau = sigmoid(w)
    if isinstance(tau, torch.Tensor):
        tau = float(tau.detach().mean())
    return 1.0 - 1.0 / float(tau) if tau and float(tau) > 1.0 else None


class BPSNNode(BackendMixin, BPSN, neuron.BaseNode):
    """BPSN for SpikingJelly: ``[T, N, *]`` -> spikes ``[T, N, *]``, ``forward(x_seq, mask=None)``.

    Args:
        channels: per-channel parameters (see `bpsn_ext.BPSN`); ``None`` shares them.
        surrogate_function: SpikingJelly or bpsn_ext surrogate (default ``ATan(alpha=2)``,
            firing at ``>=``).
        v_threshold: initial (learnable) threshold, a Python float.
        step_mode: ``'m'`` says the whole sequence arrives (see the module docstring);
            ``'s'`` raises.
        backend: ``'torch'``, ``'cupy'`` or ``'auto'`` (``functional.set_backend`` works on
            SpikingJelly 0.0.0.0.14).
        store_v_seq: keep the fused membrane ``v_seq`` ``[T, N, *]``.
        tau: SpikingJelly's LIF time constant; sets ``decay_init = 1 - 1/tau`` (tau > 1).
        decay_input, v_reset: accepted for LIF keyword parity; no effect (one warning):
            BPSN integrates the input undivided and has no hard reset (see ``runaway``).
        detach_reset, **bpsn_options: every other `bpsn_ext.BPSN` option.

    Shape: input and output ``[T, N, *]``; ``mask`` ``[T, N]`` bool or lengths ``[N]``.

    Example:
        >>> node = BPSNNode(8, step_mode="m")
        >>> node(torch.randn(16, 4, 8)).shape
        torch.Size([16, 4, 8])
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        surrogate_function: Callable | str | None = None,
        v_threshold: float = 1.0,
        step_mode: str | None = None,
        backend: str = "torch",
        store_v_seq: bool = False,
        tau: float | None = None,
        decay_input: bool | None = None,
        v_reset: float | None = None,
        **bpsn_options,
    ) -> None:
        if step_mode not in (None, "m"):
            raise ValueError(
                f"BPSNNode is multi-step only (it needs the whole sequence), got step_mode="
                f"{step_mode!r}"
            )
        _lif_keywords(tau, decay_input, v_reset, bpsn_options)
        super().__init__(
            channels,
            surrogate=surrogate_function,
            v_threshold=v_threshold,
            fire_ge=True,
            **bpsn_options,
        )
        self.v_reset = None  # no hard reset; BaseNode set 0.0
        self.backend = backend
        self.store_v_seq = store_v_seq
        self._multi_step = "m" if step_mode == "m" else None  # None: not yet told

    def _add_tensor(self, name: str, value: float, learn: bool) -> None:
        self.__dict__.pop(name, None)  # BaseNode.__init__ set v_threshold as a plain float
        super()._add_tensor(name, value, learn)

    # -- step mode ------------------------------------------------------------------------
    def supported_step_mode(self) -> tuple[str, ...]:
        return ("m",)

    @property
    def step_mode(self) -> str:
        refuse_step_container(self)
        return "m"

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if "_multi_step" not in self.__dict__:
            return  # BaseNode.__init__ assigns 's' before the node exists
        if value not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {value!r}")
        self._multi_step = value  # 's' is refused in forward, not halfway through set_step_mode

    def _check_step_mode(self, x_seq: torch.Tensor) -> None:
        if self._multi_step == "m":
            return
        if self._multi_step == "s":
            why = "the model was switched to step mode 's' (functional.set_step_mode(net, 's'))"
        else:
            why = (
                "it was never put in step mode 'm', so a model may be driving it one step "
                "at a time (e.g. a model-zoo builder without set_step_mode)"
            )
        raise ValueError(
            f"BPSNNode is multi-step only and refuses the input of shape {list(x_seq.shape)}: "
            f"{why}, and it would read the batch axis as time.  Call "
            f"functional.set_step_mode(net, 'm') and feed [T, N, ...]; a BPSNNode you call on "
            f"a sequence yourself is built with BPSNNode(..., step_mode='m')"
        )

    # -- forward --------------------------------------------------------------------------
    def forward(self, x_seq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_step_mode(x_seq)
        spikes, membrane = self._compute(x_seq, mask, self._backend)  # provider honours it
        self.v = membrane[-1].detach().clone()  # nothing reads it back: no graph, no [T] copy
        if self.store_v_seq:
            self.v_seq = membrane
        return spikes

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        """SpikingJelly 2.0's pure forward: ``(x_seq[, mask])`` -> ``((spikes,), (v,))``."""
        mask = inputs[1] if len(inputs) > 1 else None
        spikes, membrane = self._compute(inputs[0], mask, self._backend)
        return (spikes,), (membrane[-1],)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        raise ValueError("BPSNNode is multi-step only: it needs the whole [T, N, *] sequence")

    def neuronal_charge(self, x: torch.Tensor) -> None:  # SpikingJelly 0.0.0.0.14's hook
        raise ValueError("BPSNNode is multi-step only: it needs the whole [T, N, *] sequence")

    @classmethod
    def from_neuron(cls, old: torch.nn.Module, **bpsn_options) -> BPSNNode:
        """Build from a SpikingJelly neuron: threshold, surrogate, ``detach_reset``, step mode
        and ``store_v_seq`` carry over (unless given in ``bpsn_options``), and a LIF's ``tau``
        (or a PLIF's ``w``) becomes the initial decay ``1 - 1/tau`` of both branches.  A neuron
        without ``v_threshold`` (``PSN``, ``SlidingPSN``: their threshold is a learned bias,
        dropped with a warning by ``swap_neurons``) starts from the default threshold 1."""
        decay = _lif_decay(old)
        options = {"decay_init": decay} if decay is not None and "tau" not in bpsn_options else {}
        options.update(bpsn_options)
        options.setdefault("v_threshold", float(getattr(old, "v_threshold", 1.0)))
        options.setdefault("surrogate_function", old.surrogate_function)
        options.setdefault("detach_reset", bool(getattr(old, "detach_reset", False)))
        options.setdefault("store_v_seq", bool(getattr(old, "store_v_seq", False)))
        if step_mode_of(old) == "m":
            options.setdefault("step_mode", "m")
        return cls(**options)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", step_mode='m', backend={self._backend!r}"


def _lif_keywords(tau, decay_input, v_reset, options: dict) -> None:
    """Map SpikingJelly's LIF keywords onto BPSN options (in place), warning for no-ops."""
    if tau is not None:
        check_float("tau", tau)
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1 (decay 1 - 1/tau in (0, 1)), got {tau}")
        if "decay_init" in options:
            raise ValueError("give tau or decay_init, not both (decay_init = 1 - 1/tau)")
        options["decay_init"] = 1.0 - 1.0 / tau
    if decay_input is not None:
        warn_once(
            "BPSNNode.decay_input",
            "BPSNNode(decay_input=...) has no effect: BPSN "
            "integrates the input without the 1/tau factor of LIFNode(decay_input=True)",
        )
    if v_reset is not None:
        warn_once(
            "BPSNNode.v_reset",
            "BPSNNode(v_reset=...) has no effect: BPSN has no hard "
            "reset; its anti-runaway rule is runaway='refractory' | 'soft_reset' | 'none'",
        )
