"""The ANN twin (``SNNBert(coding="ann")``): no neurons, same synapses, learns, MAC-only
energy, in ``train glue`` and ``bench snn-bert``."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch

from bpsn_ext.bpsn_module import BPSN
from bpsn_ext.models import MultiStepLIF, SNNBert
from bpsn_ext.models.snn_bert_coding import RealActivation

TINY = dict(
    vocab_size=40,
    num_labels=3,
    layers=2,
    width=16,
    heads=2,
    ffn_width=32,
    max_length=24,
    dropout=0.0,
)


def tiny(**kw) -> SNNBert:
    torch.manual_seed(0)
    return SNNBert(**{**TINY, **kw}).eval()


def test_twin_has_no_neurons_and_the_same_synapses():
    ann, snn = tiny(coding="ann"), tiny()
    assert not any(isinstance(m, (BPSN, MultiStepLIF)) for m in ann.modules())
    acts = [m for m in ann.modules() if isinstance(m, RealActivation)]
    assert len(acts) == 2 * 7 and {a.activation for a in acts} == {"relu"}
    assert ann.neuron_parameters() == []
    ann_keys, snn_keys = set(ann.state_dict()), set(snn.state_dict())
    assert ann_keys < snn_keys  # the spiking model only adds the neurons' parameters
    neuron_names = {
        n for n, p in snn.named_parameters() if any(p is q for q in snn.neuron_parameters())
    }
    assert snn_keys - ann_keys == neuron_names
    assert tiny(coding="ann", ann_activation="gelu").blocks[0].ffn_neuron.activation == "gelu"
    with pytest.raises(ValueError, match="ann_activation must be one of"):
        tiny(coding="ann", ann_activation="tanh")


def test_twin_output_is_real_valued_and_padding_invariant():
    model = tiny(coding="ann")
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 40, (10, 3), generator=g)
    lengths = torch.tensor([10, 6, 3])
    out = model(ids, lengths)
    padded = torch.cat([ids, torch.randint(5, 40, (4, 3), generator=g)])
    junk = ids.clone()
    junk[6:, 1], junk[3:, 2] = 7, 9
    torch.testing.assert_close(model(padded, lengths), out)
    torch.testing.assert_close(model(junk, lengths), out)
    h = model.blocks[0].ffn_neuron(torch.randn(10, 3, 32), torch.ones(10, 3, dtype=torch.bool))
    assert (h >= 0).all() and h.unique().numel() > 2  # ReLU: real values, not spikes


def test_twin_learns():
    torch.manual_seed(0)
    model = SNNBert(**{**TINY, "coding": "ann"})
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 40, (8, 16), generator=g)
    labels = ids[0] % 3
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_twin_energy_is_all_mac():
    from bpsn_ext.energy import estimate

    ids = torch.randint(5, 40, (10, 3), generator=torch.Generator().manual_seed(1))
    report = estimate(tiny(coding="ann"), ids, coding="individual")
    per = report.per_sample()
    assert per["ac"] == 0 and per["mac"] > 0
    assert per["synaptic_energy_pJ"] == pytest.approx(per["ann_energy_pJ"])
    snn = estimate(tiny(), ids, coding="individual").per_sample()
    assert snn["ann_energy_pJ"] == pytest.approx(per["ann_energy_pJ"], rel=0.02)


def test_train_glue_and_bench_take_the_twin(tmp_path):
    from bpsn_ext.bench.snn_bert_bench import format_report, run
    from bpsn_ext.cli import main
    from bpsn_ext.data.glue import write_glue_fixture

    write_glue_fixture(tmp_path / "glue", tasks=["sst2"], n=32, n_dev=8, seed=0)
    out = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(tmp_path / "glue"),
                "--out",
                out,
                "--coding",
                "ann",
                "--ann-activation",
                "gelu",
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
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--vocab-size",
                "60",
                "--no-progress",
            ]
        )
        == 0
    )
    with open(os.path.join(out, "model.json")) as f:
        cfg = json.load(f)["config"]
    assert cfg["coding"] == "ann" and cfg["ann_activation"] == "gelu"
    with open(os.path.join(out, "energy.json")) as f:
        assert json.load(f)["config"]["coding"] == "individual"  # the token-step layout
    report = run(quick=True, json_path=None, verbose=False, memory=False, T=2)
    ann, ind = report["results"]["ann"], report["results"]["individual"]
    assert ann["energy"]["ac"] == 0 and ann["parameters"] < ind["parameters"]
    assert report["ratios"]["ann_energy_vs_individual"] == pytest.approx(
        ann["energy"]["synaptic_energy_pJ"] / ind["energy"]["synaptic_energy_pJ"]
    )
    assert "ANN twin / individual" in format_report(report)


def test_norm_options_add_layernorms_and_keep_padding_invariance():
    base = tiny()
    normed = tiny(input_norm=True, attn_out_norm=True)
    extra = set(normed.state_dict()) - set(base.state_dict())
    assert {k.rsplit(".", 1)[0] for k in extra} == {
        f"blocks.{i}.{n}"
        for i in range(2)
        for n in ("attn_in_norm", "ffn_in_norm", "attn.out_norm")
    }
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(5, 40, (9, 2), generator=g)
    lengths = torch.tensor([9, 4])
    for coding in ("individual", "ann", "repeat"):
        model = tiny(coding=coding, T=2, input_norm=True, attn_out_norm=True)
        padded = torch.cat([ids, torch.randint(5, 40, (3, 2), generator=g)])
        torch.testing.assert_close(model(padded, lengths), model(ids, lengths))


def test_named_neuron_options_and_surrogate_width():
    from bpsn_ext.apps.snn_bert_flags import neuron_option
    from bpsn_ext.surrogate import resolve

    assert neuron_option("runaway=none") == ("runaway", "none")
    assert neuron_option("v_threshold=none") == ("v_threshold", None)
    assert neuron_option("refractory_steps=2") == ("refractory_steps", 2)
    assert tiny(bpsn_options={"runaway": "none"}).blocks[0].attn_in.runaway == "none"
    assert resolve("atan:4").alpha == 4.0 and resolve("atan").alpha == 2.0
    assert resolve("sigmoid:8").alpha == 8.0
    with pytest.raises(ValueError, match="alpha"):
        resolve("atan:wide")
    neuron = tiny(bpsn_options={"surrogate": "atan:0.5"}).blocks[0].ffn_neuron
    assert neuron.surrogate_function.alpha == 0.5


def test_snn_bert_bpsn_defaults_and_old_configs():
    from bpsn_ext.models import SNNBertConfig
    from bpsn_ext.models.snn_bert import BPSN_DEFAULTS

    assert BPSN_DEFAULTS == {"runaway": "none"}
    assert tiny().blocks[0].ffn_neuron.runaway == "none"
    # a saved config with explicit options (an older run's {}) keeps exactly those
    old = SNNBert(SNNBertConfig.from_dict({**TINY, "bpsn_options": {}}))
    assert old.blocks[0].ffn_neuron.runaway == "refractory"
    assert SNNBertConfig().bpsn_options is not SNNBertConfig().bpsn_options  # no shared dict


def test_bpsn_options_on_the_command_line_are_typed_and_checked_by_the_options_record():
    from bpsn_ext.apps.snn_bert_flags import bpsn_option
    from bpsn_ext.cli import build_parser

    assert bpsn_option("runaway=none") == ("runaway", "none")
    assert bpsn_option("channels=none") == ("channels", None)
    assert bpsn_option("learn_gate=false") == ("learn_gate", False)
    assert bpsn_option("surrogate=atan:1") == ("surrogate", "atan:1")
    for bad, says in (
        ("tau=3", "unknown BPSN option 'tau'"),
        ("refractory_steps=1.5", "refractory_steps takes an integer"),
        ("learn_gate=maybe", "learn_gate takes true or false"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            bpsn_option(bad)
    argv = ["train", "glue", "--task", "sst2", "--data", "g", "--out", "o"]
    args = build_parser().parse_args([*argv, "--bpsn-option", "runaway=sideways"])
    from bpsn_ext.apps.snn_bert_flags import model_config

    with pytest.raises(ValueError, match="runaway must be one of"):
        model_config(args, vocab_size=50, num_labels=2)
