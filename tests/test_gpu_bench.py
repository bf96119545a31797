"""`bench gpu` (`bpsn_ext.bench.gpu_bench`) on CPU: everything but the device calls.

The GPU-only rows must say why they cannot run instead of failing the run; the rows that can
run on CPU are measured with their ratios; the outputs are written atomically and an existing
one is kept unless asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpsn_ext.bench import gpu_bench
from bpsn_ext.util.errors import OutputExistsError

SMALL = {"device": "cpu", "quick": True, "verbose": False}


def test_cpu_smoke_measures_what_runs_and_names_what_cannot(tmp_path):
    out, table = tmp_path / "gpu.json", tmp_path / "gpu.txt"
    report = gpu_bench.run(
        **SMALL, bpsn_methods=("chunked", "cupy"), sj_implementations=("cuda",),
        scan_providers=("cupy", "fft"), json_path=out, table_path=table,
    )  # fmt: skip
    assert json.loads(out.read_text()) == report
    assert list(report["results"]) == ["16", "32"]
    for rows in report["results"].values():
        assert rows["floor"]["over_floor"] == 1.0
        bpsn = rows["bpsn[chunked]"]
        assert bpsn["median_ms"] > 0 and bpsn["peak_memory_bytes"] > 0
        assert bpsn["over_floor"] == pytest.approx(bpsn["median_ms"] / rows["floor"]["median_ms"])
        assert rows["scan[fft]"]["over_fft"] == 1.0
        assert rows["s5[torch]"]["over_torch"] == 1.0 and "over_floor" not in rows["s5[torch]"]
        # no CuPy on CPU: a reason, never a crash
        assert rows["scan[cupy]"]["unavailable"].startswith("unavailable: ")
        assert "median_ms" not in rows["scan[cupy]"]
        assert rows["bpsn[cupy]"]["unavailable"].startswith("unavailable: ")
        sj = rows["sj_lif[cuda]"]  # measured in its own process; on CPU SpikingJelly's CPU path
        assert sj["median_ms"] > 0 and sj["implementation"].startswith("cpu")
    text = table.read_text()
    assert "n/a [1]" in text and "[1] unavailable: " in text and "bpsn[chunked]" in text


def test_a_row_that_raises_is_reported_and_the_others_still_run(monkeypatch):
    def no_device(method, x):
        raise RuntimeError(f"no kernel for {method} here\nsecond line")

    monkeypatch.setattr(gpu_bench, "_bpsn", no_device)
    report = gpu_bench.run(
        **SMALL, bpsn_methods=("triton",), sj_implementations=(), scan_providers=("fft",),
        json_path=None,
    )  # fmt: skip
    rows = report["results"]["16"]
    assert rows["bpsn[triton]"] == {
        "unavailable": "unavailable: RuntimeError: no kernel for triton here"
    }
    assert rows["floor"]["median_ms"] > 0 and rows["scan[fft]"]["median_ms"] > 0
    assert "n/a [1]" in gpu_bench.format_report(report)


def test_a_worker_that_fails_marks_its_rows_unavailable(monkeypatch):
    monkeypatch.setattr(gpu_bench.sys, "executable", "false")  # exits 1, prints nothing
    rows = gpu_bench._sj_rows({"lengths": [16, 32]}, "triton")
    assert rows == {T: {"unavailable": "unavailable: exit 1"} for T in ("16", "32")}


def test_existing_results_are_kept_unless_overwrite(tmp_path):
    out = tmp_path / "gpu.json"
    out.write_text("earlier")
    kw = dict(SMALL, bpsn_methods=(), sj_implementations=(), scan_providers=("fft",))
    with pytest.raises(OutputExistsError, match=r"holds earlier results; pass overwrite=True"):
        gpu_bench.run(**kw, json_path=out)
    assert out.read_text() == "earlier"
    gpu_bench.run(**kw, json_path=out, overwrite=True)
    assert json.loads(out.read_text())["benchmark"] == "gpu"


def test_command_line_spells_flags(tmp_path, capsys):
    from bpsn_ext.cli import main

    out = tmp_path / "gpu.json"
    out.write_text("earlier")
    argv = ["bench", "gpu", "--device", "cpu", "--quick", "--bpsn-methods", "chunked",
            "--sj-implementations", "--scan-providers", "fft", "--json", str(out)]  # fmt: skip
    with pytest.raises(SystemExit, match=r"bench gpu: .* pass --overwrite to replace it"):
        main(argv)
    assert main([*argv, "--overwrite"]) == 0
    assert "bpsn[chunked]" in capsys.readouterr().out
    assert json.loads(out.read_text())["config"]["bpsn_methods"] == ["chunked"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"d_state": 3}, "d_state must be even"),
        ({"lengths": (0, 8)}, "T must be a positive int, got 0"),
        ({"scan_providers": ("fft", "jax")}, r"scan_providers: unknown \['jax'\]"),
    ],
)
def test_bad_sizes_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        gpu_bench.run(device="cpu", json_path=None, verbose=False, **kw)


SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def _shim(tmp_path: Path) -> Path:
    """An interpreter for the script: claims a CUDA device, logs the test runs, and runs the
    script's benchmark command for real on CPU at tiny sizes (later flags win in argparse)."""
    shim = tmp_path / "python"
    shim.write_text(
        "#!/usr/bin/env bash\n"
        "if [[ $1 == -c ]]; then exit 0; fi\n"
        "if [[ $2 == pytest ]]; then\n"
        f'  echo "${{TRITON_INTERPRET-unset}} $*" >> {tmp_path}/calls; exit 0\n'
        "fi\n"
        f'exec {sys.executable} "$@" --device cpu --quick --bpsn-methods chunked '
        "--sj-implementations --scan-providers fft\n"
    )
    shim.chmod(0o755)
    return shim


def test_gpu_check_script_runs_both_test_selections_and_the_benchmark(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "PYTHON": str(_shim(tmp_path)), "GPU_CHECK_OUT": str(out),
           "PYTHONPATH": str(SCRIPT.parents[1]), "TRITON_INTERPRET": "1"}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    # the Triton tests run compiled on the device, not under the interpreter
    assert [c.split()[0] for c in calls] == ["unset", "unset"]
    assert [c.split()[-2:] for c in calls] == [["gpu", "tests"], ["triton", "tests"]]
    assert json.loads((out / "gpu.json").read_text())["results"]["16"]["bpsn[chunked]"]
    assert "bpsn[chunked]" in (out / "gpu.txt").read_text()
    again = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    done = subprocess.run(["bash", str(SCRIPT), "--overwrite"], env=env, capture_output=True)
    assert done.returncode == 0


def test_gpu_check_script_refuses_without_a_device():
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    if "has no CUDA device" not in done.stderr:
        pytest.skip("this machine has a CUDA device")
    assert done.returncode == 2
