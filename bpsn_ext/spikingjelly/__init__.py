"""SpikingJelly-native classes (imports ``spikingjelly.activation_based``).

Works with SpikingJelly 2.0.0 and 0.0.0.0.14.
"""

from bpsn_ext.spikingjelly._compat import SJ_GENERATION
from bpsn_ext.spikingjelly.bpsn_node import BPSNNode
from bpsn_ext.spikingjelly.node_swap import swap_neurons, to_single_step
from bpsn_ext.spikingjelly.single_step_node import SingleStepNode
from bpsn_ext.spikingjelly.ssm_layers import BinaryS4DLayer, GSULayer, S4DLayer, SpikingS5Layer

__all__ = [
    "SJ_GENERATION",
    "BPSNNode",
    "SingleStepNode",
    "S4DLayer",
    "BinaryS4DLayer",
    "GSULayer",
    "SpikingS5Layer",
    "swap_neurons",
    "to_single_step",
]
