"""PNG plots of an `EnergyReport` (needs matplotlib: the ``plot``
extra).  matplotlib is imported only here, with the Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_firing_rates", "plot_raster"]


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting the energy report needs matplotlib: pip install 'bpsn-ext[plot]' "
            "(or pip install matplotlib)"
        ) from exc
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_firing_rates(report, path) -> str:
    """Horizontal bars per layer: the input firing rate of spike/ternary-input layers (what
    scales their ACs) and the output firing rate of spiking layers.  Returns ``path``."""
    rows = [x for x in report.layers if x.input_rate is not None or x.output_rate is not None]
    if not rows:
        raise ValueError("the report has no layer with spike/ternary inputs or outputs to plot")
    labels = [f"{x.key} ({x.type})" for x in rows]
    inp = np.array([np.nan if x.input_rate is None else x.input_rate for x in rows])
    out = np.array([np.nan if x.output_rate is None else x.output_rate for x in rows])
    fig = _figure(7.5, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    h = 0.38
    ax.barh(y - h / 2, np.nan_to_num(inp), h, color="#4C72B0", label="input rate (drives AC)")
    ax.barh(y + h / 2, np.nan_to_num(out), h, color="#DD8452", label="output firing rate")
    for yi, v in zip(y, inp):
        if not np.isnan(v):
            ax.text(v, yi - h / 2, f" {v:.3f}", va="center", fontsize=8)
    for yi, v in zip(y, out):
        if not np.isnan(v):
            ax.text(v, yi + h / 2, f" {v:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    top = np.nanmax(np.concatenate([inp, out, [0.0]]))
    ax.set_xlim(0, max(0.05, min(1.0, top * 1.25)) if top <= 1 else top * 1.25)
    ax.set_xlabel("fraction of nonzero entries")
    title = report.title or "firing rates per layer"
    ax.set_title(f"{title} (T={report.T}, {report.coding} coding)", fontsize=10, pad=20)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_raster(report, layer: str, path) -> str:
    """Raster of ``layer``'s output spikes (black), neuron index against time step (for a
    multi-step layer or one called per step) or against the sample (a single call).  Negative
    (ternary) spikes are red.  Returns ``path``."""
    with_raster = [x.key for x in report.layers if x.raster is not None]
    try:
        st = report[layer]
    except KeyError:
        st = None
    if st is None or st.raster is None:
        raise ValueError(
            f"no spike raster for layer {layer!r}; layers with spiking outputs: {with_raster}"
        )
    r = np.sign(np.asarray(st.raster, dtype=float))
    rows, neurons = r.shape
    fig = _figure(7.5, 3.8)
    ax = fig.add_subplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    cmap = ListedColormap(["#C44E52", "white", "black"])  # -1, 0, +1
    ax.imshow(
        r.T,
        cmap=cmap,
        vmin=-1.5,
        vmax=1.5,
        aspect="auto",
        interpolation="nearest",
        origin="lower",
        extent=(-0.5, rows - 0.5, -0.5, neurons - 0.5),
    )
    if rows <= 20:
        ax.set_xticks(range(rows))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if (r < 0).any():
        ax.text(
            1.0,
            1.01,
            "black +1, red -1",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
        )
    ax.set_xlabel(
        f"sample (first {rows} of the batch, one call)"
        if st.raster_axis == "sample"
        else f"{st.raster_axis}, first sample"
    )
    ax.set_ylabel(f"neuron (first {neurons})")
    rate = st.output_rate
    ax.set_title(
        f"{st.key} ({st.type}): {int((r != 0).sum())} spikes shown"
        + ("" if rate is None else f"; firing rate of the whole layer {rate:.3f}"),
        fontsize=10,
    )
    return _save(fig, path)
