"""The ``bpsn-ext`` command line: bench single-step, demo, argument errors."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("spikingjelly")
pytest.importorskip("snntorch")

from bpsn_ext.cli import main  # noqa: E402

TINY = ["--width", "32", "--depth", "2", "--batch", "8", "--T", "2", "--repeats", "2",
        "--warmup", "1"]


def test_bench_single_step_writes_json_and_prints_table(tmp_path, capsys):
    path = tmp_path / "out" / "single_step.json"
    assert main(["bench", "single-step", *TINY, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "S3NN speedup vs SpikingJelly LIFNode (T=2)" in out
    assert "snnTorch Leaky" in out and "median ms" in out

    report = json.loads(path.read_text())
    assert {"config", "environment", "results", "speedup", "speedup_min",
            "memory_ratio"} <= set(report)
    assert report["config"]["width"] == 32 and report["config"]["T"] == 2
    assert set(report["results"]) == {"s3nn", "sj_lif", "snntorch_leaky"}
    for key, r in report["results"].items():
        assert r["repeats"] == 2 and r["median_ms"] > 0 and r["peak_memory_bytes"] > 0
        assert r["T"] == (1 if key == "s3nn" else 2)
    # the same layers in all three networks: 784*32+32 + 32*32+32 + 32*10+10 parameters
    assert {r["parameters"] for r in report["results"].values()} == {26506}
    assert set(report["speedup"]) == {"sj_lif", "snntorch_leaky"}
    assert all(s > 0 for s in report["speedup"].values())


def test_bench_no_json_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "single-step", *TINY, "--no-json"]) == 0
    assert "S3NN" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_demo_runs_and_prints_accuracies(capsys):
    assert main(["demo", "--epochs", "1", "--hidden", "16", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "test acc %" in out and "peak mem/step" in out
    assert "S3NN SingleStepNode" in out and "SpikingJelly LIFNode" in out


def test_run_demo_is_seeded_and_learns():
    from bpsn_ext.apps import run_demo

    kwargs = dict(epochs=3, hidden=64, lr=2e-2, batch_size=256, progress=False, verbose=False)
    a, b = run_demo(**kwargs), run_demo(**kwargs)
    for key in ("s3nn", "sj_lif"):
        assert a["results"][key]["test_accuracy"] == b["results"][key]["test_accuracy"]
        assert a["results"][key]["test_accuracy"] > 0.5  # chance is 0.1
        assert a["results"][key]["peak_memory_bytes"] > 0
        assert a["results"][key]["energy"]["energy_pJ"] > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "no-such-bench"], "invalid choice: 'no-such-bench'"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        ([], "required"),
        (["bench", "single-step", "--width", "0"], "must be an integer >= 1"),
    ],
)
def test_bad_arguments_exit_nonzero_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code != 0
    assert message in capsys.readouterr().err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "bpsn_ext", "bench", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "single-step" in proc.stdout


def test_bench_ssm_is_wired_and_single_step_writes_its_default_json(tmp_path, monkeypatch):
    from bpsn_ext.cli import build_parser

    args = build_parser().parse_args(["bench", "ssm", "--quick", "--no-json"])
    assert args.benchmark == "ssm" and args.json_path is None
    single = build_parser().parse_args(["bench", "single-step"])
    assert not hasattr(single, "json_path")  # run() then writes its default result file


def test_train_and_evaluate_share_the_checkpoint_dir_flag():
    from bpsn_ext.cli import build_parser

    parse = build_parser().parse_args
    lra = parse(["train", "lra", "--task", "digits", "--checkpoint-dir", "runs/a"])
    glue = parse(["train", "glue", "--task", "sst2", "--data", "g", "--checkpoint-dir", "runs/b"])
    assert lra.checkpoint_dir == "runs/a" and glue.out == "runs/b"
    assert parse(["evaluate", "lra", "--checkpoint-dir", "runs/a"]).checkpoint_dir == "runs/a"
    ev = parse(["evaluate", "glue", "--checkpoint-dir", "runs/b", "--data", "g"])
    assert ev.checkpoint == "runs/b"
    for verb in ("train", "evaluate", "generate"):
        with pytest.raises(SystemExit):
            parse([verb])  # a task is required


def test_neuron_options_parse_hyper_parameters_as_floats():
    from bpsn_ext.cli import build_parser

    args = build_parser().parse_args([
        "train", "glue", "--task", "sst2", "--data", "g", "--out", "o",
        "--lif-option", "tau=3", "--bpsn-option", "refractory_steps=2",
        "--bpsn-option", "fusion=gate", "--bpsn-option", "learn_gate=false",
    ])
    lif, bpsn = dict(args.lif_option), dict(args.bpsn_option)
    assert lif == {"tau": 3.0} and isinstance(lif["tau"], float)
    assert bpsn == {"refractory_steps": 2, "fusion": "gate", "learn_gate": False}
    assert isinstance(bpsn["refractory_steps"], int)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "glue", "--task", "sst2", "--data", "g", "--out",
                                   "o", "--bpsn-option", "refractory_steps=1.5"])
