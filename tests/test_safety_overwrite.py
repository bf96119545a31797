"""Nothing replaces earlier work unless asked (--overwrite); replacement is atomic; the
checkpoint before last.pt is kept; a damaged checkpoint gives an error naming it."""

from __future__ import annotations

import json
import os

import pytest
import torch

from bpsn_ext.apps import generate as gen
from bpsn_ext.bench.measure import quick_json_path
from bpsn_ext.cli import main
from bpsn_ext.data import listops
from bpsn_ext.data import pathfinder as pf
from bpsn_ext.data.glue import write_glue_fixture
from bpsn_ext.train import CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, load_checkpoint

LRA = [
    "train",
    "lra",
    "--task",
    "digits",
    "--layer",
    "s4d",
    "--epochs",
    "1",
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
    "--checkpoint-every",
    "1",
]


def test_train_lra_refuses_to_replace_a_finished_run(tmp_path):
    out = str(tmp_path / "run")
    assert main([*LRA, "--checkpoint-dir", out]) == 0
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
    with pytest.raises(SystemExit, match="already holds a run .*--resume.*--overwrite"):
        main([*LRA, "--checkpoint-dir", out, "--seed", "1"])
    assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before
    assert main([*LRA, "--checkpoint-dir", out, "--seed", "1", "--overwrite"]) == 0
    assert json.load(open(os.path.join(out, "run_config.json")))["seed"] == 1


def test_checkpoints_keep_the_previous_one_and_name_a_damaged_file(tmp_path):
    out = tmp_path / "run"
    assert main([*LRA, "--checkpoint-dir", str(out)]) == 0  # two steps: two checkpoints
    last, spare = out / CHECKPOINT_NAME, out / PREVIOUS_CHECKPOINT_NAME
    assert load_checkpoint(spare)["global_step"] < load_checkpoint(last)["global_step"]
    for damage in (b"", last.read_bytes()[:1000], b"not a checkpoint at all"):
        last.write_bytes(damage)
        with pytest.raises(
            ValueError,
            match=f"{last}: not a readable checkpoint .*expected a "
            f"complete torch.save file.*{spare.name}",
        ):
            main([*LRA, "--checkpoint-dir", str(out), "--resume"])
    spare.unlink()
    with pytest.raises(ValueError, match="not a readable checkpoint") as err:
        load_checkpoint(last)
    assert "previous.pt" not in str(err.value)


def test_train_glue_refuses_to_replace_a_finished_run(tmp_path):
    root = tmp_path / "glue"
    write_glue_fixture(root, tasks=["sst2"], n=16, n_dev=8, seed=0)
    args = [
        "train",
        "glue",
        "--task",
        "sst2",
        "--data",
        str(root),
        "--out",
        str(tmp_path / "run"),
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
    assert main(args) == 0
    metrics = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(SystemExit, match="train glue: .* already holds a run"):
        main([*args, "--seed", "5"])
    assert (tmp_path / "run" / "metrics.json").read_bytes() == metrics
    assert main([*args, "--seed", "5", "--overwrite"]) == 0


LISTOPS = [
    "generate",
    "listops",
    "--n-train",
    "8",
    "--n-val",
    "4",
    "--n-test",
    "4",
    "--min-length",
    "5",
    "--max-length",
    "30",
    "--no-progress",
]


def test_generate_listops_refuses_then_swaps_atomically(tmp_path, monkeypatch):
    assert main([*LISTOPS, "--out", str(tmp_path)]) == 0
    train = tmp_path / "listops-1000" / "basic_train.tsv"
    old = train.read_bytes()
    with pytest.raises(SystemExit, match="already holds a data set.*--overwrite"):
        main([*LISTOPS, "--out", str(tmp_path), "--seed", "1"])
    assert train.read_bytes() == old
    real = listops.write_tsv
    calls = []

    def dies_midway(samples, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after one of three files
        real(samples, path)

    monkeypatch.setattr(listops, "write_tsv", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        main([*LISTOPS, "--out", str(tmp_path), "--seed", "1", "--overwrite"])
    assert train.read_bytes() == old and sorted(os.listdir(train.parent)) == [
        "basic_test.tsv",
        "basic_train.tsv",
        "basic_val.tsv",
    ]
    monkeypatch.setattr(listops, "write_tsv", real)
    assert main([*LISTOPS, "--out", str(tmp_path), "--seed", "1", "--overwrite"]) == 0
    assert train.read_bytes() != old
    assert sorted(os.listdir(tmp_path)) == ["listops-1000"]  # no staging folder left


PATHFINDER = [
    "generate",
    "pathfinder",
    "--n",
    "6",
    "--per-folder",
    "3",
    "--contour-length",
    "6",
    "--no-progress",
]


def test_generate_pathfinder_overwrite_killed_midway_keeps_the_old_set(tmp_path, monkeypatch):
    assert main([*PATHFINDER, "--out", str(tmp_path)]) == 0
    images = pf.read_pathfinder(tmp_path, difficulty="easy")[0]
    real, calls = pf.generate_sample, []

    def dies_midway(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # after the first folder was written
        return real(*args, **kwargs)

    monkeypatch.setattr(pf, "generate_sample", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        main([*PATHFINDER, "--out", str(tmp_path), "--seed", "1", "--overwrite"])
    assert (pf.read_pathfinder(tmp_path, difficulty="easy")[0] == images).all()
    monkeypatch.setattr(pf, "generate_sample", real)
    assert main([*PATHFINDER, "--out", str(tmp_path), "--seed", "1", "--overwrite"]) == 0
    assert not (pf.read_pathfinder(tmp_path, difficulty="easy")[0] == images).all()
    assert os.listdir(tmp_path / "pathfinder32") == ["curv_baseline"]


def test_a_swap_killed_between_its_renames_is_restored(tmp_path):
    target = tmp_path / "listops-1000"
    (tmp_path / ".listops-1000.old").mkdir()
    (tmp_path / ".listops-1000.old" / "basic_train.tsv").write_text("old\n")
    with pytest.raises(SystemExit, match="already holds a data set"):
        gen._staging(str(target), False, "listops")
    assert (target / "basic_train.tsv").read_text() == "old\n"


@pytest.mark.parametrize(
    "bench, extra",
    [
        ("bpsn", ["--T", "8", "--neurons", "bpsn", "--threads", "1"]),
        ("ssm", ["--layers", "s4d", "--threads", "1", "--no-memory"]),
    ],
)
def test_bench_quick_never_replaces_committed_results(tmp_path, monkeypatch, capsys, bench, extra):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    committed = tmp_path / "benchmarks" / "results" / f"{bench}.json"
    committed.parent.mkdir(parents=True)
    committed.write_text('{"committed": true}')
    assert main(["bench", bench, "--quick", *extra]) == 0
    assert committed.read_text() == '{"committed": true}'
    quick = quick_json_path(committed.name)
    assert json.loads(open(quick).read())["config"]["quick"] is True
    assert f"wrote {quick}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):  # named, not asked
        main(["bench", bench, "--quick", *extra, "--json", str(committed)])
    assert main(["bench", bench, "--quick", *extra, "--json", str(committed), "--overwrite"]) == 0
    assert json.loads(committed.read_text())["config"]["quick"] is True


def test_checkpoint_with_torch_save_of_a_non_dict_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="expected a checkpoint dict, got list"):
        load_checkpoint(path)


def _claim_worker(rank: int, port: int, folders: list, results: str) -> None:
    import torch.distributed as dist

    from bpsn_ext.train import claim_run_folder

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        try:  # each rank is shown its own folder: only rank 0's may decide
            claim_run_folder(folders[rank], resume=False, overwrite=False)
            verdict = "free"
        except FileExistsError as e:
            verdict = str(e)
        open(os.path.join(results, f"rank{rank}"), "w").write(verdict)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("earlier_run_at", [0, 1])
def test_claim_under_ddp_every_rank_follows_rank_0(tmp_path, earlier_run_at):
    """A rank that looked itself could see files rank 0 has just written for this very run;
    so only rank 0 looks, and its verdict reaches every rank."""
    import socket

    import torch.multiprocessing as mp

    folders, results = [tmp_path / "rank0", tmp_path / "rank1"], tmp_path / "results"
    for folder in (*folders, results):
        folder.mkdir()
    (folders[earlier_run_at] / "metrics.json").write_text("{}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_claim_worker, args=(port, [str(f) for f in folders], str(results)), nprocs=2)
    verdicts = {(results / f"rank{r}").read_text() for r in (0, 1)}
    assert len(verdicts) == 1  # both ranks refuse alike, or both start
    refused = "already holds a run (metrics.json)" in verdicts.pop()
    assert refused == (earlier_run_at == 0)


def test_claim_without_a_process_group_leaves_the_check_to_rank_0(tmp_path, monkeypatch):
    from bpsn_ext.train import claim_run_folder

    (tmp_path / CHECKPOINT_NAME).write_bytes(b"x")
    monkeypatch.setenv("RANK", "1")  # torchrun before the Trainer starts the group
    claim_run_folder(tmp_path, resume=False, overwrite=False)
    monkeypatch.setenv("RANK", "0")
    # the library names its own arguments; the commands spell them as flags (tests above)
    with pytest.raises(
        FileExistsError,
        match=r"already holds a run \(last\.pt\)\. Pass "
        r"resume=True to continue it, overwrite=True to replace it",
    ):
        claim_run_folder(tmp_path, resume=False, overwrite=False)
