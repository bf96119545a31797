"""The ``bpsn-ext`` command line: bench single-step, demo, argument errors."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("spikingjelly")
pytest.importorskip("snntorch")

from bpsn_ext.cli import main  # noqa: E402

TINY = [
    "--width",
    "32",
    "--depth",
    "2",
    "--batch",
    "8",
    "--T",
    "2",
    "--repeats",
    "2",
    "--warmup",
    "1",
]


def test_bench_single_step_writes_json_and_prints_table(tmp_path, capsys):
    path = tmp_path / "out" / "single_step.json"
    assert main(["bench", "single-step", *TINY, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "S3NN speedup vs SpikingJelly LIFNode (T=2)" in out
    assert "snnTorch Leaky" in out and "median ms" in out

    report = json.loads(path.read_text())
    assert {"config", "environment", "results", "speedup", "speedup_min", "memory_ratio"} <= set(
        report
    )
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


def test_demo_prints_three_parts_without_third_party_noise_and_never_overwrites(capfd, tmp_path):
    out = tmp_path / "demo"
    argv = ["demo", "--epochs", "1", "--hidden", "32", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    text = "".join(capfd.readouterr())  # file-descriptor level: C++ prints too
    for title in ("1. single-step", "2. BPSN", "3. spiking SSMs", "test acc %", "energy/sample"):
        assert title in text
    for noise in ("USDT", "profiler_start", "Triton", "CPUAllocator"):
        assert noise not in text
    report = json.loads((out / "summary.json").read_text())
    assert set(report["parts"]) == {"single_step", "bpsn", "ssm"}
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "summary.json").read_bytes()
    assert main(argv) == 0  # a second run goes to a new folder
    assert (out / "summary.json").read_bytes() == before
    assert (tmp_path / "demo-2" / "summary.png").exists()


def test_run_demo_is_seeded_and_learns():
    from bpsn_ext.apps import demo_report

    kwargs = dict(
        epochs=3, hidden=64, parts=("single_step",), out=None, progress=False, verbose=False
    )
    a, b = demo_report(**kwargs), demo_report(**kwargs)
    for key in ("s3nn", "lif"):
        ra, rb = a["parts"]["single_step"]["rows"][key], b["parts"]["single_step"]["rows"][key]
        assert ra["test_accuracy"] == rb["test_accuracy"] > 0.5  # chance is 0.1
        assert ra["peak_memory_bytes"] > 0 and ra["energy"]["energy_pJ"] > 0


def test_demo_bpsn_reads_the_whole_sequence_at_the_first_token():
    """Direction matters: at the first token a forward-only LIF has seen one row of eight."""
    from bpsn_ext.apps import demo_report

    rows = demo_report(
        epochs=8, hidden=64, parts=("bpsn",), out=None, progress=False, verbose=False
    )["parts"]["bpsn"]["rows"]
    assert rows["bpsn_first"]["test_accuracy"] > rows["lif_first"]["test_accuracy"] + 0.2


@pytest.mark.parametrize("framework", ["snntorch", "auto"])
def test_demo_for_snntorch_only_users(framework, monkeypatch):
    from bpsn_ext.apps import demo_report
    from bpsn_ext.apps.demo_tasks import neurons_for

    for name in [
        m
        for m in sys.modules
        if m.split(".")[0] == "spikingjelly" or m.startswith("bpsn_ext.spikingjelly")
    ] + ["spikingjelly"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing SpikingJelly fails
    with pytest.raises(ImportError):
        neurons_for("spikingjelly")
    report = demo_report(
        epochs=1,
        hidden=32,
        parts=("single_step", "bpsn"),
        framework=framework,
        out=None,
        progress=False,
        verbose=False,
    )
    assert report["config"]["framework"] == "snntorch"
    assert "snntorch" in report["parts"]["single_step"]["rows"]["s3nn"]["label"]


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
    proc = subprocess.run(
        [sys.executable, "-m", "bpsn_ext", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
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

    args = build_parser().parse_args(
        [
            "train",
            "glue",
            "--task",
            "sst2",
            "--data",
            "g",
            "--out",
            "o",
            "--lif-option",
            "tau=3",
            "--bpsn-option",
            "refractory_steps=2",
            "--bpsn-option",
            "fusion=gate",
            "--bpsn-option",
            "learn_gate=false",
        ]
    )
    lif, bpsn = dict(args.lif_option), dict(args.bpsn_option)
    assert lif == {"tau": 3.0} and isinstance(lif["tau"], float)
    assert bpsn == {"refractory_steps": 2, "fusion": "gate", "learn_gate": False}
    assert isinstance(bpsn["refractory_steps"], int)
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                "g",
                "--out",
                "o",
                "--bpsn-option",
                "refractory_steps=1.5",
            ]
        )


def test_bench_plot_and_plot_command_draw_pngs_and_never_overwrite(tmp_path, capsys):
    fig, data = tmp_path / "bpsn.png", tmp_path / "bpsn.json"
    argv = [
        "bench",
        "bpsn",
        "--quick",
        "--T",
        "16",
        "32",
        "--neurons",
        "bpsn",
        "floor",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--json",
        str(data),
        "--plot",
        str(fig),
    ]
    assert main(argv) == 0
    assert fig.read_bytes()[:4] == b"\x89PNG"
    data_before = data.read_bytes()
    with pytest.raises(SystemExit, match=f"bench bpsn: {fig} exists; pass --overwrite"):
        main(argv)
    with pytest.raises(SystemExit, match=f"bench bpsn: {data} exists; pass --overwrite"):
        main([*argv[:-1], str(tmp_path / "other.png")])  # the --json file named is kept too
    assert data.read_bytes() == data_before
    again = tmp_path / "again.png"
    assert main(["plot", "bpsn", str(data), "--out", str(again)]) == 0
    assert again.read_bytes()[:4] == b"\x89PNG" and "figure:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists"):
        main(["plot", "bpsn", str(data), "--out", str(again)])
    assert main(["plot", "bpsn", str(data), "--out", str(again), "--overwrite"]) == 0
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KeyError, match="missing key 'results'"):
        main(["plot", "bpsn", str(tmp_path / "bad.json"), "--out", str(tmp_path / "b.png")])
    assert not list(tmp_path.glob(".*partial*"))  # no half-written figure left behind
