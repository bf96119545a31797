"""``SingleStepNode``: the S3NN single-step neuron as a SpikingJelly ``BaseNode``.

One step of this node equals one step of ``neuron.IFNode`` started from ``v = 0``:
``u = x``, ``s = Theta(u - v_threshold)`` (fires at ``>=``, SpikingJelly's tie rule), and
``v`` is the post-reset membrane (hard reset to ``v_reset``, or soft with ``v_reset=None``).
Nothing carries over between steps: in step mode ``'m'`` every one of the T steps is an
independent single step, computed in one vectorised call.  The default surrogate is S2NN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import neuron

from bpsn_ext.core.checks import check_floating, check_rank
from bpsn_ext.core.single_step_functional import membrane_after_reset, single_step_fire
from bpsn_ext.module_swap import carried_surrogate
from bpsn_ext.spikingjelly._compat import SingleStepFromFire
from bpsn_ext.surrogate import S2NN, resolve
from bpsn_ext.util.arguments import check_float
from bpsn_ext.util.warn import warn_once

__all__ = ["SingleStepNode"]


class SingleStepNode(SingleStepFromFire, neuron.BaseNode):
    """S3NN neuron. Input ``[N, *]`` (step mode 's') or ``[T, N, *]`` ('m'); spikes same shape.

    Args:
        v_threshold: firing threshold (Python float).
        v_reset: hard-reset value (float) or ``None`` for soft reset; only affects ``v``.
        surrogate_function: our surrogate, a SpikingJelly surrogate object or a name
            ('s2nn', 'atan', 'sigmoid', 'fast_sigmoid'); default ``S2NN(alpha=4, beta=1)``.
        detach_reset: detach the spike inside the reset (only affects ``v``).
        step_mode: 's' or 'm'.
        backend: legacy SpikingJelly argument; only 'torch' (an elementwise op needs no kernel).
        store_v_seq: keep ``v_seq`` ([T, N, *]) in step mode 'm'.
        keep_v_graph: keep ``v`` (and ``v_seq``) attached to the autograd graph.  Off by
            default: no later step reads ``v``, and its graph would only hold memory.
        tau, decay_input: accepted so that model-zoo builders can pass LIF keywords
            (``spiking_resnet18(spiking_neuron=SingleStepNode, tau=2.0)``); no effect (one
            warning): the S3NN neuron is one step from rest, ``u = x``, with no leak.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Callable | str | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
        keep_v_graph: bool = False,
        tau: float | None = None,
        decay_input: bool | None = None,
    ) -> None:
        for name, value in (("tau", tau), ("decay_input", decay_input)):
            if value is not None:
                warn_once(
                    f"SingleStepNode.{name}",
                    f"SingleStepNode({name}=...) has no effect: "
                    "a single step from rest has no leak (u = x)",
                )
        check_float("v_threshold", v_threshold)
        if v_reset is not None:
            check_float("v_reset", v_reset)
        flags = (
            ("detach_reset", detach_reset),
            ("store_v_seq", store_v_seq),
            ("keep_v_graph", keep_v_graph),
        )
        for name, flag in flags:
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be bool, got {type(flag).__name__}")
        if step_mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
        if backend not in self.supported_backends:
            raise ValueError(
                f"SingleStepNode supports backend in {self.supported_backends}, got {backend!r}"
            )
        surrogate_function = resolve(surrogate_function, default=S2NN, fire_ge=True)
        super().__init__(
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self.backend = backend  # after the base class: 0.0.0.0.14 sets its default there
        self.keep_v_graph = keep_v_graph

    @classmethod
    def from_neuron(
        cls,
        old: torch.nn.Module,
        surrogate_function: Callable | str | None = None,
        *,
        keep_surrogate: bool = False,
    ) -> SingleStepNode:
        """Build from a SpikingJelly neuron (IF/LIF/...): threshold, reset and mode carry over.

        The surrogate becomes S2NN unless ``surrogate_function`` is given;
        ``keep_surrogate=True`` keeps the old neuron's.  ``tau``/decay are dropped: a single
        step from v = 0 has no leak.
        """
        surrogate_function = carried_surrogate(
            old.surrogate_function, surrogate_function, keep_surrogate, "surrogate_function"
        )
        return cls(
            v_threshold=float(old.v_threshold),
            v_reset=None if old.v_reset is None else float(old.v_reset),
            surrogate_function=surrogate_function,
            detach_reset=bool(getattr(old, "detach_reset", False)),
            step_mode=getattr(old, "step_mode", "s"),
            store_v_seq=bool(getattr(old, "store_v_seq", False)),
        )

    # -- legacy backend API (SpikingJelly 0.0.0.0.14 / 2.0 pre-releases) ------------------
    @property
    def supported_backends(self) -> tuple[str, ...]:
        return ("torch",)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in self.supported_backends:
            raise NotImplementedError(
                f"{value} is not a supported backend of SingleStepNode "
                f"(supported: {self.supported_backends})"
            )
        self._backend = value

    # -- the neuron -----------------------------------------------------------------------
    def _fire(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spike = single_step_fire(x, self.v_threshold, self.surrogate_function)
        if not self.keep_v_graph:
            x, spike_v = x.detach(), spike.detach()
        else:
            spike_v = spike
        v = membrane_after_reset(x, spike_v, self.v_threshold, self.v_reset, self.detach_reset)
        return spike, v

    def forward(self, *args, **kwargs):
        x = check_floating("input", args[0] if args else kwargs.get("x"))
        if self.step_mode == "m":
            check_rank("input", x, 2, "[T, N, *] in step mode 'm'")
        else:
            check_rank("input", x, 1, "[N, *] in step mode 's'")
        return super().forward(*args, **kwargs)

    # SpikingJelly 2.0: pure functional forwards (the stored state is never read)
    def single_step_functional_forward(self, inputs, states, **kwargs):
        spike, v = self._fire(inputs[0])
        return (spike,), (v,)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        spike_seq, v_seq = self._fire(inputs[0])
        return (spike_seq,), (v_seq[-1],)

    # SpikingJelly 0.0.0.0.14: charge hook (abstract there); the membrane restarts from the input
    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = x

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        spike_seq, v_seq = self._fire(x_seq)
        self.v = v_seq[-1]
        if self.store_v_seq:
            self.v_seq = v_seq
        return spike_seq
