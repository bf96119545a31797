"""The firing-rate regulariser of SNN-BERT (``--rate-reg``): the recorded rates, its gradient,
weight 0 leaves the loss unchanged, the flag reaches the training loss, errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from bpsn_ext.cli import main
from bpsn_ext.data.glue import write_glue_fixture
from bpsn_ext.models import SNNBert
from bpsn_ext.models.snn_bert_glue import glue_loss
from bpsn_ext.models.spike_rate_loss import RateReg, SpikeRates, masked_rate, rate_penalty


def _model(**kw) -> SNNBert:
    torch.manual_seed(0)
    return SNNBert(
        vocab_size=50, layers=1, width=16, heads=2, ffn_width=32, max_length=8, dropout=0.0, **kw
    )


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, 50, (8, 3), generator=g),
        "lengths": torch.tensor([8, 5, 2]),
        "segment_ids": torch.zeros(8, 3, dtype=torch.long),
        "labels": torch.tensor([0, 1, 1]),
    }


def test_masked_rate_ignores_padding():
    spikes = torch.zeros(4, 2, 3)
    spikes[:2, 0] = 1.0  # sample 0: real steps 0..1 all fire
    spikes[2:, 1] = 1.0  # sample 1: fires only on padded steps
    mask = torch.tensor([[1, 1], [1, 1], [0, 0], [0, 0]], dtype=torch.bool)
    assert float(masked_rate(spikes, mask)) == pytest.approx(0.5)
    assert float(masked_rate(spikes, None)) == pytest.approx(0.5)
    spikes[2:, 0] = 1.0  # padded spikes change nothing
    assert float(masked_rate(spikes, mask)) == pytest.approx(0.5)


def test_records_every_bpsn_and_the_gradient_reaches_weights_and_thresholds():
    model = _model()
    b = _batch()
    with SpikeRates(model) as rates:
        model(b["input_ids"], b["lengths"])
    assert len(rates.rates) == 7  # attn_in, q, k, v, attn out, ffn_in, ffn hidden
    assert all(0.0 < float(r.detach()) < 1.0 for r in rates.rates)
    penalty = rate_penalty(rates.rates, 1.0)
    assert float(penalty) == pytest.approx(float(torch.stack(rates.rates).detach().mean()))
    penalty.backward()
    fc1 = model.blocks[0].fc1.weight.grad
    thr = model.blocks[0].ffn_neuron.v_threshold.grad
    assert fc1 is not None and fc1.abs().sum() > 0
    assert thr is not None and thr.abs().sum() > 0
    # the hooks are gone after the block: nothing more is recorded
    model(b["input_ids"], b["lengths"])
    assert len(rates.rates) == 7


def test_synapse_weighting_counts_the_synapses_each_bpsn_drives():
    model, b = _model(), _batch()
    with SpikeRates(model, "synapse") as rates:
        model(b["input_ids"], b["lengths"])
    # attn_in -> q, k, v (3 x 16 x 16); q, k, v -> attention products (no Linear);
    # attention output -> proj (16 x 16); ffn_in -> fc1 (16 x 32); ffn hidden -> fc2 (32 x 16)
    assert rates.weights == [768.0, 0.0, 0.0, 0.0, 256.0, 512.0, 512.0]
    r = [float(x.detach()) for x in rates.rates]
    want = sum(w * x for w, x in zip(rates.weights, r)) / sum(rates.weights)
    assert float(rates.penalty(1.0).detach()) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="weighting must be one of"):
        SpikeRates(model, "layer")
    with pytest.raises(ValueError, match="not all 0"):
        rate_penalty(rates.rates[1:4], 1.0, weights=[0.0, 0.0, 0.0])


def test_weight_zero_is_the_task_loss_and_the_penalty_adds_to_it():
    model, b = _model(), _batch()
    model.eval()
    _, base = glue_loss(model, b, regression=False)
    _, zero = glue_loss(model, b, regression=False, rate=RateReg(0.0, 0.3))
    assert torch.equal(base, zero)
    with SpikeRates(model) as rates:
        model(b["input_ids"], b["lengths"], b["segment_ids"])
    mean_rate = float(torch.stack(rates.rates).detach().mean())
    _, reg = glue_loss(model, b, regression=False, rate=RateReg(2.0))
    assert float(reg - base) == pytest.approx(2.0 * mean_rate, rel=1e-5)
    _, above = glue_loss(model, b, regression=False, rate=RateReg(2.0, 0.99))
    assert float(above) == pytest.approx(float(base))  # every rate under the target


def test_bad_weights_targets_and_codings_are_refused():
    with pytest.raises(ValueError, match="weight must be a finite float >= 0"):
        RateReg(-1.0)
    with pytest.raises(ValueError, match=r"target firing rate must lie in \[0, 1\)"):
        RateReg(1.0, 1.5)
    with pytest.raises(ValueError, match="needs BPSN neurons"):
        glue_loss(_model(coding="repeat", T=2), _batch(), regression=False, rate=RateReg(1.0))


def _train(root: str, out: str, *extra: str) -> dict:
    argv = ["train", "glue", "--task", "sst2", "--data", root, "--out", out, "--epochs", "1"]
    small = ["--layers", "1", "--width", "16", "--heads", "2", "--ffn-width", "32"]
    small += ["--max-length", "16", "--vocab-size", "60", "--no-progress", "--no-energy"]
    assert main([*argv, *small, *extra]) == 0
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)["history"][-1]


def test_the_flag_reaches_the_training_loss(tmp_path):
    root = str(tmp_path / "glue")
    write_glue_fixture(root, tasks=["sst2"], n=32, n_dev=8, seed=0)
    base = _train(root, str(tmp_path / "a"))
    same = _train(root, str(tmp_path / "b"), "--rate-reg", "0")
    reg = _train(
        root,
        str(tmp_path / "c"),
        *("--rate-reg", "5", "--rate-target", "0.01", "--rate-weighting", "synapse"),
    )
    assert same["train_loss"] == pytest.approx(base["train_loss"], rel=1e-6)
    # the penalty (5 x rates of about 0.2) is in the training loss, not in the eval loss
    assert reg["train_loss"] > base["train_loss"] + 0.2
    assert reg["eval_loss"] < reg["train_loss"]


def _pretrain(text: str, out: str, *extra: str) -> dict:
    small = ["--layers", "1", "--width", "16", "--heads", "2", "--ffn-width", "32"]
    small += ["--max-length", "16", "--vocab-size", "60", "--no-progress", "--eval-samples", "8"]
    argv = ["pretrain", "--text", text, "--out", out, "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, *small, *extra]) == 0
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)["history"][-1]


def test_pretrain_takes_the_flag_and_refuses_it_without_bpsn(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(f"the dax {w} the wug ." for w in ("blicks", "lorps") * 20) + "\n")
    base = _pretrain(str(text), str(tmp_path / "a"))
    flags = ("--rate-reg", "5", "--rate-weighting", "synapse")
    reg = _pretrain(str(text), str(tmp_path / "b"), *flags)
    # same seed, same masking: the penalty is in the training loss only
    assert reg["train_loss"] > base["train_loss"] + 0.2
    assert reg["eval_mlm_loss"] < reg["train_loss"]
    with pytest.raises(ValueError, match="--rate-reg regularises BPSN neurons, which --coding"):
        _pretrain(str(text), str(tmp_path / "c"), "--coding", "repeat", "--rate-reg", "1")
    assert not os.path.exists(tmp_path / "c")  # refused before anything is written


def test_pretraining_defaults_to_the_synapse_weighted_regulariser_under_individual_coding(
    tmp_path, capsys
):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(f"the dax {w} the wug ." for w in ("blicks", "lorps") * 20) + "\n")
    default = _pretrain(str(text), str(tmp_path / "a"))
    assert "adds the firing-rate regulariser, weight 1 (synapse" in capsys.readouterr().err
    explicit = _pretrain(
        str(text), str(tmp_path / "b"), "--rate-reg", "1", "--rate-weighting", "synapse"
    )
    off = _pretrain(str(text), str(tmp_path / "c"), "--rate-reg", "0")
    assert default["train_loss"] == pytest.approx(explicit["train_loss"], rel=1e-6)
    assert default["train_loss"] > off["train_loss"] + 0.05
    with open(tmp_path / "a" / "run_config.json", encoding="utf-8") as f:
        assert json.load(f)["rate_reg"] == 1.0  # the settings record the weight it used
    # the codings without BPSN neurons default to no regulariser (not to a refusal)
    _pretrain(str(text), str(tmp_path / "d"), "--coding", "repeat", "--epochs", "1")
    with open(tmp_path / "d" / "run_config.json", encoding="utf-8") as f:
        assert json.load(f)["rate_reg"] == 0.0
