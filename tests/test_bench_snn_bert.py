"""``bpsn-ext bench snn-bert``: the quick run, its JSON, its flags (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from bpsn_ext.bench.snn_bert_bench import PAPER, format_report, run
from bpsn_ext.cli import main


def test_quick_run_writes_json(tmp_path):
    path = tmp_path / "snn_bert.json"
    report = run(quick=True, json_path=path, verbose=False, T=2)
    saved = json.loads(path.read_text())
    assert saved["benchmark"] == "snn_bert" and saved["paper"] == PAPER
    assert saved["config"]["T"] == 2 and saved["config"]["quick"]
    ind, rep = saved["results"]["individual"], saved["results"]["repeat"]
    for r in (ind, rep):
        assert r["median_ms"] > 0 and r["peak_memory_bytes"] > 0
        assert r["energy"]["synaptic_energy_pJ"] > 0 and 0 < r["energy"]["mean_output_rate"] < 1
    # the ratios are what the results say
    assert saved["ratios"]["time"] == pytest.approx(rep["median_ms"] / ind["median_ms"])
    assert saved["ratios"]["memory"] == pytest.approx(
        rep["peak_memory_bytes"] / ind["peak_memory_bytes"]
    )
    assert saved["ratios"]["energy_synaptic"] == pytest.approx(
        rep["energy"]["synaptic_energy_pJ"] / ind["energy"]["synaptic_energy_pJ"]
    )
    # same synapses: the ANN baselines (one pass) agree up to the head, computed once
    assert rep["energy"]["ann_energy_pJ"] == pytest.approx(ind["energy"]["ann_energy_pJ"], rel=0.01)
    # the repeat model has no BPSN parameters, otherwise the same ones
    assert rep["parameters"] < ind["parameters"]
    text = format_report(report)
    assert "repeat / individual" in text and "paper" in text


def test_cli_flags(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "bench",
                "snn-bert",
                "--quick",
                "--no-memory",
                "--attention",
                "spike_driven",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    saved = json.loads(out.read_text())
    assert saved["config"]["attention"] == "spike_driven"
    assert saved["results"]["individual"]["peak_memory_bytes"] is None
    assert saved["ratios"]["memory"] is None
    assert "SNN-BERT training step" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "snn-bert", "--batch", "0"])
    with pytest.raises(ValueError, match="layers must be a positive int"):
        run(layers=0, json_path=None, verbose=False)
