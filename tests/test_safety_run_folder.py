"""A run folder is a contract: a resume continues the same run (settings and checkpoint
counters checked), one writer at a time (an fcntl lock, a dead holder's lock taken over), no
stray temporaries, and a failed start leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from bpsn_ext.cli import main
from bpsn_ext.data.glue import write_glue_fixture
from bpsn_ext.train import CHECKPOINT_NAME, load_checkpoint
from bpsn_ext.train.run_folder import (
    LOCK_NAME,
    RESUME_MAY_CHANGE,
    RunFolderBusyError,
    RunFolderLock,
    check_counters,
    compare_run_config,
)

LRA = [
    "train",
    "lra",
    "--task",
    "digits",
    "--layer",
    "s4d",
    "--epochs",
    "2",
    "--limit-train",
    "64",
    "--limit-eval",
    "32",
    "--batch-size",
    "32",
    "--d-model",
    "8",
    "--n-layers",
    "1",
    "--d-state",
    "4",
    "--threads",
    "1",
    "--no-progress",
    "--energy-samples",
    "0",
]


@pytest.fixture(scope="module")
def lra_run(tmp_path_factory):
    """A finished 2-epoch digits run (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("lra") / "run"
    assert main([*LRA, "--checkpoint-dir", str(out)]) == 0
    return out


def copy_run(src, dst):
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--layer", "gsu"], r"--layer s4d \(this call: gsu\)"),
        (["--seed", "7"], r"--seed 0 \(this call: 7\)"),
        (["--limit-train", "48"], r"--limit-train 64 \(this call: 48\)"),
        (["--lr", "0.5"], r"--lr 0.01 \(this call: 0.5\)"),
        (["--d-model", "16"], r"--d-model 8 \(this call: 16\)"),
        (["--limit-eval", "16", "--epochs", "3"], r"--epochs 2 \(this call: 3\)"),
    ],
)
def test_resume_with_other_settings_is_refused(lra_run, tmp_path, flags, named):
    run = copy_run(lra_run, tmp_path / "run")
    before = {n: (run / n).read_bytes() for n in os.listdir(run)}
    with pytest.raises(SystemExit, match=f"train lra: {run} holds a run started with .*{named}"):
        main([*LRA, "--checkpoint-dir", str(run), "--resume", *flags])
    with pytest.raises(SystemExit, match="--overwrite"):
        main([*LRA, "--checkpoint-dir", str(run), "--resume", *flags])
    assert {n: (run / n).read_bytes() for n in os.listdir(run)} == before


def test_resume_may_change_threads_progress_and_cadence(lra_run, tmp_path):
    run = copy_run(lra_run, tmp_path / "run")
    assert (
        main(
            [
                *LRA,
                "--threads",
                "2",
                "--checkpoint-dir",
                str(run),
                "--resume",
                "--checkpoint-every",
                "3",
            ]
        )
        == 0
    )
    assert {"threads", "device", "progress", "checkpoint_every"} <= RESUME_MAY_CHANGE


def test_compare_run_config_names_every_difference():
    with pytest.raises(
        ValueError, match=r"task=digits \(this call: mnist\).*layer=s4d.*overwrite=True"
    ) as err:
        compare_run_config(
            {"task": "digits", "layer": "s4d", "threads": 1},
            {"task": "mnist", "layer": "gsu", "threads": 4},
            folder="runs/a",
        )
    assert "threads" not in str(err.value).split("may change")[0]
    compare_run_config({"a": [1, 2], "b": None}, {"a": (1, 2)}, folder="x")  # JSON-equal


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("epoch", -5, "epoch -5 is outside 0..2"),
        ("epoch", 10**9, "epoch 1000000000 is outside 0..2"),
        ("step_in_epoch", 10**9, "step_in_epoch 1000000000 is outside 0..0"),
        ("loss_count", -1, "loss_count -1 is outside"),
        ("global_step", 99, "global_step 99 !="),
        ("epoch", 1.5, "epoch must be an int"),
        ("loss_sum", float("nan"), "loss_sum nan is not a finite number"),
    ],
)
def test_tampered_checkpoint_counters_are_refused(lra_run, tmp_path, key, value, expected):
    run = copy_run(lra_run, tmp_path / "run")
    ckpt = load_checkpoint(run / CHECKPOINT_NAME)
    if key in ("loss_count", "loss_sum"):  # mid-epoch counters: an epoch-1 checkpoint
        ckpt.update(epoch=1, global_step=2, history=ckpt["history"][:1], step_in_epoch=0)
    ckpt[key] = value
    torch.save(ckpt, run / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match=f"{run / CHECKPOINT_NAME}: .*{expected}"):
        main([*LRA, "--checkpoint-dir", str(run), "--resume"])


def test_check_counters_accepts_a_mid_epoch_checkpoint():
    ckpt = dict(epoch=1, step_in_epoch=2, global_step=7, loss_count=64, loss_sum=3.0)
    check_counters({**ckpt, "history": [{}]}, "x", epochs=3, batches_per_epoch=5, batch_size=32)
    with pytest.raises(ValueError, match="loss_count 65 is outside 0..64"):
        check_counters(
            {**ckpt, "loss_count": 65, "history": [{}]},
            "x",
            epochs=3,
            batches_per_epoch=5,
            batch_size=32,
        )


HOLDER = textwrap.dedent(
    """
    import sys, time
    from bpsn_ext.train.run_folder import RunFolderLock
    lock = RunFolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
    """
)


def hold_in_child(folder):
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_is_refused_even_with_overwrite(lra_run, tmp_path):
    run = copy_run(lra_run, tmp_path / "run")
    before = {n: (run / n).read_bytes() for n in os.listdir(run)}
    child = hold_in_child(run)
    try:
        for extra in ([], ["--overwrite"], ["--resume"]):
            with pytest.raises(SystemExit, match=f"in use by another run \\(process {child.pid}"):
                main([*LRA, "--checkpoint-dir", str(run), "--seed", "3", *extra])
        with pytest.raises(RunFolderBusyError, match=str(child.pid)):
            RunFolderLock(run).acquire()
    finally:
        child.kill()
        child.wait()
    after = {n: (run / n).read_bytes() for n in os.listdir(run) if n != LOCK_NAME}
    assert after == before
    # the dead holder's lock is taken over; the run ends with its lock file removed
    (run / ".tmp-left-by-a-killed-writer.pt").write_bytes(b"x")
    assert main([*LRA, "--checkpoint-dir", str(run), "--seed", "3", "--overwrite"]) == 0
    assert sorted(os.listdir(run)) == ["last.pt", "metrics.json", "previous.pt", "run_config.json"]
    assert json.loads((run / "run_config.json").read_text())["seed"] == 3


def test_the_lock_is_held_for_the_whole_run(tmp_path, monkeypatch):
    from bpsn_ext.train import trainer as trainer_mod

    seen = []
    real = trainer_mod.Trainer._train_step

    def step(self, *a, **k):
        with pytest.raises(RunFolderBusyError, match=f"process {os.getpid()}"):
            RunFolderLock(tmp_path / "run").acquire()
        seen.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", step)
    assert main([*LRA, "--checkpoint-dir", str(tmp_path / "run")]) == 0
    assert len(seen) == 4 and not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_failed_start_leaves_nothing_behind(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="lr must be a finite float > 0, got nan"):
        main([*LRA, "--checkpoint-dir", str(run), "--lr", "nan"])
    assert not run.exists()
    run.mkdir()
    with pytest.raises(SystemExit, match="--bidirectional-convention s4 applies"):
        main([*LRA, "--checkpoint-dir", str(run), "--bidirectional-convention", "s4"])
    assert os.listdir(run) == []
    assert main([*LRA, "--checkpoint-dir", str(run)]) == 0  # the corrected command runs


class Killed(RuntimeError):
    pass


def test_a_run_killed_before_its_first_checkpoint_can_start_again(tmp_path, monkeypatch):
    from bpsn_ext.train import trainer as trainer_mod

    def die(self, *a, **k):
        raise Killed("killed")

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", die)
    with pytest.raises(Killed):
        main([*LRA, "--checkpoint-dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


GLUE = [
    "train",
    "glue",
    "--task",
    "sst2",
    "--layers",
    "1",
    "--width",
    "16",
    "--heads",
    "2",
    "--ffn-width",
    "16",
    "--max-length",
    "12",
    "--batch-size",
    "8",
    "--vocab-size",
    "40",
    "--no-progress",
    "--epochs",
    "1",
    "--no-energy",
]


def test_glue_resume_compares_the_run_config(tmp_path):
    root = tmp_path / "glue"
    write_glue_fixture(root, tasks=["sst2"], n=16, n_dev=8, seed=0)
    args = [*GLUE, "--data", str(root), "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["width"] == 16
    with pytest.raises(
        SystemExit, match=r"train glue: .*--width 16 \(this call: 32\).*--overwrite"
    ):
        main([*args, "--resume", "--width", "32"])
    with pytest.raises(SystemExit, match=r'--bpsn-option .*this call: \[\["fusion", "gate"\]\]\)'):
        main([*args, "--resume", "--bpsn-option", "fusion=gate"])
    assert main([*args, "--resume", "--threads", "1"]) == 0
    with pytest.raises(SystemExit, match="in use by another run"), RunFolderLock(tmp_path / "run"):
        main([*args, "--overwrite"])


def test_console_prints_the_message_and_debug_the_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "bpsn_ext", *LRA, "--checkpoint-dir", str(tmp_path / "r")]
    proc = subprocess.run([*cmd, "--lr", "nan"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "bpsn-ext: lr must be a finite float > 0, got nan" in proc.stderr
    proc = subprocess.run([*cmd, "--lr", "nan", "--debug"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_a_closed_stdout_does_not_stop_the_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "bpsn_ext", *LRA, "--checkpoint-dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    assert "BrokenPipeError" not in err and (run / "metrics.json").exists()


def test_evaluate_and_metrics_outputs_are_kept_unless_overwrite(lra_run, tmp_path):
    run = copy_run(lra_run, tmp_path / "run")
    kept = tmp_path / "kept.json"
    kept.write_text("earlier work\n")
    ev = ["evaluate", "lra", "--checkpoint-dir", str(run), "--energy-samples", "0"]
    with pytest.raises(SystemExit, match=f"evaluate lra: {kept} exists; pass --overwrite"):
        main([*ev, "--out", str(kept)])
    with pytest.raises(SystemExit, match=f"train lra: {kept} exists; pass --overwrite"):
        main([*LRA, "--checkpoint-dir", str(tmp_path / "new"), "--metrics-json", str(kept)])
    assert kept.read_text() == "earlier work\n" and not (tmp_path / "new").exists()
    assert main([*ev, "--out", str(kept), "--overwrite"]) == 0
    assert json.loads(kept.read_text())["split"] == "test"
    assert main(ev) == 0  # the default eval_test.json: made once, then kept
    with pytest.raises(SystemExit, match="eval_test.json exists"):
        main(ev)


def test_evaluate_glue_keeps_an_existing_json(tmp_path):
    root = tmp_path / "glue"
    write_glue_fixture(root, tasks=["sst2"], n=16, n_dev=8, seed=0)
    assert main([*GLUE, "--data", str(root), "--out", str(tmp_path / "run")]) == 0
    kept = tmp_path / "kept.json"
    kept.write_text("earlier work\n")
    ev = ["evaluate", "glue", "--checkpoint", str(tmp_path / "run"), "--data", str(root)]
    with pytest.raises(SystemExit, match=f"evaluate glue: {kept} exists; pass --overwrite"):
        main([*ev, "--json", str(kept)])
    assert kept.read_text() == "earlier work\n"
    assert main([*ev, "--json", str(kept), "--overwrite"]) == 0
    assert json.loads(kept.read_text())["task"] == "sst2"


def test_pretrain_resume_compares_the_run_config(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat number {i} sat on mat {i % 7}" for i in range(60)))
    args = [
        "pretrain",
        "--text",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--eval-samples",
        "10",
        "--layers",
        "1",
        "--width",
        "16",
        "--heads",
        "2",
        "--ffn-width",
        "16",
        "--max-length",
        "12",
        "--batch-size",
        "16",
        "--vocab-size",
        "40",
        "--no-progress",
    ]
    assert main(args) == 0
    with pytest.raises(SystemExit, match=r"pretrain: .*--mask-prob 0.15 \(this call: 0.3\)"):
        main([*args, "--resume", "--mask-prob", "0.3"])
    assert main([*args, "--resume", "--threads", "1"]) == 0
