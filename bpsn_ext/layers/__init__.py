"""State-space sequence layers, framework-agnostic (plain torch), time-first ``[T, N, D]``.

* `S4D`: diagonal SSM token mixer (FFT convolution / recurrence), optionally bidirectional;
* `BinaryS4D`: S4D block whose nonlinearity is a Heaviside spike (or GELU);
* `GSU`: S4D block with the ternary Gated Spiking Unit mixer (`GSUMixer`);
* `SpikingS5`: MIMO complex-diagonal SSM (parallel scan) with a spike readout;
* `TiedDropout`: dropout of whole channels for the whole sequence (the blocks' default);
* `set_fused`: switch the fused (default) and the op-by-op reference paths.

Each has ``forward(x, mask=None)`` (parallel), ``step(x_t)`` / ``stream(x)`` (recurrent, state
in ``ssm_state``) and ``reset_state()``.  SpikingJelly versions:
``bpsn_ext.spikingjelly.ssm_layers``.
"""

from bpsn_ext.layers._common import set_fused
from bpsn_ext.layers.binary_s4d import BinaryS4D
from bpsn_ext.layers.dropout import TiedDropout
from bpsn_ext.layers.gsu import GSU, GSUMixer
from bpsn_ext.layers.s4d import S4D
from bpsn_ext.layers.s5 import SpikingS5

__all__ = ["S4D", "BinaryS4D", "GSU", "GSUMixer", "SpikingS5", "TiedDropout", "set_fused"]
