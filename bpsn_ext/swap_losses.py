"""What a swap drops: the state and parameters a source neuron has and our neurons lack.

bpsn_ext's neurons (S3NN single-step, BPSN) have a leaky membrane, a threshold and a
surrogate; a source neuron with more (a recurrent connection, a synaptic current, PSN's
learned temporal weights) loses it in the swap.  `swap_neurons` warns, naming what is dropped,
for every source class of this table, and refuses a source that is driven with explicit extra
state (``init_hidden=False``), whose calling convention our neurons do not take.

| source (framework) | dropped | explicit-state call |
|---|---|---|
| `RLeaky` (snnTorch) | the recurrent connection `recurrent` (weights, bias) | `(input, spk, mem)` |
| `Synaptic` (snnTorch) | the synaptic current `syn` and its decay `alpha` | `(input, syn, mem)` |
| `RSynaptic` (snnTorch) | the recurrent connection, `syn` and `alpha` | `(input, spk, syn, mem)` |
| `Alpha` (snnTorch) | the two synaptic currents and `alpha` | `(input, syn_exc, syn_inh, mem)` |
| `PSN` (SpikingJelly 2.0) | the learned `[T, T]` weight and `[T]` bias (its threshold) | - |
| `MaskedPSN` (SpikingJelly 2.0) | the learned masked weight and bias | - |
| `SlidingPSN` (SpikingJelly 2.0) | the learned `k` weights and bias | - |
"""

from __future__ import annotations

import warnings

from torch import nn

__all__ = ["DROPPED", "EXTRA_STATE", "dropped_by", "refuse_extra_state", "warn_dropped"]

# (framework package, class name) -> what our neurons do not keep
DROPPED: dict[tuple[str, str], str] = {
    ("snntorch", "RLeaky"): "the recurrent connection `recurrent` (weights and bias)",
    ("snntorch", "Synaptic"): "the synaptic current `syn` and its decay `alpha`",
    ("snntorch", "RSynaptic"): "the recurrent connection `recurrent`, `syn` and `alpha`",
    ("snntorch", "Alpha"): "the excitatory and inhibitory synaptic currents and `alpha`",
    ("spikingjelly", "PSN"): "the learned [T, T] weight and [T] bias (its threshold)",
    ("spikingjelly", "MaskedPSN"): "the learned masked [T, T] weight and [T] bias",
    ("spikingjelly", "SlidingPSN"): "the learned k weights and bias",
}
# source classes whose init_hidden=False forward takes state our neurons do not take
EXTRA_STATE: dict[str, str] = {
    "RLeaky": "(input, spk, mem) after init_rleaky()",
    "Synaptic": "(input, syn, mem) after init_synaptic()",
    "RSynaptic": "(input, spk, syn, mem) after init_rsynaptic()",
    "Alpha": "(input, syn_exc, syn_inh, mem) after init_alpha()",
}


def _key(old: nn.Module) -> tuple[str, str]:
    return type(old).__module__.partition(".")[0], type(old).__name__


def dropped_by(old: nn.Module) -> str | None:
    """What a swap from `old` drops (None: nothing this table knows of)."""
    return DROPPED.get(_key(old))


def refuse_extra_state(name: str, old: nn.Module, new: nn.Module) -> None:
    """ValueError for an ``init_hidden=False`` source of `EXTRA_STATE`: its model's forward
    passes state the new neuron does not take."""
    package, cls = _key(old)
    if package == "snntorch" and cls in EXTRA_STATE and not getattr(old, "init_hidden", True):
        raise ValueError(
            f"cannot put {type(new).__name__} at {name}: the {cls} there keeps explicit state "
            f"(init_hidden=False), so the model's forward calls it as {EXTRA_STATE[cls]}, "
            f"which {type(new).__name__} does not take, and {dropped_by(old)} would be lost. "
            f"Build the {cls} with init_hidden=True, or rewrite the forward in Leaky's "
            f"(input, mem) convention with snn.Leaky and swap that"
        )


def warn_dropped(name: str, old: nn.Module, new: nn.Module) -> None:
    """UserWarning naming what a swap from a source of `DROPPED` drops, counting the
    parameters before and after."""
    what = dropped_by(old)
    if what is not None:
        cls = type(old).__name__
        before = sum(p.numel() for p in old.parameters())
        after = sum(p.numel() for p in new.parameters())
        warnings.warn(
            f"swap at {name}: {type(new).__name__} drops {what} of the {cls} "
            f"({before} parameters before, {after} after); see bpsn_ext.swap_losses",
            UserWarning,
            stacklevel=4,
        )
