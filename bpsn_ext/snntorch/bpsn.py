"""``BPSN`` for snnTorch: a whole-sequence neuron on ``[T, B, ...]``."""

from __future__ import annotations

from collections.abc import Callable

import snntorch as snn
import torch

from bpsn_ext.bpsn import BPSN as CoreBPSN

__all__ = ["BPSN"]


class BPSN(snn.SpikingNeuron):
    """Bidirectional parallel spiking neuron for snnTorch, ``forward(input_[T, B, ...], mask)``.

    Returns ``spk`` when ``init_hidden=True`` and ``output=False`` (``nn.Sequential``-friendly),
    otherwise ``(spk, mem)`` with ``mem`` the fused membrane ``[T, B, ...]`` (as
    ``StateLeaky(output=True)`` does).  Stateless across calls, so ``utils.reset`` has nothing
    to do.  ``threshold`` is the initial (learnable by default) threshold; ``spike_grad`` any
    snnTorch surrogate callable (default ``bpsn_ext.surrogate.ATan`` firing at ``>``, which
    pickles).  Every other :class:`bpsn_ext.BPSN` option is accepted.  The parameters live in
    ``self.neuron``, a :class:`bpsn_ext.BPSN`, so weights load across core, SpikingJelly and
    snnTorch.
    """

    consumes_whole_sequence = True

    def __init__(
        self,
        channels: int | None = None,
        *,
        threshold: float = 1.0,
        spike_grad: Callable | str | None = None,
        init_hidden: bool = False,
        output: bool = False,
        **bpsn_options,
    ) -> None:
        neuron = CoreBPSN(
            channels, surrogate=spike_grad, v_threshold=threshold, fire_ge=False, **bpsn_options
        )
        super().__init__(
            threshold=threshold,
            spike_grad=neuron.surrogate_function,
            init_hidden=init_hidden,
            output=output,
            reset_mechanism="none",
        )
        del self.threshold  # the learnable threshold lives in the core neuron
        self.neuron = neuron

    @classmethod
    def from_neuron(cls, old: snn.SpikingNeuron, **bpsn_options) -> BPSN:
        """Build from an snnTorch neuron: threshold, spike_grad, init_hidden and output carry
        over (unless given in ``bpsn_options``); a Leaky's ``beta`` becomes the initial decay
        of both branches."""
        options = {}
        beta = getattr(old, "beta", None)
        if isinstance(beta, torch.Tensor) and beta.numel():
            b = float(beta.detach().mean().clamp(0.01, 0.99))
            options["decay_init"] = b
        options.update(bpsn_options)
        options.setdefault("threshold", float(old.threshold.detach().mean()))
        options.setdefault("spike_grad", old.spike_grad)
        options.setdefault("init_hidden", old.init_hidden)
        options.setdefault("output", old.output)
        return cls(**options)

    @property
    def threshold(self) -> torch.Tensor:  # type: ignore[override]
        return self.neuron.v_threshold

    def forward(self, input_: torch.Tensor, mask: torch.Tensor | None = None):
        spk, mem = self.neuron.forward_with_membrane(input_, mask)
        if self.init_hidden and not self.output:
            return spk
        return spk, mem
