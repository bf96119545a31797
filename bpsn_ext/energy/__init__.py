"""Energy estimation for spiking networks: operation counts (MAC / AC / elementwise) per layer.

``report = estimate(model, x)`` runs the model once with hooks; ``print(report)`` shows the
per-layer table, totals and the ANN baseline; ``report.to_json(path)`` / ``to_csv(path)``
export it and ``report.plot_firing_rates(path)`` / ``plot_raster(layer, path)`` draw PNGs.
Conventions and caveats: ``docs/energy.md``.

Layers declare their own cost with an ``energy_ops(inputs, output)`` method returning
`Ops` records (helper: `synaptic`), or with `register_counter`.  This package's SSM layers are
counted by `bpsn_ext.energy.ssm_counters` (the modules know nothing of energy).
"""

import bpsn_ext.energy.ssm_counters  # noqa: F401  (counts the package's SSM layers, see its end)
from bpsn_ext.energy.costs import PRESETS, EnergyModel
from bpsn_ext.energy.counter_registry import register_counter, unregister_counter
from bpsn_ext.energy.demo_summary import demo_energy
from bpsn_ext.energy.detect import KINDS, classify, nonzero_rate
from bpsn_ext.energy.estimate import count_call, estimate, last_call
from bpsn_ext.energy.ops import Ops, synaptic
from bpsn_ext.energy.report import EnergyReport, LayerStats

__all__ = [
    "estimate",
    "EnergyReport",
    "LayerStats",
    "EnergyModel",
    "PRESETS",
    "Ops",
    "synaptic",
    "register_counter",
    "unregister_counter",
    "last_call",
    "count_call",
    "classify",
    "nonzero_rate",
    "KINDS",
    "demo_energy",
]
