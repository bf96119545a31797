"""``bpsn-ext train lra`` / ``evaluate lra`` / ``generate`` end to end on tiny data: learning,
exact kill-and-resume on the CLI path, evaluation from the checkpoint, generated data read back,
presets and bad-input errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from bpsn_ext.cli import main
from bpsn_ext.data import listops, lra_release
from bpsn_ext.data import pathfinder as pf
from bpsn_ext.models.lra_classifier import LRA_PRESETS, LRADualClassifier, build_lra_model
from bpsn_ext.train import load_checkpoint
from bpsn_ext.train import trainer as trainer_mod

TINY = [
    "--d-model",
    "16",
    "--n-layers",
    "1",
    "--d-state",
    "8",
    "--threads",
    "1",
    "--no-progress",
    "--energy-samples",
    "8",
]


def read(path):
    return json.loads(path.read_text())


def test_digits_training_reduces_loss_and_reports(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lra",
                "--task",
                "digits",
                "--layer",
                "binary_s4d",
                "--epochs",
                "3",
                "--limit-train",
                "400",
                "--batch-size",
                "16",
                "--norm",
                "batch",
                "--checkpoint-dir",
                str(out),
                "--metrics-json",
                str(tmp_path / "copy.json"),
                *TINY,
            ]
        )
        == 0
    )
    m = read(out / "metrics.json")
    assert m == read(tmp_path / "copy.json")
    losses = [h["train_loss"] for h in m["history"]]
    assert losses[-1] < 0.92 * losses[0] and losses[2] < losses[1] < losses[0]
    assert m["test"]["accuracy"] > 0.2 and m["data"]["n_train"] == 400
    e = m["energy"]
    assert set(e["firing_rates"]) == {"blocks.0"} and 0 < e["firing_rates"]["blocks.0"] < 1
    assert e["energy_pJ"] > 0 and e["samples"] == 8 and e["T"] == 64
    text = capsys.readouterr().out
    assert "firing rates: blocks.0" in text and "test: loss" in text and "ANN/SNN" in text
    # evaluate reads the checkpoint and reproduces the test metrics
    assert main(["evaluate", "lra", "--checkpoint-dir", str(out), "--energy-samples", "0"]) == 0
    ev = read(out / "eval_test.json")
    assert ev["accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert ev["loss"] == pytest.approx(m["test"]["loss"], rel=1e-5)


class Killed(RuntimeError):
    pass


def test_kill_and_resume_equals_uninterrupted_on_the_cli(tmp_path, monkeypatch):
    args = [
        "train",
        "lra",
        "--task",
        "digits",
        "--layer",
        "gsu",
        "--epochs",
        "2",
        "--limit-train",
        "160",
        "--limit-eval",
        "40",
        "--batch-size",
        "32",
        "--checkpoint-every",
        "2",
        "--energy-samples",
        "0",
        "--dropout",
        "0.1",
        "--d-model",
        "16",
        "--n-layers",
        "1",
        "--d-state",
        "8",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(args + ["--checkpoint-dir", str(tmp_path / "ref")]) == 0

    real_step = trainer_mod.Trainer._train_step

    def dying_step(self, *a, **k):
        if self.state.global_step == 7:  # 5 batches per epoch: dies in epoch 2, batch 3
            raise Killed("killed")
        return real_step(self, *a, **k)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", dying_step)
    with pytest.raises(Killed):
        main(args + ["--checkpoint-dir", str(tmp_path / "run")])
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["global_step"] == 6 and saved["epoch"] == 1
    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", real_step)
    assert main(args + ["--checkpoint-dir", str(tmp_path / "run"), "--resume"]) == 0
    ref = load_checkpoint(tmp_path / "ref" / "last.pt")["model"]
    got = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    a, b = read(tmp_path / "ref" / "metrics.json"), read(tmp_path / "run" / "metrics.json")
    assert a["history"] == b["history"] and a["test"] == b["test"]


def test_generated_listops_round_trip_and_training(tmp_path):
    root = tmp_path / "lra"
    assert (
        main(
            [
                "generate",
                "listops",
                "--out",
                str(root),
                "--n-train",
                "64",
                "--n-val",
                "16",
                "--n-test",
                "16",
                "--min-length",
                "10",
                "--max-length",
                "60",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    rows = list(listops.read_tsv(root / "listops-1000" / "basic_train.tsv"))
    assert len(rows) == 64 and all(listops.evaluate(r.tokens) == r.label for r in rows)
    assert all(10 < len(r.tokens) < 60 for r in rows)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lra",
                "--task",
                "listops",
                "--data",
                str(root),
                "--layer",
                "s5",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--norm",
                "batch",
                "--checkpoint-dir",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    m = read(out / "metrics.json")
    assert m["data"]["n_test"] == 16 and m["run_config"]["norm"] == "batch"
    assert m["run_config"]["preset"] == "listops" and m["run_config"]["lr"] == 0.01
    # and generated on the fly, with the bpsn layer
    assert (
        main(
            [
                "train",
                "lra",
                "--task",
                "listops",
                "--generate",
                "--n-train",
                "32",
                "--n-val",
                "8",
                "--n-test",
                "8",
                "--min-length",
                "5",
                "--max-length",
                "30",
                "--layer",
                "bpsn",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                *TINY,
            ]
        )
        == 0
    )


def test_generated_pathfinder_read_back(tmp_path):
    assert (
        main(
            [
                "generate",
                "pathfinder",
                "--out",
                str(tmp_path),
                "--n",
                "12",
                "--per-folder",
                "5",
                "--contour-length",
                "6",
                "--no-progress",
            ]
        )
        == 0
    )
    images, labels = pf.read_pathfinder(tmp_path, difficulty="easy")
    assert images.shape == (12, 32, 32) and set(labels.tolist()) <= {0, 1}
    td = lra_release.load_task("pathfinder", data=str(tmp_path), contour_length=6)
    assert (len(td.train), len(td.val), len(td.test)) == (10, 1, 1)
    # a second, smaller set in the same place must not mix with the first
    again = [
        "generate",
        "pathfinder",
        "--out",
        str(tmp_path),
        "--n",
        "4",
        "--per-folder",
        "5",
        "--contour-length",
        "6",
        "--no-progress",
        "--seed",
        "1",
    ]
    with pytest.raises(SystemExit, match="--overwrite"):
        main(again)
    assert main([*again, "--overwrite"]) == 0
    assert pf.read_pathfinder(tmp_path, difficulty="easy")[0].shape == (4, 32, 32)


def test_retrieval_dual_model_trains(tmp_path):
    folder = tmp_path / "tsv_data"
    folder.mkdir()
    for name in ("new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv", "new_aan_pairs.test.tsv"):
        (folder / name).write_text(
            "".join(f"{i % 2}\ta{i}\tb{i}\tdoc {'x' * i}\tother {i}\n" for i in range(8))
        )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lra",
                "--task",
                "retrieval",
                "--data",
                str(tmp_path),
                "--layer",
                "binary_s4d",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--checkpoint-dir",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    m = read(out / "metrics.json")
    assert m["run_config"]["prenorm"] is True and "accuracy" in m["test"]
    assert set(m["energy"]["firing_rates"]) == {"blocks.0"}


def test_presets_follow_the_s4d_table():
    p = LRA_PRESETS["listops"]
    assert (p.n_layers, p.d_model, p.norm, p.prenorm, p.lr, p.batch_size, p.epochs) == (
        8,
        128,
        "batch",
        False,
        0.01,
        50,
        40,
    )
    assert LRA_PRESETS["pathx"].dt_min == 0.0001 and LRA_PRESETS["pathfinder"].lr == 0.004
    model = build_lra_model(
        "text", "gsu", d_input=1, n_classes=2, vocab_size=257, d_model=16, n_layers=2, d_state=4
    )
    assert len(model.blocks) == 2 and model.blocks[0].prenorm
    assert model.blocks[0].norm.kind == "batch"
    dual = build_lra_model(
        "retrieval",
        "s4d",
        d_input=1,
        n_classes=2,
        vocab_size=257,
        dual=True,
        d_model=8,
        n_layers=1,
        d_state=4,
    )
    assert isinstance(dual, LRADualClassifier)
    x = torch.randint(1, 257, (9, 3))
    assert dual(x, torch.tensor([9, 4, 2]), x[:5], None).shape == (3, 2)
    with pytest.raises(ValueError, match="task must be one of"):
        build_lra_model("cifar", "gsu", d_input=1, n_classes=2)


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        main(["train", "lra", "--task", "fashion-mnist", "--data", str(tmp_path), *TINY])
    with pytest.raises(SystemExit, match="--data LRA_DIR or --generate"):
        main(["train", "lra", "--task", "listops", *TINY])
    with pytest.raises(SystemExit, match="--resume needs --checkpoint-dir"):
        main(["train", "lra", "--task", "digits", "--resume", *TINY])
    with pytest.raises(SystemExit, match="run_config.json"):
        main(["evaluate", "lra", "--checkpoint-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["train", "lra", "--task", "digits", "--layer", "lstm"])
    assert "invalid choice: 'lstm'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="train lra: --generate is for listops and pathfinder"):
        main(["train", "lra", "--task", "digits", "--generate", *TINY])


def test_layer_flags_reach_the_layers_or_are_refused(tmp_path):
    from bpsn_ext.train.lra_run import LRARunConfig

    td = lra_release.load_task("digits", limit_train=8)

    def model_for(**values):
        return LRARunConfig.from_preset("digits", d_model=8, n_layers=1, **values).build_model(td)

    neuron = model_for(layer="bpsn", surrogate="fast_sigmoid").blocks[0].inner.neuron
    assert type(neuron.surrogate_function).__name__ == "FastSigmoid"
    assert model_for(layer="gsu", bidirectional=True).blocks[0].ssm.bidirectional
    s4 = model_for(layer="gsu", bidirectional=True, bidirectional_convention="s4")
    assert s4.blocks[0].ssm.bidirectional_convention == "s4"
    assert model_for(layer="s5", bidirectional=True).blocks[0].inner.s5.bidirectional
    # the library names its fields; the command line names the flags
    with pytest.raises(ValueError, match="^bidirectional=True applies to .*not layer=bpsn$"):
        model_for(layer="bpsn", bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional_convention=s4 applies"):
        model_for(layer="gsu", bidirectional_convention="s4")
    with pytest.raises(ValueError, match="^surrogate=NAME applies to the spiking layers"):
        model_for(layer="s4d", surrogate="atan")
    with pytest.raises(SystemExit, match="train lra: --bidirectional applies to .*--layer bpsn$"):
        main(["train", "lra", "--task", "digits", "--layer", "bpsn", "--bidirectional", *TINY])
    with pytest.raises(
        SystemExit, match="--surrogate NAME applies to the spiking layers, not --layer s4d"
    ):
        main(["train", "lra", "--task", "digits", "--layer", "s4d", "--surrogate", "atan", *TINY])
    assert model_for(layer="s5").blocks[0].inner.output == "glu"
    assert not hasattr(model_for(layer="s5", s5_output="none").blocks[0].inner, "output_linear")
    refused = "--s5-output linear applies to --layer s5, not --layer gsu"
    with pytest.raises(SystemExit, match=refused):
        main(["train", "lra", "--task", "digits", "--layer", "gsu", "--s5-output", "linear", *TINY])
    assert model_for(layer="gsu").blocks[0].mixer.grad_mode == "default"
    mixer = model_for(layer="gsu", gsu_grad_mode="surrogate").blocks[0].mixer
    assert mixer.grad_mode == "surrogate" and mixer.tern_act.log_scale is not None
    refused = "--gsu-grad-mode surrogate applies to --layer gsu, not --layer binary_s4d"
    with pytest.raises(SystemExit, match=refused):
        args = ["--layer", "binary_s4d", "--gsu-grad-mode", "surrogate", *TINY]
        main(["train", "lra", "--task", "digits", *args])


def test_run_config_round_trips_and_refuses_unknown_settings():
    from bpsn_ext.train.lra_run import LRARunConfig

    cfg = LRARunConfig.from_preset("listops", generate=True, epochs=2, data=None)
    assert cfg.preset == "listops" and cfg.n_layers == 8 and cfg.epochs == 2
    assert LRARunConfig.from_dict(cfg.to_dict()) == cfg
    # an S5 run stored before --s5-output existed had no feature mixing after its spikes
    old_s5 = {k: v for k, v in cfg.replace(layer="s5").to_dict().items() if k != "s5_output"}
    assert LRARunConfig.from_dict(old_s5).s5_output == "none"
    assert cfg.data_kwargs() == {"generate": True, "seed": 0}
    pathx = LRARunConfig.from_preset("pathfinder", resolution=128, data="x")
    assert pathx.preset == "pathx" and os.path.isabs(pathx.data)
    with pytest.raises(ValueError, match=r"unknown LRA run settings \['colour'\]"):
        LRARunConfig.from_dict({**cfg.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="^resume=True needs checkpoint_dir=DIR$"):
        LRARunConfig.from_preset("digits", resume=True)


def test_data_sources_are_exclusive_and_evaluate_switches_source(tmp_path):
    root = tmp_path / "lra"
    assert (
        main(
            [
                "generate",
                "listops",
                "--out",
                str(root),
                "--n-train",
                "16",
                "--n-val",
                "8",
                "--n-test",
                "12",
                "--min-length",
                "5",
                "--max-length",
                "30",
            ]
        )
        == 0
    )
    with pytest.raises(ValueError, match="one data source"):
        lra_release.load_task("listops", data=str(root), generate=True)
    with pytest.raises(ValueError, match="hf=NAME applies to the tasks"):
        lra_release.load_task("listops", hf="some/name", data=str(root))
    with pytest.raises(ValueError, match="takes no data=PATH"):
        lra_release.load_task("digits", data=str(root))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lra",
                "--task",
                "listops",
                "--generate",
                "--n-train",
                "16",
                "--n-val",
                "8",
                "--n-test",
                "8",
                "--min-length",
                "5",
                "--max-length",
                "30",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--checkpoint-dir",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    # a run trained on generated data, evaluated on files: --data replaces --generate
    assert (
        main(
            [
                "evaluate",
                "lra",
                "--checkpoint-dir",
                str(out),
                "--data",
                str(root),
                "--energy-samples",
                "0",
            ]
        )
        == 0
    )
    assert read(out / "eval_test.json")["samples"] == 12
    # evaluate reports the loader's argument errors in flags too
    with pytest.raises(SystemExit, match=r"evaluate lra: --hf NAME applies to the tasks"):
        main(["evaluate", "lra", "--checkpoint-dir", str(out), "--hf", "x", "--overwrite"])


@pytest.mark.parametrize(
    "flags, expected",
    [
        (
            ["--task", "image"],
            "train lra: task image needs --data CIFAR_DIR (python batches) or "
            "--hf NAME (e.g. uoft-cs/cifar10); nothing is downloaded",
        ),
        (
            ["--task", "text"],
            "train lra: task text needs --data PATH (aclImdb folder or CSV files) "
            "or --hf imdb; nothing is downloaded",
        ),
        (
            ["--task", "retrieval"],
            "train lra: task retrieval needs --data LRA_DIR (tsv_data/new_aan_pairs.*)",
        ),
        (
            ["--task", "listops", "--generate", "--data", "x"],
            "train lra: task 'listops': pass one data source, --data PATH/--hf NAME or --generate, "
            "not both",
        ),
        (
            ["--task", "pathfinder", "--hf", "x"],
            "train lra: --hf NAME applies to the tasks "
            "('mnist', 'fashion-mnist', 'text', 'image'), not "
            "'pathfinder'",
        ),
        (
            ["--task", "digits", "--data", "x"],
            "train lra: task digits uses the bundled scikit-learn digits; it takes no --data PATH",
        ),
    ],
)
def test_cli_names_the_flags_of_data_source_errors(flags, expected):
    with pytest.raises(SystemExit) as info:
        main(["train", "lra", *flags, *TINY])
    assert str(info.value) == expected


def test_cli_names_the_data_flag_of_missing_files(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="train-images-idx3-ubyte.*; choose the folder with --data$"
    ):
        main(["train", "lra", "--task", "mnist", "--data", str(tmp_path), *TINY])
    with pytest.raises(FileNotFoundError, match="no ListOps files under") as info:
        lra_release.load_task("listops", data=str(tmp_path))
    assert "--" not in str(info.value)


@pytest.mark.parametrize("layer", ["binary_s4d", "gsu", "s5", "bpsn"])
def test_firing_rates_count_the_real_steps_of_each_spiking_block(layer):
    from bpsn_ext.models.lra_classifier import LRAClassifier
    from bpsn_ext.models.lra_energy import firing_rates

    torch.manual_seed(0)
    model = LRAClassifier(3, 2, layer=layer, d_model=8, n_layers=2, d_state=4, norm="layer")
    x = torch.randn(12, 2, 3)
    rates = firing_rates(model, x, torch.tensor([12, 12]))
    assert set(rates) == {"blocks.0", "blocks.1"} and all(0 < r < 1 for r in rates.values())
    # padded steps do not count: the first 7 steps of sample 0 alone give the same rates
    padded = x.clone()
    padded[7:, 0] = 100.0
    alone = firing_rates(model, x[:7, :1], None)
    both = firing_rates(model, padded[:, :1], torch.tensor([7]))
    assert both == pytest.approx(alone)
    assert model.training  # the walk restores the mode


def test_firing_rates_of_a_non_spiking_model_are_empty():
    from bpsn_ext.models.lra_classifier import LRAClassifier
    from bpsn_ext.models.lra_energy import firing_rates

    model = LRAClassifier(3, 2, layer="s4d", d_model=8, n_layers=1, d_state=4)
    assert firing_rates(model, torch.randn(5, 2, 3)) == {}
