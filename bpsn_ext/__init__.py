"""bpsn_ext: parallel, single-step and state-space spiking neurons for SpikingJelly and snnTorch.

``import bpsn_ext`` imports neither framework; the adapters live in ``bpsn_ext.spikingjelly``
and ``bpsn_ext.snntorch``, and `register` exposes them in the frameworks' namespaces.
"""

from bpsn_ext import surrogate
from bpsn_ext.bpsn_module import BPSN
from bpsn_ext.convert import to_single_step
from bpsn_ext.core.bpsn_options import BPSNOptions
from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5
from bpsn_ext.optim import ssm_param_groups
from bpsn_ext.registry import register

__version__ = "0.1.0"

__all__ = [
    "BPSN",
    "BPSNOptions",
    "S4D",
    "BinaryS4D",
    "GSU",
    "SpikingS5",
    "surrogate",
    "register",
    "ssm_param_groups",
    "to_single_step",
    "__version__",
]
