"""The figure functions of `bpsn_ext.plots`: PNGs written, clear errors for bad benchmark JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bpsn_ext import plots  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def test_benchmark_plots_read_the_committed_json(tmp_path: Path):
    for fn, name in ((plots.plot_bpsn_bench, "bpsn"), (plots.plot_ssm_bench, "ssm")):
        out = fn(REPO / "benchmarks" / "results" / f"{name}.json", tmp_path / f"{name}.png")
        assert Path(out).read_bytes().startswith(PNG)


def test_missing_keys_name_the_key(tmp_path: Path):
    with pytest.raises(KeyError, match="'results'"):
        plots.plot_bpsn_bench({"config": {}}, tmp_path / "x.png")
    bad = {"results": [{"label": "BPSN", "T": 8, "status": "ok", "fwd_bwd": {}}]}
    with pytest.raises(KeyError, match="'median_ms'"):
        plots.plot_bpsn_bench(bad, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no timed result"):
        plots.plot_ssm_bench({"results": {"1024": {"s4d": {"skipped": "x"}}}}, tmp_path / "y.png")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        plots.plot_ssm_bench(tmp_path / "broken.json", tmp_path / "y.png")
    assert not (tmp_path / "x.png").exists()


def test_energy_bars_from_a_report_json(tmp_path: Path):
    report = plots._small_report()
    report.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["layers"]
    out = plots.plot_energy_bars(tmp_path / "r.json", tmp_path / "bars.png")
    assert Path(out).read_bytes().startswith(PNG)


def test_committed_figures_are_the_ones_the_script_draws():
    names = sorted(p.name for p in (REPO / "docs" / "img").glob("*.png"))
    assert names == sorted(plots.FIGURES), "run `python scripts/draw_figures.py`"


def test_length_axes_are_labelled_with_the_measured_lengths():
    series = {"BPSN": [(2048, 2.0, 2e6), (512, 1.0, 1e6)], "other": [(8192, 9.0, 9e6)]}
    fig = plots._time_memory(series, "T")
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["512", "2048", "8192"]
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
