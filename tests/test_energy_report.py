"""Energy report: text, JSON/CSV export, presets, plots, and errors on bad input."""

import csv
import json
import sys

import pytest
import torch
from torch import nn

import bpsn_ext
from bpsn_ext.energy import PRESETS, EnergyModel, EnergyReport, estimate


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), bpsn_ext.BPSN(8, v_threshold=0.2), nn.Linear(8, 3))


def _report(**kwargs) -> EnergyReport:
    return estimate(_net(), torch.randn(7, 4, 6) * 2, coding="individual", **kwargs)


def test_str_table_and_summary():
    r = _report(title="tiny")
    text = str(r)
    assert text.startswith("tiny")
    for word in (
        "layer",
        "MAC",
        "AC",
        "in rate",
        "TOTAL",
        "ANN equivalent",
        "caveats",
        "fp32 45nm",
        "individual coding",
    ):
        assert word in text
    assert "EnergyReport(3 layers" in repr(r)


def test_json_and_csv_export(tmp_path):
    r = _report()
    r.to_json(tmp_path / "out" / "energy.json")
    data = json.loads((tmp_path / "out" / "energy.json").read_text())
    assert data == json.loads(json.dumps(r.to_dict()))
    assert data["config"] == {"T": 7, "coding": "individual", "passes": 1, "batch_size": 4}
    assert [x["name"] for x in data["layers"]] == ["0", "1", "2"]
    assert data["totals"]["mac"] == 7 * 4 * 6 * 8
    assert data["layers"][2]["input_kind"] == "spike"
    assert data["energy_model"]["e_mac"] == 4.6

    r.to_csv(tmp_path / "energy.csv")
    rows = list(csv.DictReader((tmp_path / "energy.csv").open()))
    assert [row["name"] for row in rows] == ["0", "1", "2", "TOTAL"]
    assert float(rows[-1]["mac"]) == data["totals"]["mac"]
    assert float(rows[-1]["energy_pJ"]) == pytest.approx(data["totals"]["energy_pJ"])


@pytest.mark.parametrize("name", ["fp16", "int8", "45nm"])
def test_presets_scale_energy(name):
    base = _report().totals()
    other = _report(energy=name)
    em = PRESETS[name]
    t = other.totals()
    assert t["synaptic_energy_pJ"] == pytest.approx(em.e_mac * base["mac"] + em.e_ac * base["ac"])
    assert other.energy_model is EnergyModel.preset(name)


def test_custom_energy_model():
    em = EnergyModel(e_mac=2.0, e_ac=0.5, e_mul=1.0, e_add=0.5, e_nonlin=0.0, name="custom")
    t = _report(energy=em).totals()
    assert t["ann_energy_pJ"] == 2.0 * t["ann_mac"]
    t2 = _report(energy={"e_mac": 2.0, "e_ac": 0.5}).totals()
    assert t2["synaptic_energy_pJ"] == pytest.approx(2.0 * t2["mac"] + 0.5 * t2["ac"])
    assert EnergyModel.preset("fp16").replace(e_ac=0.3).e_ac == 0.3


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    r = _report()
    rates = r.plot_firing_rates(tmp_path / "rates.png")
    raster = r.plot_raster("1", tmp_path / "plots" / "raster.png")
    for path in (rates, raster):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert r["1"].raster.shape == (7, 8)  # [time steps, neurons] of the first sample
    with pytest.raises(ValueError, match="no spike raster for layer '0'"):
        r.plot_raster("0", tmp_path / "x.png")


def test_plots_without_matplotlib_say_what_to_install(tmp_path, monkeypatch):
    r = _report()
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'bpsn-ext\[plot\]'"):
        r.plot_firing_rates(tmp_path / "rates.png")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: estimate(nn.Linear(2, 2)), ValueError, "at least one input"),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), energy="fp64"),
            ValueError,
            "unknown energy preset 'fp64'",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), energy=3),
            TypeError,
            "energy must be a preset name",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), coding="rate"),
            ValueError,
            "coding must be one of",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), step_mode="x"),
            ValueError,
            "step_mode must be one of",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), T=0),
            ValueError,
            "T must be a positive int",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(3, 1, 2), coding="individual", T=2),
            ValueError,
            "individual coding takes T from the inputs",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), input_kind="binary"),
            ValueError,
            "input_kind must be one of",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), input_kind={"fc": "real"}),
            ValueError,
            "input_kind names unknown layers",
        ),
        (
            lambda: estimate(nn.Linear(2, 2), torch.randn(1, 2), conv_ac="all"),
            ValueError,
            "conv_ac must be",
        ),
        (lambda: estimate(lambda x: x, torch.randn(1, 2)), TypeError, "needs an nn.Module"),
        (lambda: EnergyModel(e_mac=-1.0), ValueError, "e_mac must be a number >= 0"),
    ],
)
def test_bad_input_gives_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_unknown_layer_lookup():
    with pytest.raises(KeyError, match="no layer 'nope'"):
        _report()["nope"]
