"""``bpsn-ext bench bpsn``: the quick run, its JSON and table, the flags and their errors."""

import json
import os
import subprocess
import sys

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.bench import bpsn_bench as bench_bpsn
from bpsn_ext.bench import bpsn_settings
from bpsn_ext.bench.bpsn_rounds import _row as bench_row
from bpsn_ext.bench.neuron_zoo import NativeKernels, neurons
from bpsn_ext.cli import build_parser, main
from bpsn_ext.kernels import cpu_native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATS = {"median_ms", "min_ms", "mean_ms", "max_ms", "std_ms", "repeats"}


def _has(module: str, attr: str) -> bool:
    try:
        mod = __import__(module, fromlist=[attr])
    except ImportError:
        return False
    return hasattr(mod, attr)


def _row(report: dict, key: str, T: int) -> dict:
    (row,) = [r for r in report["results"] if r["neuron"] == key and r["T"] == T]
    return row


def test_quick_run_writes_json_and_prints_table(tmp_path, capsys):
    path = tmp_path / "out" / "bpsn.json"
    assert main(["bench", "bpsn", "--quick", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fwd+bwd ms" in out and "peak MiB" in out and "BPSN (default)" in out
    assert "BPSN fwd+bwd speed-up vs SJ LIFNode at T=512:" in out
    assert "at T=2048: n/a" in out and "BPSN peak memory T=8192 / T=2048: n/a" in out

    report = json.loads(path.read_text())
    assert {"benchmark", "config", "environment", "results", "headline", "elapsed_s"} <= set(report)
    cfg, env = report["config"], report["environment"]
    assert report["benchmark"] == "bpsn"
    assert cfg["T"] == [128, 512] and cfg["quick"] is True
    assert cfg["batch"] == 8 and cfg["features"] == 256
    assert cfg["repeats_per_T"] == {"128": 2, "512": 2} and cfg["matmul_max_T"] == 128
    assert cfg["fast_rows"] == ["bpsn", "bpsn_kernels", "floor", "floor_fresh"]
    assert {"torch", "spikingjelly", "snntorch", "torch_threads"} <= set(env)
    assert env["torch"] == torch.__version__ and env["torch_threads"] >= 1

    rows = report["results"]
    assert [(r["T"], r["neuron"]) for r in rows] == [
        (T, key)
        for T in (128, 512)
        for key in bench_bpsn.NEURON_KEYS
        if key not in bench_bpsn.QUICK_SKIP  # the compile row: a minute per T
    ]
    floor = _row(report, "floor", 512)
    assert floor["peak_memory_bytes"] == 6 * 512 * 8 * 256 * 4  # the six arrays it streams
    assert report["headline"]["bpsn_fwd_bwd_over_floor"]["512"] == pytest.approx(
        _row(report, "bpsn", 512)["fwd_bwd"]["median_ms"] / floor["fwd_bwd"]["median_ms"]
    )
    assert "BPSN fwd+bwd / memory floor at T=512:" in out and "floor median/min" in out
    assert report["headline"]["bpsn_fwd_bwd_over_floor_min_times"]["512"] == pytest.approx(
        _row(report, "bpsn", 512)["fwd_bwd"]["min_ms"] / floor["fwd_bwd"]["min_ms"]
    )
    assert report["headline"]["floor_median_over_min"]["512"] >= 1.0
    fresh = _row(report, "floor_fresh", 512)
    assert fresh["peak_memory_bytes"] == floor["peak_memory_bytes"]
    assert report["headline"]["bpsn_fwd_bwd_over_floor_fresh"]["512"] == pytest.approx(
        _row(report, "bpsn", 512)["fwd_bwd"]["median_ms"] / fresh["fwd_bwd"]["median_ms"]
    )
    assert "BPSN fwd+bwd / memory floor with fresh outputs at T=512:" in out
    if cpu_native.available():
        kernels = _row(report, "bpsn_kernels", 512)
        assert report["headline"]["kernels_fwd_bwd_over_floor_min_times"]["512"] == pytest.approx(
            kernels["fwd_bwd"]["min_ms"] / floor["fwd_bwd"]["min_ms"]
        )
        assert "BPSN kernels alone fwd+bwd / memory floor at T=512:" in out
    assert cfg["floor_rounds_per_T"] == {"128": 4, "512": 4} and cfg["floor_warmup"] == 2
    for row in rows:
        assert row["status"] in ("ok", "skipped")
        if row["status"] == "skipped":
            assert row["note"].startswith("skipped")
            continue
        rounds = 4 if row["neuron"] in bpsn_settings.FAST_KEYS else 2  # the floor's rows: more
        for phase in ("fwd", "fwd_bwd"):
            assert set(row[phase]) == STATS and row[phase]["repeats"] == rounds
            assert row[phase]["median_ms"] > 0
            assert row[f"speedup_{phase}"] > 0
        assert row["peak_memory_bytes"] > 0
        if not row["neuron"].startswith("floor"):  # the floors fire nothing
            assert 0.0 <= row["firing_rate"] <= 1.0

    native = BPSN(256).implementation(torch.zeros(1, 1, 256)) == "native"
    for T in (128, 512):
        method = "native" if native else "chunked"
        base = _row(report, "bpsn", T)
        assert base["status"] == "ok" and base["method"] == method
        assert base["note"] == f"auto -> {method}"
        assert base["speedup_fwd"] == base["speedup_fwd_bwd"] == 1.0
        assert _row(report, "bpsn_torch", T)["method"] == "chunked"
        assert report["headline"]["bpsn_method"].get(str(T), method) == method
        assert _row(report, "sj_lif", T)["status"] == "ok"
        assert _row(report, "snntorch_leaky", T)["status"] == "ok"
    assert _row(report, "bpsn_matmul", 128)["status"] == "ok"
    matmul_512 = _row(report, "bpsn_matmul", 512)
    assert matmul_512["status"] == "skipped" and "T > 128" in matmul_512["note"]

    sj_psn = _has("spikingjelly.activation_based.neuron", "PSN")
    assert _row(report, "sj_psn", 512)["status"] == ("ok" if sj_psn else "skipped")
    state_leaky = _has("snntorch", "StateLeaky")
    row = _row(report, "snntorch_state_leaky", 128)
    assert row["status"] == ("ok" if state_leaky else "skipped")
    if not state_leaky:
        assert "StateLeaky" in row["note"]

    head = report["headline"]
    lif_512 = _row(report, "sj_lif", 512)
    assert head["speedup_fwd_bwd_vs_sj_lif"]["512"] == pytest.approx(lif_512["speedup_fwd_bwd"])
    assert head["speedup_fwd_bwd_vs_sj_lif"]["2048"] is None
    base_512 = _row(report, "bpsn", 512)
    assert head["speedup_fwd_bwd_vs_sj_lif_min_times"]["512"] == pytest.approx(
        lif_512["fwd_bwd"]["min_ms"] / base_512["fwd_bwd"]["min_ms"]
    )
    assert head["bpsn_peak_memory_ratio_T8192_vs_T2048"] is None
    assert head["target_speedup_fwd_bwd_vs_sj_lif"] == 5.0


def test_run_subset_without_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    report = bench_bpsn.run(
        T=[16, 32],
        batch=2,
        features=8,
        repeats=1,
        neurons=["bpsn", "bpsn_matmul"],
        matmul_max_T=16,
        floor_rounds=3,
        threads=1,
        json_path=None,
        verbose=False,
    )
    assert torch.get_num_threads() == threads  # restored
    assert list(tmp_path.iterdir()) == []
    assert report["environment"]["torch_threads"] == 1
    assert [(r["neuron"], r["T"], r["status"]) for r in report["results"]] == [
        ("bpsn", 16, "ok"),
        ("bpsn_matmul", 16, "ok"),
        ("bpsn", 32, "ok"),
        ("bpsn_matmul", 32, "skipped"),
    ]
    assert report["headline"]["speedup_fwd_bwd_vs_sj_lif"] == {"512": None, "2048": None}
    assert report["results"][0]["fwd_bwd"]["repeats"] == 3  # a fast row: floor_rounds
    assert report["results"][1]["fwd_bwd"]["repeats"] == 1


def test_conv_shaped_rows_run_bpsn_on_channels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = bench_bpsn.run(
        T=[16],
        batch=2,
        features=4,
        spatial=3,
        repeats=1,
        warmup=0,
        neurons=["bpsn", "sj_lif", "snntorch_state_leaky"],
        json_path=None,
        verbose=False,
    )
    assert report["config"]["spatial"] == 3
    keys = [r["neuron"] for r in report["results"]]
    assert "snntorch_state_leaky" not in keys and "bpsn" in keys  # [T, B, C] only: left out
    assert all(r["status"] == "ok" for r in report["results"])
    with pytest.raises(ValueError, match="spatial must be an int >= 0"):
        bench_bpsn.run(T=[16], spatial=-1, json_path=None, verbose=False)


native_only = pytest.mark.skipif(not cpu_native.available(), reason="no native kernel here")


@native_only
@pytest.mark.parametrize("shape", [(40, 3, 6), (40, 2, 4, 3, 3)])
def test_kernels_alone_row_computes_what_the_default_bpsn_computes(shape):
    torch.manual_seed(0)
    x = torch.randn(shape) + 0.5
    g = torch.randn(shape)
    leaf = x.clone().requires_grad_(True)
    reference = BPSN(shape[2])
    y = reference(leaf)
    y.backward(g)
    assert reference.implementation(x) == "native"

    kernels = NativeKernels(shape[2])
    assert torch.equal(kernels(x), y)  # the forward kernel alone
    spikes = kernels(x, g)
    assert torch.equal(spikes, y) and torch.equal(kernels.buffers["grad_x"], leaf.grad)
    pointers = {k: t.data_ptr() for k, t in kernels.buffers.items()}
    kernels(x, g)
    assert {k: t.data_ptr() for k, t in kernels.buffers.items()} == pointers  # reused
    longer = torch.randn(48, *shape[1:])
    assert kernels(longer).shape == longer.shape  # a new shape gets new arrays
    assert kernels.buffers["grad_x"].shape == longer.shape


def test_kernels_alone_row_is_cpu_only_and_skipped_without_the_kernel(monkeypatch):
    (row,) = neurons(["bpsn_kernels"], 512)
    args = (None, 2, 4, 0, None, None, None, None, 0)  # T, batch, features, spatial, ..., seed
    settings = bpsn_settings.BenchSettings.of(True, ["bpsn_kernels"], *args)
    cuda = bench_row(row, 16, torch.zeros(16, 2, 4), settings, torch.device("cuda"))
    assert cuda["status"] == "skipped" and cuda["note"] == "skipped: CPU only (device cuda)"
    monkeypatch.setattr(cpu_native, "unavailable_reason", lambda: "no compiler")
    (row,) = neurons(["bpsn_kernels"], 512)
    cpu = bench_row(row, 16, torch.zeros(16, 2, 4), settings, torch.device("cpu"))
    assert cpu["status"] == "skipped"
    assert cpu["note"] == "skipped: no native kernel (no compiler)"


def test_json_defaults_to_benchmarks_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "bpsn", "--T", "8", "--repeats", "1", "--neurons", "bpsn", "sj_lif"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "benchmarks" / "results" / "bpsn.json").read_text())
    assert [(r["neuron"], r["T"], r["status"]) for r in report["results"]] == [
        ("bpsn", 8, "ok"),
        ("sj_lif", 8, "ok"),
    ]
    assert report["config"]["neurons"] == ["bpsn", "sj_lif"]
    assert "wrote benchmarks/results/bpsn.json" in capsys.readouterr().out


def test_repeats_shrink_with_T_but_not_for_the_floor_rows():
    Ts = bpsn_settings.DEFAULT_T
    assert [bench_bpsn.repeats_for(T, 10) for T in Ts] == [10, 5, 2, 2]
    assert [bench_bpsn.repeats_for(T, 2) for T in Ts] == [2, 2, 2, 2]
    assert bench_bpsn.repeats_for(8192, 1) == 1
    assert [bpsn_settings.warmup_for(T, 1) for T in Ts] == [1, 0, 0, 0]
    assert [bpsn_settings.floor_rounds_for(T, 10, 30) for T in Ts] == [30, 30, 30, 30]
    assert bpsn_settings.floor_rounds_for(128, 40, 30) == 40


def test_cli_neuron_choices_match_the_benchmark():
    keys = list(bench_bpsn.NEURON_KEYS)
    assert build_parser().parse_args(["bench", "bpsn", "--neurons", *keys]).neurons == keys
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "bpsn", "--neurons", "nope"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"T": [0]},
        {"T": []},
        {"repeats": 0},
        {"floor_rounds": 0},
        {"warmup": -1},
        {"neurons": ["nope"]},
        {"neurons": []},
        {"batch": 1.5},
    ],
)
def test_run_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        bench_bpsn.run(json_path=None, verbose=False, **kwargs)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "no-such-bench"], "invalid choice: 'no-such-bench'"),
        (["bench", "bpsn", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["bench", "bpsn", "--width", "4"], "unrecognized arguments: --width"),
        (["bench", "bpsn", "--T", "0"], "must be an integer >= 1"),
        (["bench", "bpsn", "--T"], "expected at least one argument"),
        (["bench", "bpsn", "--neurons", "nope"], "invalid choice: 'nope'"),
        (["bench", "bpsn", "--json", "x.json", "--no-json"], "not allowed with argument"),
        (["bench", "single-step", "--quick"], "unrecognized arguments: --quick"),
        (["bench"], "required"),
    ],
)
def test_bad_arguments_exit_nonzero_with_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code != 0
    assert message in capsys.readouterr().err


def test_help_lists_both_benchmarks_and_the_script_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "bpsn_ext", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "single-step" in proc.stdout and "bpsn" in proc.stdout
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "bpsn", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--T" in proc.stdout
