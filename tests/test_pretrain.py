"""``bpsn-ext pretrain`` (masked LM) and the links to ``train glue``: the MLM loss falls, an
interrupted run resumes exactly, ``--init-from RUN`` copies the encoder, ``--teacher RUN``
distils from a run of this project.  All on text written here."""

from __future__ import annotations

import json
import random

import pytest
import torch

from bpsn_ext.apps import pretrain as app
from bpsn_ext.cli import build_parser, main
from bpsn_ext.data.glue import write_glue_fixture
from bpsn_ext.models import SNNBert, SNNBertConfig
from bpsn_ext.models.snn_bert_glue import make_task_fns
from bpsn_ext.models.snn_bert_mlm import SNNBertForMaskedLM, encoder_state, mask_tokens
from bpsn_ext.train import CHECKPOINT_NAME, load_checkpoint
from bpsn_ext.train.snn_bert_runs import load_teacher, load_trained

TINY = [
    "--layers",
    "1",
    "--width",
    "32",
    "--heads",
    "2",
    "--ffn-width",
    "64",
    "--max-length",
    "16",
    "--no-progress",
]


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Lines of a tiny grammar: 'the CAT sees the DOG' style, so masked words are guessable."""
    rng = random.Random(0)
    nouns, verbs = ["dax", "wug", "fep", "toma"], ["blicks", "lorps", "zavs"]
    lines = [
        f"the {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)} ." for _ in range(200)
    ]
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("\n".join(lines[:100]) + "\n\n" + "\n".join(lines[100:]) + "\n")
    return str(path)


def parse(*argv):
    return build_parser().parse_args(["pretrain", *argv])


def test_mask_tokens_follows_bert():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 50, (40, 64), generator=g)
    ids[0], ids[-1] = 2, 3  # [CLS], [SEP]
    real = torch.ones_like(ids, dtype=torch.bool)
    real[30:, :8] = False
    out, pos = mask_tokens(
        ids, real, mask_id=4, vocab_size=50, special_ids=(0, 2, 3), mask_prob=0.15, generator=g
    )
    assert not pos[0].any() and not pos[-1].any() and not pos[30:, :8].any()
    assert 0.12 < pos.float().sum() / (38 * 64) < 0.18
    assert torch.equal(out[~pos], ids[~pos])
    chosen = out[pos]
    share_mask = (chosen == 4).float().mean()
    assert 0.7 < share_mask < 0.9 and (chosen == ids[pos]).float().mean() > 0.05
    # one chosen token at least, even where the probability draws none
    one = torch.tensor([[2], [11], [3]])
    _, p = mask_tokens(
        one,
        torch.ones_like(one, dtype=torch.bool),
        mask_id=4,
        vocab_size=50,
        special_ids=(2, 3),
        mask_prob=1e-9,
    )
    assert p.tolist() == [[False], [True], [False]]


def test_a_few_steps_reduce_the_mlm_loss(corpus, tmp_path, capsys):
    out = tmp_path / "mlm"
    assert (
        main(
            [
                "pretrain",
                "--text",
                corpus,
                "--out",
                str(out),
                *TINY,
                "--epochs",
                "4",
                "--lr",
                "3e-3",
                "--batch-size",
                "16",
                "--eval-samples",
                "40",
                "--dropout",
                "0.0",
                "--mask-prob",
                "0.3",
            ]
        )
        == 0
    )
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert hist[-1]["eval_mlm_loss"] < hist[0]["eval_mlm_loss"] - 0.3
    saved = json.loads((out / "model.json").read_text())
    assert saved["kind"] == "mlm" and saved["config"]["coding"] == "individual"
    assert "masked_accuracy" in capsys.readouterr().out


def test_killed_and_resumed_equals_uninterrupted(corpus, tmp_path):
    common = [
        "--text",
        corpus,
        *TINY,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--checkpoint-every",
        "2",
        "--eval-samples",
        "40",
        "--coding",
        "ann",
    ]
    assert app.run_pretrain(parse(*common, "--out", str(tmp_path / "ref"))) == 0

    def kill(trainer):
        if trainer.state.global_step == 7:  # epoch 2 (5 batches each), last checkpoint: 6
            raise Killed

    with pytest.raises(Killed):
        app.run_pretrain(parse(*common, "--out", str(tmp_path / "run")), callbacks=[kill])
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["global_step"] == 6
    assert app.run_pretrain(parse(*common, "--out", str(tmp_path / "run"), "--resume")) == 0
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["history"] == ref["history"]
    a = load_checkpoint(tmp_path / "ref" / CHECKPOINT_NAME)["model"]
    b = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="run without --resume first"):
        app.run_pretrain(parse(*common, "--out", str(tmp_path / "new"), "--resume"))


def test_init_from_copies_the_encoder(corpus, tmp_path, capsys):
    mlm = tmp_path / "mlm"
    assert (
        app.run_pretrain(
            parse(
                "--text",
                corpus,
                "--out",
                str(mlm),
                *TINY,
                "--epochs",
                "1",
                "--eval-samples",
                "40",
                "--lr",
                "1e-2",
            )
        )
        == 0
    )
    root = tmp_path / "glue"
    write_glue_fixture(root, tasks=["sst2"], n=32, n_dev=8, seed=0)
    out = tmp_path / "ft"
    # lr 1e-12: one AdamW step moves nothing visible, so the copy itself is compared
    assert (
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(root),
                "--out",
                str(out),
                "--init-from",
                str(mlm),
                "--layers",
                "3",
                "--width",
                "64",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--lr",
                "1e-12",
                "--warmup-ratio",
                "0",
                "--weight-decay",
                "0",
                "--no-progress",
                "--no-energy",
            ]
        )
        == 0
    )
    assert "initialised the encoder" in capsys.readouterr().err
    cfg = json.loads((out / "model.json").read_text())["config"]
    assert (cfg["layers"], cfg["width"], cfg["num_labels"]) == (1, 32, 2)  # the run's sizes
    assert (out / "tokenizer.json").read_text() == (mlm / "tokenizer.json").read_text()
    src = encoder_state(load_checkpoint(mlm / CHECKPOINT_NAME)["model"])
    dst = load_checkpoint(out / CHECKPOINT_NAME)["model"]
    assert set(src) == set(encoder_state(dst))
    for k, v in src.items():
        torch.testing.assert_close(dst[k], v, atol=1e-6, rtol=0)
    assert not torch.equal(
        dst["blocks.0.fc1.weight"],
        SNNBert(SNNBertConfig(**{**cfg, "bpsn_options": {}})).state_dict()["blocks.0.fc1.weight"],
    )
    with pytest.raises(ValueError, match="drop --vocab"):
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(root),
                "--out",
                str(tmp_path / "x"),
                "--init-from",
                str(mlm),
                "--vocab",
                str(tmp_path),
            ]
        )
    with pytest.raises(ValueError, match="not a `train glue` run"):
        load_trained(str(mlm))


def test_mlm_model_shapes_for_every_coding():
    ids = torch.randint(5, 30, (7, 2))
    for coding in ("individual", "repeat", "ann"):
        model = SNNBertForMaskedLM(
            SNNBertConfig(
                vocab_size=30, layers=1, width=16, heads=2, ffn_width=32, coding=coding, T=2
            )
        )
        assert model(ids).shape == (7, 2, 30)
        pos = torch.zeros(7, 2, dtype=torch.bool)
        pos[1, 0] = pos[3, 1] = True
        assert model(ids, positions=pos).shape == (2, 30)
        assert model.decoder_bias.shape == (30,)


def test_teacher_from_a_run_folder(tmp_path):
    root = tmp_path / "glue"
    write_glue_fixture(root, tasks=["sst2", "mrpc"], n=32, n_dev=8, seed=0)
    small = [
        "--layers",
        "1",
        "--width",
        "16",
        "--heads",
        "2",
        "--ffn-width",
        "32",
        "--max-length",
        "24",
        "--batch-size",
        "16",
        "--vocab-size",
        "60",
        "--epochs",
        "1",
        "--no-progress",
        "--no-energy",
    ]
    teacher = tmp_path / "ann"
    assert (
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(root),
                "--out",
                str(teacher),
                "--coding",
                "ann",
                *small,
            ]
        )
        == 0
    )
    student = tmp_path / "kd"
    assert (
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(root),
                "--out",
                str(student),
                "--teacher",
                str(teacher),
                "--distill-alpha",
                "0.7",
                *small,
            ]
        )
        == 0
    )
    # no --vocab: the student took the teacher's tokenizer
    assert (student / "tokenizer.json").read_text() == (teacher / "tokenizer.json").read_text()
    # the distillation term is really there: a student equal to its teacher has KD = 0
    model, tok, _ = load_trained(str(teacher))
    loaded = load_teacher(str(teacher), "sst2", tok)
    from bpsn_ext.data.glue import GlueCollator, GlueDataset, load_glue

    ds = GlueDataset(load_glue(root, "sst2", "dev"), tok, 24)
    batch = GlueCollator(tok.pad_id)([ds[i] for i in range(8)])
    plain = make_task_fns("sst2")[0](model, batch)
    kd = make_task_fns("sst2", loaded, alpha=0.5)[0](model, batch)
    torch.testing.assert_close(kd, 0.5 * plain)
    other = make_task_fns("sst2", loaded, alpha=0.5)[0](load_trained(str(student))[0], batch)
    assert not torch.allclose(
        other,
        0.5 * make_task_fns("sst2")[0](load_trained(str(student))[0], batch),
    )
    with pytest.raises(ValueError, match="trained on sst2, not mrpc"):
        load_teacher(str(teacher), "mrpc", tok)
    with pytest.raises(ValueError, match="another vocabulary"):
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(root),
                "--out",
                str(tmp_path / "bad"),
                "--teacher",
                str(teacher),
                *small[:-4],
                "--vocab-size",
                "40",
                "--epochs",
                "1",
                "--no-progress",
                "--no-energy",
                "--vocab",
                _vocab_file(tmp_path),
            ]
        )


def _vocab_file(tmp_path) -> str:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dax", "wug"]))
    return str(path)


def test_hf_dataset_on_disk(corpus, tmp_path):
    datasets = pytest.importorskip("datasets")
    lines = open(corpus).read().split("\n")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"content": lines})}).save_to_disk(
        str(tmp_path / "hf")
    )
    common = ["--hf", str(tmp_path / "hf"), *TINY, "--epochs", "1", "--eval-samples", "20"]
    with pytest.raises(ValueError, match="--hf-column 'text' is not a column"):
        app.run_pretrain(parse(*common, "--out", str(tmp_path / "a")))
    assert (
        app.run_pretrain(parse(*common, "--hf-column", "content", "--out", str(tmp_path / "b")))
        == 0
    )
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["steps"] == 6  # 180 / 32
    with pytest.raises(ValueError, match="not 'validation'"):
        app.run_pretrain(parse(*common, "--hf-split", "validation", "--out", str(tmp_path / "c")))


def test_initial_mlm_loss_is_near_log_vocabulary():
    torch.manual_seed(0)
    model = SNNBertForMaskedLM(
        SNNBertConfig(vocab_size=500, layers=1, width=64, heads=2, ffn_width=64, dropout=0.0)
    )
    ids = torch.randint(5, 500, (12, 8))
    loss = torch.nn.functional.cross_entropy(model(ids).reshape(-1, 500), ids.reshape(-1))
    assert abs(loss.item() - torch.log(torch.tensor(500.0)).item()) < 0.5
    assert model.bert.embeddings.tokens.weight.std() < 0.03
