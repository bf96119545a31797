"""snnTorch-native classes (imports ``snntorch``). Works with snnTorch 1.0.0 and 0.9.4."""

from bpsn_ext.snntorch.bpsn import BPSN, BPSNLeaky
from bpsn_ext.snntorch.sequence import StepLoop, TimeFolded, to_sequence
from bpsn_ext.snntorch.single_step import SingleStepLeaky
from bpsn_ext.snntorch.swap import detach, reset, swap_neurons, to_single_step

__all__ = [
    "BPSNLeaky",
    "BPSN",
    "SingleStepLeaky",
    "TimeFolded",
    "StepLoop",
    "to_sequence",
    "swap_neurons",
    "to_single_step",
    "reset",
    "detach",
]
