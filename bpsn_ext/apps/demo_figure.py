"""The demo's summary figure: accuracy and energy per sample of every network, by experiment."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["draw_summary"]


def draw_summary(report: dict, path: str | os.PathLike) -> str:
    """Two bar rows (test accuracy %, energy per sample in nJ) with one group per experiment of
    a `bpsn_ext.apps.demo.run_demo` report, this package's networks in blue and the baselines
    in grey; the PNG is written atomically."""
    from bpsn_ext.util.files import atomic_open

    parts = list(report["parts"].values())
    fig, axes = plt.subplots(2, len(parts), figsize=(4.2 * len(parts), 6), squeeze=False)
    for col, part in enumerate(parts):
        rows = list(part["rows"].values())
        labels = [r["label"].replace(" (", "\n(").replace(", ", ",\n") for r in rows]
        colors = ["tab:blue" if r.get("ours") else "tab:gray" for r in rows]
        acc = axes[0, col]
        pct = [100 * r["test_accuracy"] for r in rows]
        acc.bar(labels, pct, color=colors)
        for i, v in enumerate(pct):
            acc.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
        acc.set_ylim(0, 105)
        acc.set_title(part["title"].split(":")[0], fontsize=10)
        acc.set_ylabel("test accuracy %" if col == 0 else "")
        energy = axes[1, col]
        nj = [r["energy"]["energy_pJ"] / 1000 for r in rows]
        energy.bar(labels, nj, color=colors)
        for i, v in enumerate(nj):
            energy.annotate(f"{v:.0f}", (i, v), ha="center", va="bottom", fontsize=8)
        energy.set_ylim(0, 1.15 * max(nj))
        energy.set_ylabel("energy / sample, nJ" if col == 0 else "")
        for ax in (acc, energy):
            ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"bpsn-ext demo on the 8x8 digits ({report['config']['framework']})")
    fig.tight_layout()
    with atomic_open(path, binary=True) as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return os.fspath(path)
