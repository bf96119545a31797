"""``demo_energy``: the per-inference energy line that ``bpsn-ext demo`` prints per network."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from bpsn_ext.energy.costs import EnergyModel
from bpsn_ext.energy.estimate import estimate
from bpsn_ext.energy.report import format_count, format_energy

__all__ = ["demo_energy", "EnergySummary"]


class EnergySummary(dict):
    """A JSON-able dict of per-sample numbers whose ``str()`` is one readable line.

    Keys: ``energy_pJ``, ``synaptic_energy_pJ``, ``mac``, ``ac``, ``mul``, ``add``,
    ``nonlin`` (per sample), ``ann_energy_pJ``, ``ann_mac`` (per sample), ``ratio``,
    ``ratio_total``, ``effective_ac_rate``, ``mean_output_rate``, ``T``, ``coding``,
    ``passes``, ``energy_model``.  The full per-layer report is the ``report`` attribute
    (not part of the dict).
    """

    report = None

    def __str__(self) -> str:
        def x(r):
            return "n/a" if r is None else f"{r:.2f}x"

        rate = self["effective_ac_rate"]
        elementwise = self["energy_pJ"] - self["synaptic_energy_pJ"]
        return (
            f"{format_energy(self['energy_pJ'])}/sample = {format_count(self['mac'])} MAC + "
            f"{format_count(self['ac'])} AC ({format_energy(self['synaptic_energy_pJ'])}) + "
            f"neurons/elementwise ({format_energy(elementwise)}); ANN equivalent "
            f"{format_energy(self['ann_energy_pJ'])}, ANN/SNN {x(self['ratio'])} (synaptic), "
            f"{x(self['ratio_total'])} (all)"
            + ("" if rate is None else f"; AC input rate {rate:.3f}")
            + f" [{self['energy_model']}, T={self['T']}]"
        )

    def __repr__(self) -> str:
        return f"EnergySummary({dict.__repr__(self)})"


def demo_energy(
    model: nn.Module,
    x: torch.Tensor,
    *,
    T: int = 1,
    coding: str = "repeat",
    step_mode: str | None = None,
    energy: str | EnergyModel | Mapping = "fp32",
) -> EnergySummary:
    """Energy per test sample of ``model(x)`` (see `bpsn_ext.energy.estimate`).

    For the demo: ``demo_energy(model, x_test, T=steps)``, where the model handles time
    itself (the S3NN MLP with T = 1; the LIF MLP repeats its input T times, so it makes T
    passes and its ANN baseline is one pass).
    """
    report = estimate(model, x, T=T, coding=coding, step_mode=step_mode, energy=energy)
    s = report.per_sample()
    keys = (
        "energy_pJ",
        "synaptic_energy_pJ",
        "mac",
        "ac",
        "mul",
        "add",
        "nonlin",
        "ann_energy_pJ",
        "ann_mac",
        "ratio",
        "ratio_total",
        "effective_ac_rate",
        "mean_output_rate",
    )
    summary = EnergySummary({k: s[k] for k in keys})
    summary.update(
        T=report.T,
        coding=report.coding,
        passes=report.passes,
        energy_model=report.energy_model.name,
    )
    summary.report = report
    return summary
