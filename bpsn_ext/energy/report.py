"""The result of `bpsn_ext.energy.estimate`: per-layer rows, totals, ANN baseline.

``str(report)`` is a plain-text table; ``to_dict()`` / ``to_json(path)`` / ``to_csv(path)``
export it; ``plot_firing_rates(path)`` and ``plot_raster(layer, path)`` draw PNGs (needs the
``plot`` extra, matplotlib).  Energies are in picojoules (``*_pJ``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

from bpsn_ext.energy.costs import EnergyModel
from bpsn_ext.energy.ops import COUNT_FIELDS, Ops

__all__ = ["LayerStats", "EnergyReport", "format_energy", "format_count"]

CAVEAT = (
    "compute only (no memory traffic); neuron updates counted as elementwise ops; training-time "
    "FFT/scan/Toeplitz kernels not counted (recurrent form instead); real hardware differs"
)


def format_energy(pj: float) -> str:
    """``1234.0 -> '1.23 nJ'`` (pJ, nJ, uJ, mJ, J)."""
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def format_count(n: float) -> str:
    """``12345 -> '12.3k'`` (k, M, G, T); integers below 1000 as they are."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def _rate(nz: float, n: float) -> float | None:
    return nz / n if n else None


@dataclass
class LayerStats:
    """Accumulated counts of one layer (one row of the report).

    ``source`` is ``"module"`` for the layer's own counter or the name of a captured product
    (``"matmul"``, ``"bmm"``, ...) attributed to it.  ``input_kind`` is ``"real"``,
    ``"spike"``, ``"ternary"``, ``"mixed"`` (differs between calls) or None (no tensor input).
    """

    name: str
    type: str
    source: str = "module"
    calls: int = 0
    input_kind: str | None = None
    input_nonzero: float = 0.0
    input_numel: float = 0.0
    output_nonzero: float = 0.0
    output_numel: float = 0.0
    mac: float = 0.0
    ac: float = 0.0
    mul: float = 0.0
    add: float = 0.0
    nonlin: float = 0.0
    dense: float = 0.0
    passes: int = 1
    labels: list[str] = field(default_factory=list)
    raster: object = None  # 2-D numpy array [rows, neurons] or None
    raster_axis: str = "time step"

    @property
    def key(self) -> str:
        return self.name if self.source == "module" else f"{self.name} [{self.source}]"

    @property
    def input_rate(self) -> float | None:
        """Nonzero fraction of the spike/ternary inputs (None for real inputs)."""
        if self.input_kind not in ("spike", "ternary"):
            return None
        return _rate(self.input_nonzero, self.input_numel)

    @property
    def output_rate(self) -> float | None:
        """Firing rate of the output (None unless the output is spike/ternary)."""
        return _rate(self.output_nonzero, self.output_numel)

    def add_ops(self, ops: Ops) -> None:
        for f in COUNT_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(ops, f))
        self.dense += ops.dense_macs
        if ops.label and ops.label not in self.labels:
            self.labels.append(ops.label)

    def energy_pJ(self, em: EnergyModel) -> float:
        return (
            self.synaptic_energy_pJ(em)
            + em.e_mul * self.mul
            + em.e_add * self.add
            + em.e_nonlin * self.nonlin
        )

    def synaptic_energy_pJ(self, em: EnergyModel) -> float:
        return em.e_mac * self.mac + em.e_ac * self.ac

    @property
    def ann_mac(self) -> float:
        """MACs of the ANN counterpart: the dense ops of one pass."""
        return self.dense / self.passes

    def to_dict(self, em: EnergyModel) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "source": self.source,
            "calls": self.calls,
            "input_kind": self.input_kind,
            "input_rate": self.input_rate,
            "output_rate": self.output_rate,
            **{f: getattr(self, f) for f in COUNT_FIELDS},
            "dense": self.dense,
            "ann_mac": self.ann_mac,
            "synaptic_energy_pJ": self.synaptic_energy_pJ(em),
            "energy_pJ": self.energy_pJ(em),
            "ann_energy_pJ": em.e_mac * self.ann_mac,
            "notes": "; ".join(self.labels),
        }


class EnergyReport:
    """Per-layer operation counts and energy of one run (see `estimate`).

    Attributes: ``layers`` (list of `LayerStats`, in call order), ``energy_model``,
    ``T``, ``coding``, ``passes`` (T under repeat coding, 1 under individual coding),
    ``batch_size``, ``notes`` (warnings such as uncounted layers).

    Totals (``totals()``): ``mac``, ``ac``, ``mul``, ``add``, ``nonlin``, ``dense``;
    ``synaptic_energy_pJ`` (MAC + AC: the papers' E_SNN), ``energy_pJ`` (+ elementwise),
    ``ann_energy_pJ`` (every dense op a MAC, one pass: the papers' E_ANN), ``ratio``
    (ANN / synaptic SNN energy) and ``ratio_total`` (ANN / all SNN energy).
    """

    def __init__(
        self,
        layers: list[LayerStats],
        energy_model: EnergyModel,
        *,
        T: int,
        coding: str,
        passes: int,
        batch_size: int,
        notes: list[str] | None = None,
        title: str = "",
    ) -> None:
        self.layers = layers
        self.energy_model = energy_model
        self.T, self.coding, self.passes, self.batch_size = T, coding, passes, batch_size
        self.notes = list(notes or [])
        self.title = title

    # -- lookup ---------------------------------------------------------------------------
    def __getitem__(self, key: str) -> LayerStats:
        """The row ``key`` (``"fc1"``, or ``"attn [matmul]"`` for captured products); a bare
        module name also finds a layer that only has captured products."""
        for layer in self.layers:
            if layer.key == key:
                return layer
        for layer in self.layers:
            if layer.name == key:
                return layer
        raise KeyError(f"no layer {key!r} in the report; layers: {[x.key for x in self.layers]}")

    # -- totals ---------------------------------------------------------------------------
    def totals(self) -> dict:
        em = self.energy_model
        t = {f: sum(getattr(x, f) for x in self.layers) for f in (*COUNT_FIELDS, "dense")}
        t["ann_mac"] = t["dense"] / self.passes
        t["synaptic_energy_pJ"] = em.e_mac * t["mac"] + em.e_ac * t["ac"]
        t["energy_pJ"] = sum(x.energy_pJ(em) for x in self.layers)
        t["ann_energy_pJ"] = em.e_mac * t["ann_mac"]
        t["ratio"] = _div(t["ann_energy_pJ"], t["synaptic_energy_pJ"])
        t["ratio_total"] = _div(t["ann_energy_pJ"], t["energy_pJ"])
        sparse = [x for x in self.layers if x.input_rate is not None and x.dense]
        t["effective_ac_rate"] = _div(sum(x.ac for x in sparse), sum(x.dense for x in sparse))
        fired = [x for x in self.layers if x.output_numel]
        t["mean_output_rate"] = _div(
            sum(x.output_nonzero for x in fired), sum(x.output_numel for x in fired)
        )
        return t

    def per_sample(self) -> dict:
        """Totals divided by ``batch_size`` (rates and ratios unchanged)."""
        t = self.totals()
        keep = ("ratio", "ratio_total", "effective_ac_rate", "mean_output_rate")
        return {k: (v if k in keep or v is None else v / self.batch_size) for k, v in t.items()}

    @property
    def energy_pJ(self) -> float:
        return self.totals()["energy_pJ"]

    @property
    def ratio(self) -> float | None:
        return self.totals()["ratio"]

    # -- export ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able dict: ``config``, ``energy_model``, ``layers``, ``totals``, ``per_sample``,
        ``notes`` and ``caveats`` (rasters are not included)."""
        em = self.energy_model
        return {
            "title": self.title,
            "config": {
                "T": self.T,
                "coding": self.coding,
                "passes": self.passes,
                "batch_size": self.batch_size,
            },
            "energy_model": em.as_dict(),
            "layers": [x.to_dict(em) for x in self.layers],
            "totals": self.totals(),
            "per_sample": self.per_sample(),
            "notes": list(self.notes),
            "caveats": CAVEAT,
        }

    def to_json(self, path: str | os.PathLike) -> None:
        from bpsn_ext.util.files import write_json_atomic

        write_json_atomic(path, self.to_dict())

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per layer plus a ``TOTAL`` row (same columns as ``to_dict()['layers']``)."""
        em = self.energy_model
        rows = [x.to_dict(em) for x in self.layers]
        t = self.totals()
        total = {k: "" for k in rows[0]} if rows else {}
        total.update(
            {
                f: t[f]
                for f in (
                    *COUNT_FIELDS,
                    "dense",
                    "ann_mac",
                    "energy_pJ",
                    "synaptic_energy_pJ",
                    "ann_energy_pJ",
                )
            }
        )
        total.update(name="TOTAL", calls=sum(x.calls for x in self.layers))
        rows.append(total)
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        os.makedirs(folder, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    # -- plots ----------------------------------------------------------------------------
    def plot_firing_rates(self, path: str | os.PathLike) -> str:
        """Bar chart of per-layer input and output firing rates, saved as PNG; returns path."""
        from bpsn_ext.energy.plot import plot_firing_rates

        return plot_firing_rates(self, path)

    def plot_raster(self, layer: str, path: str | os.PathLike) -> str:
        """Spike raster of ``layer``'s output (first sample), saved as PNG; returns path."""
        from bpsn_ext.energy.plot import plot_raster

        return plot_raster(self, layer, path)

    # -- text -----------------------------------------------------------------------------
    def table(self) -> str:
        from bpsn_ext.util.tables import format_table

        em = self.energy_model
        headers = [
            "layer",
            "type",
            "calls",
            "input",
            "in rate",
            "out rate",
            "MAC",
            "AC",
            "mul",
            "add",
            "nonlin",
            "energy",
        ]  # counts: totals over the batch
        rows = []
        for x in self.layers:
            rows.append(
                [
                    x.key,
                    x.type,
                    x.calls,
                    x.input_kind or "-",
                    x.input_rate,
                    x.output_rate,
                    x.mac,
                    x.ac,
                    x.mul,
                    x.add,
                    x.nonlin,
                    format_energy(x.energy_pJ(em)),
                ]
            )
        t = self.totals()
        rows.append(
            [
                "TOTAL",
                "",
                sum(x.calls for x in self.layers),
                "",
                None,
                None,
                t["mac"],
                t["ac"],
                t["mul"],
                t["add"],
                t["nonlin"],
                format_energy(t["energy_pJ"]),
            ]
        )
        return format_table(headers, rows)

    def summary(self) -> str:
        """Three lines: SNN energy, ANN baseline and ratio, per sample."""
        em, s = self.energy_model, self.per_sample()
        rate = s["effective_ac_rate"]
        lines = [
            f"SNN per sample: {format_energy(s['energy_pJ'])} (synaptic "
            f"{format_energy(s['synaptic_energy_pJ'])}: {format_count(s['mac'])} MAC + "
            f"{format_count(s['ac'])} AC; elementwise {format_count(s['mul'])} mul, "
            f"{format_count(s['add'])} add, {format_count(s['nonlin'])} nonlin)",
            f"ANN equivalent per sample (every op a MAC, one pass): "
            f"{format_energy(s['ann_energy_pJ'])} = {format_count(s['ann_mac'])} MAC; "
            f"ANN/SNN {_x(s['ratio'])} synaptic, {_x(s['ratio_total'])} with elementwise",
            f"{em.name}: MAC {em.e_mac} pJ, AC {em.e_ac} pJ, mul {em.e_mul} pJ, add {em.e_add} "
            f"pJ, nonlin {em.e_nonlin} pJ; T={self.T} ({self.coding} coding, {self.passes} "
            f"pass{'es' if self.passes != 1 else ''}), batch {self.batch_size}"
            + ("" if rate is None else f", effective AC rate {rate:.3f}"),
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self.title] if self.title else []
        parts += [self.table(), self.summary(), f"caveats: {CAVEAT}"]
        parts += [f"note: {n}" for n in self.notes]
        return "\n".join(parts)

    def __repr__(self) -> str:
        t = self.totals()
        return (
            f"EnergyReport({len(self.layers)} layers, energy={format_energy(t['energy_pJ'])}, "
            f"ratio={_x(t['ratio'])})"
        )


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _x(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"
