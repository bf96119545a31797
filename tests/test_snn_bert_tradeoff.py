"""``benchmarks/snn_bert_tradeoff.py``: rows from run folders, the table, refusals."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    path = os.path.join(ROOT, "benchmarks", "snn_bert_tradeoff.py")
    spec = importlib.util.spec_from_file_location("snn_bert_tradeoff", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder, acc: float, syn_pj: float, wall: float) -> None:
    os.makedirs(folder)
    energy = {"mean_output_rate": 0.1, "synaptic_energy_pJ_per_sample": syn_pj}
    energy["energy_pJ_per_sample"] = 2 * syn_pj
    metrics = {"history": [{"eval_accuracy": acc}], "energy": energy}
    metrics.update(steps=10, wall_time_s=wall)
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f)


def test_rows_table_and_json(tmp_path, capsys):
    mod = _script()
    _run(tmp_path / "a0", 0.75, 4e5, 1.0)
    _run(tmp_path / "a1", 0.77, 6e5, 3.0)
    out = tmp_path / "t.json"
    argv = ["--root", str(tmp_path), "--group", "x=y=a0,a1", "--json", str(out)]
    assert mod.main(argv) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["label"] == "x=y" and row["runs"] == ["a0", "a1"]
    assert row["mean"] == pytest.approx(76.0) and row["std"] == pytest.approx(2**0.5)
    assert row["synaptic_uJ"] == pytest.approx(0.5) and row["ms_per_step"] == pytest.approx(200)
    assert "| x=y | 75.0 / 77.0 | **76.0 ± 1.4** | 0.100 | 0.5 uJ | 1 uJ | 200 |" in (
        capsys.readouterr().out
    )
    with pytest.raises(SystemExit):  # an existing --json is kept
        mod.main(argv)
    with pytest.raises(FileNotFoundError, match="not a finished"):
        mod.main(["--root", str(tmp_path), "--group", "z=missing"])


def test_energy_from_an_evaluate_json(tmp_path, capsys):
    """`--energy-json NAME` takes each run's energy from RUN/NAME, not metrics.json."""
    mod = _script()
    _run(tmp_path / "a0", 0.75, 4e5, 1.0)
    _run(tmp_path / "a1", 0.77, 6e5, 3.0)
    for name, syn in (("a0", 1e6), ("a1", 3e6)):
        energy = {"synaptic_energy_pJ_per_sample": syn, "energy_pJ_per_sample": syn}
        energy["mean_output_rate"] = 0.2
        (tmp_path / name / "e400.json").write_text(json.dumps({"energy": energy}))
    argv = ["--root", str(tmp_path), "--group", "x=a0,a1", "--energy-json", "e400.json"]
    assert mod.main(argv) == 0
    assert "| x | 75.0 / 77.0 | **76.0 ± 1.4** | 0.200 | 2 uJ | 2 uJ | 200 |" in (
        capsys.readouterr().out
    )
    (tmp_path / "a1" / "e400.json").write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ValueError, match="has no energy report"):
        mod.main(argv)
    with pytest.raises(FileNotFoundError, match="evaluate glue --energy --json"):
        mod.main(argv[:-1] + ["other.json"])
