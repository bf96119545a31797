"""``bpsn_ext.bench.ssm_bench`` in quick mode and the ``benchmarks/run.py ssm`` script."""

import argparse
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from bpsn_ext.bench import ssm_bench as bench
from bpsn_ext.layers import S4D, SpikingS5

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.parametrize("cls", [S4D, SpikingS5])
def test_sequential_baseline_computes_the_same_layer(cls):
    torch.manual_seed(0)
    model = cls(6, 8).double()
    x = torch.randn(30, 2, 6, dtype=torch.float64)
    assert (bench._sequential(model, x) - model(x)).abs().max() < 1e-12


def test_quick_run_writes_a_complete_report(tmp_path):
    path = tmp_path / "out" / "ssm.json"
    report = bench.run(quick=True, json_path=path, verbose=False, memory=False)
    saved = json.loads(path.read_text())
    assert saved["benchmark"] == "ssm" and saved["config"]["quick"] is True
    lengths = saved["config"]["lengths"]
    assert lengths == [64, 256]
    for L in lengths:
        for key in ("s4d", "binary_s4d", "gsu", "spiking_s5"):
            assert saved["results"][str(L)][key]["median_ms"] > 0
    # the sequential loops only run up to seq_max_len (64 in quick mode)
    assert "s4d_sequential" in saved["results"]["64"]
    assert "s4d_sequential" not in saved["results"]["256"]
    assert saved["skipped"]["s5_sequential"] == [256]
    assert set(saved["scaling"]) == {"s4d", "s4d_block", "binary_s4d", "gsu", "spiking_s5"}
    # same-run comparison with the non-spiking block, and the streaming (step) form per token
    for key in ("binary_s4d", "gsu"):
        for L in ("64", "256"):
            ratio = saved["spiking_cost"][key][L]
            assert ratio == pytest.approx(
                saved["results"][L][key]["median_ms"]
                / saved["results"][L]["s4d_block"]["median_ms"]
            )
    assert set(saved["streaming"]) == {"s4d", "s4d_block", "binary_s4d", "gsu", "spiking_s5"}
    for v in saved["streaming"].values():
        assert v["step_us_per_token"] > 0 and v["parallel_us_per_token"] > 0
        assert v["step_over_parallel"] == pytest.approx(
            v["step_us_per_token"] / v["parallel_us_per_token"]
        )
    assert saved["config"]["stream_tokens"] == 16
    assert saved["reference_ratios"]["L"] == 4.0
    assert saved["reference_ratios"]["L_log2_L"] == pytest.approx(4 * 8 / 6)
    text = bench.format_report(report)
    assert "S4D recurrence (loop): not run for L = 256" in text and "L log L 5.3x" in text
    assert "cost of spiking" in text and "step us/token" in text


def test_arguments_and_script(tmp_path, capsys, monkeypatch):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--lengths", "32", "64", "--d-model", "4", "--no-json"])
    assert args.lengths == [32, 64] and args.d_model == 4 and args.json_path is None
    assert not hasattr(args, "batch")  # unset flags keep run()'s defaults
    assert not hasattr(parser.parse_args([]), "json_path")  # so the JSON file is written
    with pytest.raises(SystemExit):
        parser.parse_args(["--layers", "lstm"])
    out = tmp_path / "s.json"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "run.py",
            "ssm",
            "--lengths",
            "16",
            "32",
            "--batch",
            "1",
            "--d-model",
            "4",
            "--d-state",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--layers",
            "s4d",
            "spiking_s5",
            "--no-memory",
            "--json",
            str(out),
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exit_info.value.code == 0
    assert "SpikingS5 (scan)" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert set(saved["results"]["32"]) == {"s4d", "spiking_s5"}
    assert saved["spiking_cost"] == {} and set(saved["streaming"]) == {"s4d", "spiking_s5"}
    args = parser.parse_args(["--stream-tokens", "0"])
    assert args.stream_tokens == 0
    with pytest.raises(ValueError, match="stream_tokens must be"):
        bench.run(stream_tokens=-1, json_path=None, verbose=False)
    with pytest.raises(ValueError, match="unknown layers"):
        bench.run(layers=("s6",), json_path=None, verbose=False)


def test_training_step_row_has_its_floor_measured_in_the_same_run(capsys):
    report = bench.run(quick=True, json_path=None, memory=False, train_step=True, layers=["s4d"])
    ts = report["train_step"]
    assert set(ts) >= {"fused", "unfused", "floor", "fused_over_floor", "unfused_over_floor"}
    assert ts["fused_over_floor"] == ts["fused"]["median_ms"] / ts["floor"]["median_ms"]
    assert report["config"]["train_layers"] == 1 and report["config"]["train_length"] == 32
    out = capsys.readouterr().out
    assert "training step of the sequential classifier: 1 x 16 binary_s4d" in out
    assert "floor: its FFTs and matmuls alone" in out
    with pytest.raises(ValueError, match="train_layer must be one of"):
        bench.run(quick=True, json_path=None, train_step=True, train_layer="s5")
