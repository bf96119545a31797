"""snnTorch-native classes (imports ``snntorch``). Works with snnTorch 1.0.0 and 0.9.4.

The SSM layers' snnTorch faces (``S4DLeaky``, ``BinaryS4DLeaky``, ``GSULeaky``,
``SpikingS5Leaky``) take ``[T, B, D]`` sequences like ``StateLeaky`` or one step ``[B, D]`` like
``Leaky``, and ``snntorch.utils.reset`` clears their state (see `bpsn_ext.snntorch.ssm_leaky`).
"""

from bpsn_ext.snntorch.bpsn_leaky import BPSNLeaky
from bpsn_ext.snntorch.neuron_swap import detach, reset, swap_neurons, to_single_step
from bpsn_ext.snntorch.sequence import StepLoop, TimeFolded, to_sequence
from bpsn_ext.snntorch.single_step_leaky import SingleStepLeaky
from bpsn_ext.snntorch.ssm_leaky import BinaryS4DLeaky, GSULeaky, S4DLeaky, SpikingS5Leaky

__all__ = [
    "BPSNLeaky",
    "SingleStepLeaky",
    "S4DLeaky",
    "BinaryS4DLeaky",
    "GSULeaky",
    "SpikingS5Leaky",
    "TimeFolded",
    "StepLoop",
    "to_sequence",
    "swap_neurons",
    "to_single_step",
    "reset",
    "detach",
]
