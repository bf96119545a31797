"""``SingleStepLeaky``: the S3NN single-step neuron as an snnTorch ``Leaky``.

Each call is one single step from a zero membrane: ``mem = input``, ``spk = Theta(mem -
threshold)`` (fires at ``>``, snnTorch's tie rule) times ``graded_spikes_factor``.  It equals a
fresh ``snn.Leaky`` called once, with the S2NN surrogate by default.  No state carries over
between calls, so the explicit-``mem`` loop, ``init_hidden=True`` in ``nn.Sequential`` and
``snntorch.utils.reset`` all work and give independent steps.  ``beta`` is accepted for
constructor parity with ``Leaky`` but has no effect (one step from zero has no leak).
"""

from __future__ import annotations

from collections.abc import Callable

import snntorch as snn
import torch

from bpsn_ext.core.checks import check_floating
from bpsn_ext.module_swap import carried_surrogate
from bpsn_ext.surrogate import S2NN, resolve

__all__ = ["SingleStepLeaky"]

_LEAKY_ARGS = (
    "surrogate_disable",
    "init_hidden",
    "inhibition",
    "state_quant",
    "output",
    "reset_delay",
)


class SingleStepLeaky(snn.Leaky):
    """S3NN neuron for snnTorch. ``forward(input_[B, *], mem=None)``; any shape works.

    Returns ``(spk, mem)``, or ``spk`` alone when ``init_hidden=True`` and ``output=False``
    (exactly ``Leaky``'s rules).  ``mem`` is the membrane of this step (pre-reset when
    ``reset_delay=True``, as in ``Leaky``).  Default ``spike_grad`` is a picklable
    ``bpsn_ext.surrogate.S2NN(fire_ge=False)``; any snnTorch ``spike_grad`` callable works.
    """

    def __init__(
        self,
        beta: float | torch.Tensor = 0.0,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Callable | str | None = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: Callable | bool = False,
        output: bool = False,
        graded_spikes_factor: float | torch.Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = True,
    ) -> None:
        for name in ("threshold", "graded_spikes_factor"):
            value = locals()[name]
            if isinstance(value, bool) or not isinstance(value, (float, int, torch.Tensor)):
                raise TypeError(
                    f"{name} must be a float or a tensor, got {type(value).__name__} {value!r}"
                )
        if reset_mechanism not in snn.SpikingNeuron.reset_dict:
            # checked before snnTorch appends a half-built neuron to its global instance list
            raise ValueError(
                f"reset_mechanism must be one of {list(snn.SpikingNeuron.reset_dict)}, "
                f"got {reset_mechanism!r}"
            )
        if isinstance(threshold, (float, int)) and threshold < 0:
            raise ValueError(
                f"threshold must be >= 0, got {threshold!r} (a fresh Leaky's reset would fire "
                "on its zero membrane)"
            )
        spike_grad = resolve(spike_grad, default=S2NN, fire_ge=False)
        super().__init__(
            beta,
            threshold=threshold,
            spike_grad=spike_grad,
            surrogate_disable=surrogate_disable,
            init_hidden=init_hidden,
            inhibition=inhibition,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            state_quant=state_quant,
            output=output,
            graded_spikes_factor=graded_spikes_factor,
            learn_graded_spikes_factor=learn_graded_spikes_factor,
            reset_delay=reset_delay,
        )

    @classmethod
    def from_neuron(
        cls,
        old: snn.Leaky,
        spike_grad: Callable | str | None = None,
        *,
        keep_surrogate: bool = False,
    ) -> SingleStepLeaky:
        """Build from an ``snn.Leaky``: every constructor option and learnable flag carries over,
        then its ``state_dict`` (threshold, beta, graded factor) is loaded.  The surrogate becomes
        S2NN unless ``spike_grad`` is given; ``keep_surrogate=True`` keeps the old one."""
        spike_grad = carried_surrogate(old.spike_grad, spike_grad, keep_surrogate, "spike_grad")
        kwargs = {name: getattr(old, name) for name in _LEAKY_ARGS if hasattr(old, name)}
        new = cls(
            beta=old.beta.detach().clone() if torch.is_tensor(old.beta) else old.beta,
            threshold=old.threshold.detach().clone(),
            spike_grad=spike_grad,
            learn_beta=isinstance(old.beta, torch.nn.Parameter),
            learn_threshold=isinstance(old.threshold, torch.nn.Parameter),
            reset_mechanism=old.reset_mechanism,
            graded_spikes_factor=old.graded_spikes_factor.detach().clone(),
            learn_graded_spikes_factor=isinstance(old.graded_spikes_factor, torch.nn.Parameter),
            **kwargs,
        )
        new.load_state_dict(old.state_dict(), strict=False)
        return new

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None):
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        check_floating("input_", input_)
        # one step of a fresh Leaky: the membrane restarts from zero, the given mem is ignored
        self.mem = torch.zeros_like(input_)
        return super().forward(input_)
