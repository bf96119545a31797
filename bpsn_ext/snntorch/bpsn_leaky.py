"""``BPSNLeaky``: the BPSN as an snnTorch neuron on whole ``[T, B, ...]``.

It is both a `bpsn_ext.BPSN` and an ``snn.SpikingNeuron``: its parameters are the core
neuron's (same ``state_dict`` keys, so weights load across the core, SpikingJelly and snnTorch
classes) and snnTorch tools that look for ``SpikingNeuron`` find it.  A BPSN needs the whole
sequence in one call: snnTorch models that loop over time call their layers one step at a
time, so run them through `bpsn_ext.snntorch.to_sequence` (per-step layers fold time into the
batch) before swapping BPSN in.
"""

from __future__ import annotations

from collections.abc import Callable

import snntorch as snn
import torch

from bpsn_ext.bpsn_module import BPSN as CoreBPSN
from bpsn_ext.util.warn import warn_once

__all__ = ["BPSNLeaky"]


class BPSNLeaky(CoreBPSN, snn.SpikingNeuron):
    """Bidirectional parallel spiking neuron for snnTorch, ``forward(input_[T, B, ...], mask)``.

    Args:
        channels: per-channel parameters (see `bpsn_ext.BPSN`); ``None`` shares them.
        threshold: initial (learnable by default) threshold.
        spike_grad: any snnTorch surrogate callable (default `bpsn_ext.surrogate.ATan` firing
            at ``>``, which pickles).
        init_hidden, output: snnTorch's return rule: ``spk`` alone when ``init_hidden=True``
            and ``output=False`` (``nn.Sequential``-friendly), else ``(spk, mem)`` with
            ``mem`` the fused membrane ``[T, B, ...]`` (as ``StateLeaky(output=True)``).
        beta: ``Leaky``'s decay; sets ``decay_init`` (in (0, 1)).
        learn_beta, learn_threshold: make the decays / the threshold trainable.
        reset_mechanism, reset_delay: accepted for ``Leaky`` parity; no effect (one warning):
            BPSN's anti-runaway rule is ``runaway``.
        **bpsn_options: every other `bpsn_ext.BPSN` option.

    Shape: input and outputs ``[T, B, ...]``; ``mask`` ``[T, B]`` bool or lengths ``[B]``.

    Example:
        >>> lif = BPSNLeaky(16, init_hidden=True)
        >>> lif(torch.randn(25, 4, 16)).shape
        torch.Size([25, 4, 16])
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
        beta: float | torch.Tensor | None = None,
        learn_beta: bool | None = None,
        reset_mechanism: str | None = None,
        reset_delay: bool | None = None,
        **bpsn_options,
    ) -> None:
        _leaky_keywords(beta, learn_beta, reset_mechanism, reset_delay, bpsn_options)
        # CoreBPSN.__init__ runs SpikingNeuron.__init__ with its defaults (next in the MRO)
        super().__init__(
            channels,
            surrogate=spike_grad,
            v_threshold=float(threshold),
            fire_ge=False,
            **bpsn_options,
        )
        del self.threshold  # snnTorch's buffer; the learnable threshold is v_threshold
        for name in ("graded_spikes_factor", "reset_mechanism_val"):  # bookkeeping only
            self.register_buffer(name, self._buffers.pop(name), persistent=False)
        self.spike_grad = self.surrogate_function
        self.init_hidden, self.output = init_hidden, output

    @classmethod
    def from_neuron(cls, old: snn.SpikingNeuron, **bpsn_options) -> BPSNLeaky:
        """Build from an snnTorch neuron: threshold, spike_grad, init_hidden and output carry
        over (unless given in ``bpsn_options``); a Leaky's ``beta`` becomes the initial decay
        of both branches."""
        options = {}
        beta = getattr(old, "beta", None)
        if isinstance(beta, torch.Tensor) and beta.numel() and "beta" not in bpsn_options:
            options["decay_init"] = float(beta.detach().mean().clamp(0.01, 0.99))
        options.update(bpsn_options)
        options.setdefault("threshold", float(old.threshold.detach().mean()))
        options.setdefault("spike_grad", old.spike_grad)
        options.setdefault("init_hidden", old.init_hidden)
        options.setdefault("output", old.output)
        return cls(**options)

    @property
    def threshold(self) -> torch.Tensor:  # type: ignore[override]
        return self.v_threshold

    def reset_mem(self) -> torch.Tensor:
        """The initial ``mem`` of snnTorch's explicit-state convention (an empty tensor): BPSN
        keeps no state between calls, each call takes a whole sequence."""
        return self.v_threshold.new_zeros(0)

    init_leaky = reset_mem  # snnTorch tutorial 5: ``mem = lif.init_leaky()``

    def forward(
        self,
        input_: torch.Tensor,
        mem: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ):
        """``spk`` or ``(spk, mem)`` for ``input_`` ``[T, B, ...]``.  ``mem``: snnTorch's
        explicit state, only its initial value (from ``init_leaky()``, or zeros) is accepted;
        a bool or integer tensor in its place is the padding ``mask`` (the older order)."""
        if mem is not None and not mem.is_floating_point():
            if mask is not None:
                raise TypeError("give the padding mask once (mask=...), not also as `mem`")
            mem, mask = None, mem
        if mem is not None:
            _check_initial_mem(self, mem)
        spk, mem = self.forward_with_membrane(input_, mask)
        if self.init_hidden and not self.output:
            return spk
        return spk, mem


def _check_initial_mem(neuron: BPSNLeaky, mem: torch.Tensor) -> None:
    """BPSN has no state between calls: only an initial (empty or all-zero) ``mem`` is taken."""
    if neuron.init_hidden:
        raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
    if mem.numel() and bool((mem != 0).any()):
        raise ValueError(
            f"{type(neuron).__name__} keeps no state between calls (each call takes the whole "
            f"[T, B, ...] sequence), but got a non-zero mem of shape {list(mem.shape)}: pass "
            f"the initial mem from init_leaky() (or none), and call it once per sequence, not "
            f"once per time step"
        )


def _leaky_keywords(beta, learn_beta, reset_mechanism, reset_delay, options: dict) -> None:
    """Map snnTorch ``Leaky`` keywords onto BPSN options (in place), warning for no-ops."""
    if beta is not None:
        b = float(beta.detach().mean()) if isinstance(beta, torch.Tensor) else float(beta)
        if not 0.0 < b < 1.0:
            raise ValueError(f"beta must lie in (0, 1) for BPSNLeaky (it is the decay), got {b}")
        if "decay_init" in options:
            raise ValueError("give beta or decay_init, not both (decay_init = beta)")
        options["decay_init"] = b
    if learn_beta is not None:
        options.setdefault("learn_decay", bool(learn_beta))
    for name, value in (("reset_mechanism", reset_mechanism), ("reset_delay", reset_delay)):
        if value is not None:
            warn_once(
                f"BPSNLeaky.{name}",
                f"BPSNLeaky({name}=...) has no effect: BPSN's "
                "anti-runaway rule is runaway='refractory' | 'soft_reset' | 'none'",
            )
