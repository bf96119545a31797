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


def test_from_a_trained_run_measures_its_energy_on_its_text(tmp_path, capsys):
    from bpsn_ext.data.glue import write_glue_fixture

    root, run_dir = str(tmp_path / "glue"), str(tmp_path / "run")
    write_glue_fixture(root, tasks=["sst2"], n=32, n_dev=8, seed=0)
    small = ["--layers", "1", "--width", "16", "--heads", "2", "--ffn-width", "32"]
    small += ["--max-length", "16", "--vocab-size", "60", "--epochs", "1", "--no-progress"]
    train = ["train", "glue", "--task", "sst2", "--data", root, "--out", run_dir]
    assert main([*train, *small, "--lr", "1e-2"]) == 0
    evaluated = tmp_path / "eval.json"
    argv = ["evaluate", "glue", "--checkpoint", run_dir, "--data", root, "--energy"]
    assert main([*argv, "--json", str(evaluated)]) == 0
    out = tmp_path / "r.json"
    bench = ["bench", "snn-bert", "--from", run_dir, "--data", root, "--quick", "--batch", "8"]
    assert main([*bench, "--no-memory", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["config"]["from_runs"] == {"individual": run_dir}
    assert saved["config"]["width"] == 16 and saved["config"]["length"] == 16
    # the trained model's energy on the run's dev text, as `evaluate glue --energy` counts it
    want = json.loads(evaluated.read_text())["energy"]
    ind = saved["results"]["individual"]["energy"]
    assert ind["synaptic_energy_pJ"] == pytest.approx(want["synaptic_energy_pJ_per_sample"])
    assert ind["mean_output_rate"] == pytest.approx(want["mean_output_rate"])
    ann = saved["results"]["ann"]["energy"]["synaptic_energy_pJ"]
    assert saved["ratios"]["ann_energy_vs_individual"] == pytest.approx(
        ann / ind["synaptic_energy_pJ"]
    )
    assert "trained (--from)" in capsys.readouterr().out


def test_from_refuses_mismatched_runs_and_data_alone(tmp_path):
    with pytest.raises(ValueError, match="pass --from RUN_DIR"):
        run(quick=True, json_path=None, verbose=False, data=str(tmp_path))
    with pytest.raises(ValueError, match="at least one"):
        from bpsn_ext.bench.snn_bert_trained import trained_models

        trained_models([])
