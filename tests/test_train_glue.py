"""``bpsn-ext train glue`` / ``evaluate glue`` on fixture files: learning, files, exact
kill-and-resume, HF init + distillation, HF datasets input, 2-process gloo DDP."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist

from bpsn_ext.apps import glue_commands as app
from bpsn_ext.cli import build_parser, main
from bpsn_ext.data.glue import write_glue_fixture
from bpsn_ext.train import CHECKPOINT_NAME, load_checkpoint
from bpsn_ext.train.snn_bert_runs import load_trained

SMALL = [
    "--layers",
    "1",
    "--width",
    "32",
    "--heads",
    "2",
    "--ffn-width",
    "64",
    "--max-length",
    "24",
    "--batch-size",
    "16",
    "--lr",
    "1e-2",
    "--vocab-size",
    "60",
    "--no-progress",
]


def parse(*argv: str):
    return build_parser().parse_args(["train", "glue", *argv])


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    write_glue_fixture(root, tasks=["sst2", "stsb", "mnli"], n=64, n_dev=16, seed=0)
    return str(root)


def test_train_then_evaluate(glue_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                glue_root,
                "--out",
                out,
                "--epochs",
                "6",
                "--dropout",
                "0.0",
                *SMALL,
            ]
        )
        == 0
    )
    assert sorted(os.listdir(out)) == [
        "energy.json",
        CHECKPOINT_NAME,
        "metrics.json",
        "model.json",
        "previous.pt",
        "run_config.json",
        "tokenizer.json",
    ]
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    hist = metrics["history"]
    assert len(hist) == 6 and hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.05
    energy = metrics["final"]["energy"]
    assert energy["ratio"] > 1 and 0 < energy["mean_output_rate"] < 1
    report = json.loads(open(os.path.join(out, "energy.json")).read())
    assert report["config"]["coding"] == "individual" and report["layers"]
    assert "energy per sample" in capsys.readouterr().out

    result = str(tmp_path / "eval.json")
    assert (
        main(["evaluate", "glue", "--checkpoint", out, "--data", glue_root, "--json", result]) == 0
    )
    got = json.loads(open(result).read())
    assert got["task"] == "sst2" and got["samples"] == 16
    assert got["metrics"]["accuracy"] == pytest.approx(hist[-1]["eval_accuracy"])
    assert got["metrics"]["loss"] == pytest.approx(hist[-1]["eval_loss"], rel=1e-5)
    # the energy report of the first 8 dev samples equals the one training wrote; all 16
    # give another per-sample mean
    for n, name in ((8, "e8.json"), (100, "e_all.json")):
        argv = ["evaluate", "glue", "--checkpoint", out, "--data", glue_root, "--energy"]
        argv += ["--energy-samples", str(n), "--json", str(tmp_path / name)]
        assert main(argv) == 0
    e8, e_all = (json.loads((tmp_path / n).read_text()) for n in ("e8.json", "e_all.json"))
    assert e8["energy_samples"] == 8 and e_all["energy_samples"] == 16
    assert e8["energy"] == pytest.approx(energy)
    assert e_all["energy"]["synaptic_energy_pJ_per_sample"] != pytest.approx(
        energy["synaptic_energy_pJ_per_sample"]
    )
    # the checkpoint file itself is accepted too
    model, tok, task = load_trained(os.path.join(out, CHECKPOINT_NAME))
    assert task == "sst2" and model.config.width == 32 and tok.vocab_size <= 60


class Killed(RuntimeError):
    pass


def test_killed_mid_epoch_and_resumed_equals_uninterrupted(glue_root, tmp_path):
    common = [
        "--task",
        "sst2",
        "--data",
        glue_root,
        "--epochs",
        "2",
        "--checkpoint-every",
        "2",
        "--dropout",
        "0.1",
        "--no-energy",
        *SMALL,
    ]
    assert app.run_train(parse(*common, "--out", str(tmp_path / "ref"))) == 0

    def kill(trainer):
        if trainer.state.global_step == 7:  # epoch 2, batch 3; last checkpoint at step 6
            raise Killed

    with pytest.raises(Killed):
        app.run_train(parse(*common, "--out", str(tmp_path / "run")), callbacks=[kill])
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 2, 6)
    assert app.run_train(parse(*common, "--out", str(tmp_path / "run"), "--resume")) == 0

    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["history"] == ref["history"] and run["final"] == ref["final"]
    a = load_checkpoint(tmp_path / "ref" / CHECKPOINT_NAME)["model"]
    b = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_regression_mnli_and_errors(glue_root, tmp_path):
    tiny = ["--epochs", "1", "--no-energy", *SMALL]
    app.run_train(parse("--task", "stsb", "--data", glue_root, "--out", str(tmp_path / "s"), *tiny))
    final = json.loads((tmp_path / "s" / "metrics.json").read_text())["final"]
    assert {"eval_pearson", "eval_spearman", "eval_pearson_spearman"} <= set(final)
    app.run_train(
        parse(
            "--task",
            "mnli",
            "--data",
            glue_root,
            "--out",
            str(tmp_path / "m"),
            "--eval-split",
            "dev_mismatched",
            "--coding",
            "repeat",
            "--T",
            "2",
            "--attention",
            "spike_driven",
            "--bpsn-option",
            "fusion=gate",
            *tiny,
        )
    )
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert saved["config"]["coding"] == "repeat" and saved["config"]["num_labels"] == 3
    assert saved["config"]["bpsn_options"] == {"runaway": "none", "fusion": "gate"}
    assert "eval_accuracy" in json.loads((tmp_path / "m" / "metrics.json").read_text())["final"]

    with pytest.raises(FileNotFoundError, match="run without --resume first"):
        app.run_train(
            parse(
                "--task",
                "sst2",
                "--data",
                glue_root,
                "--out",
                str(tmp_path / "new"),
                "--resume",
                *tiny,
            )
        )
    with pytest.raises(FileNotFoundError, match=r"RTE.*train\.tsv"):
        app.run_train(
            parse("--task", "rte", "--data", glue_root, "--out", str(tmp_path / "r"), *tiny)
        )
    with pytest.raises(FileNotFoundError, match="train glue. output folder"):
        main(["evaluate", "glue", "--checkpoint", str(tmp_path / "new"), "--data", glue_root])
    with pytest.raises(SystemExit):
        parse("--task", "sst2", "--data", glue_root, "--out", "x", "--bpsn-option", "novalue")


def test_hf_cache_miss_names_the_data_flag_only_on_the_command_line(tmp_path):
    pytest.importorskip("datasets")
    from bpsn_ext.data.glue import load_glue_hf

    with pytest.raises(FileNotFoundError, match="local HF cache") as info:
        load_glue_hf("no-such/glue-copy", "sst2", "train")
    assert "--" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="or pass a GLUE TSV tree with --data$"):
        app.run_train(
            parse(
                "--task",
                "sst2",
                "--hf",
                "no-such/glue-copy",
                "--out",
                str(tmp_path / "o"),
                "--epochs",
                "1",
                "--no-energy",
                *SMALL,
            )
        )


def test_hf_disk_input_init_and_distillation(glue_root, tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    from bpsn_ext.data.glue import load_glue
    from bpsn_ext.models.hf_bert import import_transformers

    def as_ds(split):
        ex = load_glue(glue_root, "sst2", split)
        return datasets.Dataset.from_dict(
            {"sentence": [e.text_a for e in ex], "label": [e.label for e in ex]}
        )

    datasets.DatasetDict({"train": as_ds("train"), "validation": as_ds("dev")}).save_to_disk(
        str(tmp_path / "hf")
    )
    # a tiny local BERT teacher with its own vocab.txt (made-up words of the fixture)
    words = (
        "blick dax wug fep toma lorp zav kiki bouba snarf glim yop trel mip quor vash pim "
        "dree sook nalu zib gorp flen . ! ?"
    ).split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    with import_transformers() as transformers:
        cfg = transformers.BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            num_labels=2,
        )
        torch.manual_seed(0)
        transformers.BertForSequenceClassification(cfg).save_pretrained(tmp_path / "bert")
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    bert = str(tmp_path / "bert")
    out = tmp_path / "kd"
    app.run_train(
        parse(
            "--task",
            "sst2",
            "--hf",
            str(tmp_path / "hf"),
            "--out",
            str(out),
            "--layers",
            "1",
            "--width",
            "16",
            "--heads",
            "2",
            "--ffn-width",
            "32",
            "--vocab",
            bert,
            "--init-from",
            bert,
            "--teacher",
            bert,
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--no-progress",
            "--no-energy",
        )
    )
    assert "initialised" in capsys.readouterr().err
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["step"] == 4 and "eval_accuracy" in final
    model, tok, _ = load_trained(str(out))
    assert tok.vocab_size == len(vocab) and model.config.vocab_size == len(vocab)


# ---------------------------------------------------------------------------- DDP (gloo)
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, argv: list) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        app.run_train(parse(*argv))
    finally:
        gc.collect()
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_gloo_matches_single_process(glue_root, tmp_path):
    import torch.multiprocessing as mp

    common = [
        "--task",
        "sst2",
        "--data",
        glue_root,
        "--epochs",
        "1",
        "--dropout",
        "0.0",
        "--no-energy",
        "--max-train-samples",
        "48",
        *SMALL,
    ]
    for attempt in range(3):
        try:
            mp.spawn(
                _ddp_worker,
                args=(2, _free_port(), [*common, "--out", str(tmp_path / "d")]),
                nprocs=2,
            )
            break
        except mp.ProcessRaisedException as e:
            network = ("DistNetworkError", "address already in use", "EADDRINUSE", "onnect")
            if attempt == 2 or not any(word in str(e) for word in network):
                raise
    app.run_train(parse(*common, "--out", str(tmp_path / "s")))
    ddp = load_checkpoint(tmp_path / "d" / CHECKPOINT_NAME)
    single = load_checkpoint(tmp_path / "s" / CHECKPOINT_NAME)
    assert ddp["world_size"] == 2 and single["world_size"] == 1 and ddp["global_step"] == 3
    changed = 0
    for k, v in single["model"].items():
        # each rank pads its half-batch to its own longest sample; padding changes nothing,
        # but the reductions run in another order: equal up to rounding
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-5)
        changed += int(not torch.equal(v, ddp["model"][k]))
    d = json.loads((tmp_path / "d" / "metrics.json").read_text())["final"]
    s = json.loads((tmp_path / "s" / "metrics.json").read_text())["final"]
    assert d["train_loss"] == pytest.approx(s["train_loss"], rel=1e-4)
    assert d["eval_loss"] == pytest.approx(s["eval_loss"], rel=1e-4)


def test_neuron_param_groups_split_weights_norms_and_neurons():
    from bpsn_ext.models import SNNBert, SNNBertConfig
    from bpsn_ext.optim import neuron_param_groups

    model = SNNBert(
        SNNBertConfig(vocab_size=30, layers=1, width=16, heads=2, ffn_width=32, max_length=8)
    )
    decay, no_decay, neurons = neuron_param_groups(10.0)(model, 1e-3, 0.01)

    def ids(group):
        return {id(p) for p in group["params"]}

    assert ids(neurons) == {id(p) for p in model.neuron_parameters()} != set()
    assert neurons["lr"] == pytest.approx(1e-2) and neurons["weight_decay"] == 0.0
    assert decay["params"] and all(p.dim() >= 2 for p in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(
        p.dim() < 2 or "norm" in n for n, p in model.named_parameters() if id(p) in ids(no_decay)
    )
    every = [id(p) for g in (decay, no_decay, neurons) for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters())
    with pytest.raises(TypeError, match="neuron_lr_mult must be a Python float"):
        neuron_param_groups(10)
