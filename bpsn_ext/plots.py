"""PNG figures for the docs and the CLI (needs matplotlib: the ``plot`` extra).

Every figure has a function `plot_xxx(source, path) -> path`: `source` is the data (a
benchmark JSON path or dict, an energy report) or `None` for the figures drawn from the
package itself.  matplotlib is imported lazily with the Agg canvas (no display, no pyplot
state); the drawings are deterministic (fixed seeds, no timestamps in the PNG metadata).

Example:
    `python -m bpsn_ext.plots docs/img` draws every figure of the documentation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import numpy as np
import torch

from bpsn_ext.energy.plot import _figure

__all__ = [
    "plot_surrogates",
    "plot_bpsn_raster",
    "plot_firing_rates",
    "plot_energy_bars",
    "plot_bpsn_bench",
    "plot_ssm_bench",
    "plot_demo_summary",
    "draw_all",
]

DPI = 100


def _save(fig, path) -> str:
    """Write ``fig`` as a PNG atomically: readers never see a half-written file."""
    from bpsn_ext.util.files import atomic_open

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_open(path, binary=True) as f:
        fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return path


def _load(source, name: str) -> dict:
    """A benchmark result from a dict or a JSON path, with a clear error for a bad file."""
    if isinstance(source, Mapping):
        return dict(source)
    from bpsn_ext.util.files import read_json

    try:  # names the file: not UTF-8, truncated, NaN / Infinity, too deep or too large
        data = read_json(source)
    except OSError as exc:
        raise ValueError(f"cannot read the {name} benchmark JSON {source!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: expected a JSON object (a {name} result), got {type(data).__name__}"
        )
    return data


def _need(d: Mapping, key: str, where: str):
    if key not in d:
        raise KeyError(
            f"{where}: missing key {key!r} (found {sorted(d)}); "
            f"write it with the matching `bpsn-ext bench` command"
        )
    return d[key]


def plot_surrogates(source=None, path="surrogates.png") -> str:
    """Every surrogate of `bpsn_ext.surrogate` (default parameters): the Heaviside forward
    and the surrogate gradient used backward.  `source`: names to draw, or `None` for all."""
    from bpsn_ext import surrogate

    names = list(source) if source else list(surrogate.available())
    x = torch.linspace(-3, 3, 601, requires_grad=True)
    fig = _figure(9.0, 3.4)
    ax_f, ax_g = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax_f.plot(x.detach(), surrogate.heaviside(x.detach()), color="black", label="Heaviside")
    for name in names:
        fn = surrogate.resolve(name)
        (grad,) = torch.autograd.grad(fn(x).sum(), x)
        ax_g.plot(x.detach(), grad, label=name)
    ax_f.set_title("forward: spike = Θ(u − V_th)", fontsize=10)
    ax_g.set_title("backward: surrogate dΘ/du", fontsize=10)
    for ax in (ax_f, ax_g):
        ax.set_xlabel("u − V_th")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bpsn_raster(source=None, path="bpsn_raster.png") -> str:
    """Spikes of a default `BPSN` (split fusion) for two padded sequences: a pulse mid-way
    shows the forward half firing after it and the backward half before it; padded steps
    (grey) stay silent.  `source`: ignored (the input is built here, seed 0)."""
    from bpsn_ext.bpsn_module import BPSN

    T, C = 32, 16
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(T, 2, C, generator=g)
    x[10:13] += 1.6  # a pulse at steps 10-12
    lengths = torch.tensor([T, 20])
    with torch.no_grad():
        s = BPSN(channels=C, decay_init=0.8)(x, mask=lengths)
    fig = _figure(9.0, 3.4)
    for i in range(2):
        ax = fig.add_subplot(1, 2, i + 1)
        n = int(lengths[i])
        if n < T:
            ax.axvspan(n - 0.5, T - 0.5, color="0.85", label="padding")
        ax.axvspan(9.5, 12.5, color="#FFE8A0", label="input pulse")
        for c, color, half in (
            (range(C // 2), "#4C72B0", "forward half"),
            (range(C // 2, C), "#DD8452", "backward half"),
        ):
            t, ch = np.nonzero(s[:, i, list(c)].numpy())
            ax.scatter(t, np.asarray(c)[ch], s=12, marker="s", color=color, label=half)
        ax.axhline(C / 2 - 0.5, color="0.5", lw=0.8)
        ax.set_xlim(-0.5, T - 0.5)
        ax.set_xlabel("time step t")
        ax.set_ylabel("channel")
        ax.set_title(f"sample {i}: length {n} of T={T}", fontsize=10)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    return _save(fig, path)


def _small_model():
    from torch import nn

    from bpsn_ext.bpsn_module import BPSN

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 32), BPSN(channels=32), nn.Linear(32, 32), BPSN(channels=32), nn.Linear(32, 4)
    )


def _small_report():
    from bpsn_ext.energy import estimate

    x = torch.randn(24, 4, 16, generator=torch.Generator().manual_seed(0))
    return estimate(
        _small_model(), x, T=24, coding="individual", title="Linear-BPSN-Linear-BPSN-Linear"
    )


def plot_firing_rates(source=None, path="firing_rates.png") -> str:
    """Firing rates per layer (`EnergyReport.plot_firing_rates`) of `source`, an energy
    report, or of a small BPSN model on random tokens when `source` is `None`."""
    return (source or _small_report()).plot_firing_rates(path)


def plot_energy_bars(source=None, path="energy_bars.png") -> str:
    """Energy per sample and layer, the SNN against its ANN counterpart.  `source`: an
    `EnergyReport`, its `to_dict()` or a JSON file written by `report.to_json`; `None`: the
    small BPSN model of `plot_firing_rates`."""
    if source is None:
        source = _small_report()
    d = source.to_dict() if hasattr(source, "to_dict") else _load(source, "energy report")
    layers = _need(d, "layers", "energy report")
    batch = _need(d, "config", "energy report").get("batch_size") or 1
    labels = [f"{x['name']} ({x['type']})" for x in layers]
    snn = np.array([_need(x, "energy_pJ", "energy layer") for x in layers]) / batch
    ann = np.array([_need(x, "ann_energy_pJ", "energy layer") for x in layers]) / batch
    fig = _figure(7.5, 1.2 + 0.45 * len(layers))
    ax = fig.add_subplot()
    y = np.arange(len(layers))
    ax.barh(y - 0.19, snn, 0.38, color="#55A868", label="SNN (MAC + AC + neurons)")
    ax.barh(y + 0.19, ann, 0.38, color="#8172B2", label="ANN counterpart (MAC)")
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("energy per sample (pJ)")
    cfg = d["config"]
    ax.set_title(
        f"{d.get('title') or 'energy per layer'} (T={cfg.get('T')}, {cfg.get('coding')} coding)",
        fontsize=10,
        pad=20,
    )
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _time_memory(series: dict[str, list], xlabel: str):
    """Two log-log panels, time and peak memory against length, one line per label;
    labels starting with "BPSN" are drawn bold and on top."""
    fig = _figure(10.0, 3.8)
    ax_t, ax_m = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label, pts in series.items():
        x, t, mem = np.array(sorted(pts)).T
        main = label.startswith("BPSN")
        style = dict(marker="o", lw=2.2 if main else 1.2, zorder=3 if main else 2, label=label)
        ax_t.plot(x, t, **style)
        ax_m.plot(x, mem / 2**20, **style)
    ax_t.set_ylabel("forward + backward (ms, median)")
    ax_m.set_ylabel("peak memory (MiB)")
    lengths = sorted({pt[0] for pts in series.values() for pt in pts})
    for ax in (ax_t, ax_m):
        ax.set(xscale="log", yscale="log", xlabel=xlabel)
        ax.set_xticks(lengths, [f"{v:g}" for v in lengths])  # the measured lengths, as numbers
        ax.tick_params(axis="x", which="minor", labelbottom=False)
        ax.grid(alpha=0.3, which="both")
    ax_m.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _save_series(series: dict[str, list], xlabel: str, empty: str, title: str, path) -> str:
    """`_time_memory` of ``series`` with ``title``, saved to ``path``; ValueError ``empty``
    when there is nothing to draw."""
    if not series:
        raise ValueError(empty)
    fig = _time_memory(series, xlabel)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_bpsn_bench(source="benchmarks/results/bpsn.json", path="bench_bpsn.png") -> str:
    """Forward+backward time and peak memory against T for every neuron of a `bpsn-ext
    bench bpsn` JSON (log-log; failed or skipped entries are left out)."""
    d = _load(source, "bpsn")
    rows = _need(d, "results", "bpsn benchmark")
    series: dict[str, list] = {}
    for r in rows:
        if r.get("status", "ok") != "ok":
            continue
        label = _need(r, "label", "bpsn benchmark result")
        t = _need(_need(r, "fwd_bwd", f"result {label}"), "median_ms", f"{label} fwd_bwd")
        mem = _need(r, "peak_memory_bytes", f"result {label}")
        series.setdefault(label, []).append((_need(r, "T", label), t, mem))
    cfg = d.get("config", {})
    return _save_series(
        series,
        "sequence length T",
        "bpsn benchmark: no result with status 'ok' to plot",
        f"bench bpsn: batch {cfg.get('batch')}, "
        f"{cfg.get('features')} features, {cfg.get('device', 'cpu')}",
        path,
    )


def plot_ssm_bench(source="benchmarks/results/ssm.json", path="bench_ssm.png") -> str:
    """Forward+backward time and peak memory of every layer against the length L, from a
    `bpsn-ext bench ssm` JSON (`results[L][layer]`; skipped entries are left out)."""
    d = _load(source, "ssm")
    res = _need(d, "results", "ssm benchmark")
    series: dict[str, list] = {}
    for L, layers in res.items():
        for name, r in layers.items():
            if "median_ms" not in r:
                continue  # skipped (e.g. a sequential reference beyond its max length)
            label = r.get("label", name)
            mem = _need(r, "peak_memory_bytes", f"ssm result {name} at L={L}")
            series.setdefault(label, []).append((int(L), r["median_ms"], mem))
    cfg = d.get("config", {})
    return _save_series(
        series,
        "sequence length L",
        "ssm benchmark: no timed result to plot",
        f"bench ssm: batch {cfg.get('batch')}, d_model {cfg.get('d_model')}, "
        f"d_state {cfg.get('d_state')}, {cfg.get('device', 'cpu')}",
        path,
    )


def plot_demo_summary(report: Mapping, path="summary.png") -> str:
    """The summary of a `bpsn_ext.apps.demo.demo_report` report: test accuracy % and energy per
    sample (nJ) of every network, one column per experiment, this package's networks in blue
    and the baselines in grey."""
    parts = list(_need(report, "parts", "demo report").values())
    fig = _figure(4.2 * len(parts), 6)
    axes = fig.subplots(2, len(parts), squeeze=False)
    for col, part in enumerate(parts):
        rows = list(part["rows"].values())
        labels = [r["label"].replace(" (", "\n(").replace(", ", ",\n") for r in rows]
        colors = ["tab:blue" if r.get("ours") else "tab:gray" for r in rows]
        acc = [100 * r["test_accuracy"] for r in rows]
        nj = [r["energy"]["energy_pJ"] / 1000 for r in rows]
        for ax, values, ylabel, fmt in (
            (axes[0, col], acc, "test accuracy %", "{:.1f}"),
            (axes[1, col], nj, "energy / sample, nJ", "{:.0f}"),
        ):
            ax.bar(labels, values, color=colors)
            for i, v in enumerate(values):
                ax.annotate(fmt.format(v), (i, v), ha="center", va="bottom", fontsize=8)
            ax.set_ylim(0, 105 if ylabel.startswith("test") else 1.15 * max(values))
            ax.set_ylabel(ylabel if col == 0 else "")
            ax.tick_params(axis="x", labelsize=7)
        axes[0, col].set_title(part["title"].split(":")[0], fontsize=10)
    fig.suptitle(f"bpsn-ext demo on the 8x8 digits ({report['config']['framework']})")
    fig.tight_layout()
    return _save(fig, path)


FIGURES = {
    "surrogates.png": (plot_surrogates, None),
    "bpsn_raster.png": (plot_bpsn_raster, None),
    "firing_rates.png": (plot_firing_rates, None),
    "energy_bars.png": (plot_energy_bars, None),
    "bench_bpsn.png": (plot_bpsn_bench, "benchmarks/results/bpsn.json"),
    "bench_ssm.png": (plot_ssm_bench, "benchmarks/results/ssm.json"),
}


def draw_all(folder="docs/img", root=".") -> list[str]:
    """Draw every figure of `FIGURES` into `folder` (benchmark JSON paths relative to
    `root`, the repository).  Returns the written paths."""
    torch.manual_seed(0)
    out = []
    for name, (fn, src) in FIGURES.items():
        src = None if src is None else os.path.join(root, src)
        out.append(fn(src, os.path.join(folder, name)))
    return out


if __name__ == "__main__":
    for p in draw_all(*(sys.argv[1:2] or ["docs/img"])):
        print(p)
