"""SNNBert: shapes per coding, padding invariance, learning, LIF reference, energy, HF links."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bpsn_ext.models import MultiStepLIF, SNNBert, SNNBertConfig
from bpsn_ext.models.hf_bert import distillation_loss, load_bert_weights

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


def batch(L=10, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (L, B), generator=g)
    seg = (torch.arange(L)[:, None] >= L // 2).long().expand(L, B).clone()
    return ids, seg


@pytest.mark.parametrize("coding", ["individual", "repeat"])
def test_shapes(coding):
    model = tiny(coding=coding, T=3)
    ids, seg = batch()
    x, m = model.encode(ids, torch.tensor([10, 6, 3]), seg)
    expected = [10, 3, 16] if coding == "individual" else [3, 3, 10, 16]
    assert list(x.shape) == expected and m.shape == (10, 3)
    assert model(ids, None, seg).shape == (3, 3)
    assert tiny(num_labels=1)(ids).shape == (3, 1)


@pytest.mark.parametrize(
    "coding, attention, pooling",
    [
        ("individual", "softmax", "mean"),
        ("individual", "spike_driven", "mean"),
        ("individual", "softmax", "cls"),
        ("repeat", "softmax", "mean"),
        ("repeat", "spike_driven", "cls"),
    ],
)
def test_padding_does_not_change_predictions(coding, attention, pooling):
    model = tiny(coding=coding, attention=attention, pooling=pooling, T=2, dropout=0.1)
    ids, seg = batch(L=12, B=3)
    lengths = torch.tensor([12, 7, 4])
    out = model(ids, lengths, seg)
    # other contents at padded positions
    ids2, seg2 = ids.clone(), seg.clone()
    ids2[7:, 1], ids2[4:, 2], seg2[4:, 2] = 0, 33, 1
    torch.testing.assert_close(model(ids2, lengths, seg2), out, rtol=0, atol=0)
    # a bool mask is the same as lengths
    mask = torch.arange(12)[:, None] < lengths[None, :]
    torch.testing.assert_close(model(ids, mask, seg), out)
    # each sample alone, unpadded, and padded to a longer L
    for j, n in enumerate(lengths.tolist()):
        alone = model(ids[:n, j : j + 1], None, seg[:n, j : j + 1])
        torch.testing.assert_close(alone[0], out[j], rtol=1e-5, atol=1e-6)
    longer = torch.cat([ids, torch.full((5, 3), 7)])
    seg_l = torch.cat([seg, torch.ones(5, 3, dtype=torch.long)])
    torch.testing.assert_close(model(longer, lengths, seg_l), out, rtol=1e-5, atol=1e-6)
    # and a padded token really matters when it is declared valid (the test can fail)
    full = torch.tensor([12, 12, 12])
    assert not torch.allclose(model.encode(ids2, full, seg2)[0], model.encode(ids, full, seg)[0])
    if pooling == "mean":
        assert not torch.allclose(model(ids2, full, seg2), out)


@pytest.mark.parametrize("coding", ["individual", "repeat"])
def test_gradients_reach_every_parameter(coding):
    model = tiny(coding=coding, T=2).train()
    ids, seg = batch()
    model(ids, torch.tensor([10, 8, 5]), seg).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert model.blocks[0].fc1.weight.grad.abs().sum() > 0
    if coding == "individual":
        assert len(model.neuron_parameters()) > 0
        assert all(p.grad is not None for p in model.neuron_parameters())


@pytest.mark.parametrize("coding", ["individual", "repeat"])
def test_a_few_steps_reduce_the_loss(coding):
    torch.manual_seed(0)
    model = SNNBert(**{**TINY, "coding": coding, "T": 2})
    ids, seg = batch(L=8, B=12, seed=3)
    labels = torch.arange(12) % 3
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(ids, None, seg), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_checkpoint_round_trip(tmp_path):
    model = tiny(bpsn_options={"fusion": "gate", "runaway": "soft_reset"})
    ids, seg = batch()
    torch.save({"config": model.config.to_dict(), "model": model.state_dict()}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    again = SNNBert(SNNBertConfig.from_dict(saved["config"])).eval()
    again.load_state_dict(saved["model"])
    torch.testing.assert_close(again(ids, None, seg), model(ids, None, seg), rtol=0, atol=0)
    assert again.blocks[0].attn_in.fusion == "gate"


def test_bpsn_options_pass_through():
    model = tiny(bpsn_options={"fusion": "gate", "refractory_steps": 2})
    neurons = [m for m in model.modules() if type(m).__name__ == "BPSN"]
    assert len(neurons) == 2 * 7  # per block: attn_in, q, k, v, attn, ffn_in, ffn
    assert all(n.fusion == "gate" and n.refractory_steps == 2 for n in neurons)
    assert {n.channels for n in neurons} == {16, 32}
    rep = tiny(coding="repeat", lif_options={"tau": 3.0, "reset": "soft"})
    lifs = [m for m in rep.modules() if isinstance(m, MultiStepLIF)]
    assert len(lifs) == 14 and all(m.tau == 3.0 and m.reset == "soft" for m in lifs)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(width=30, heads=4), "divisible"),
        (dict(coding="rate"), "coding must be one of"),
        (dict(attention="linear"), "attention must be one of"),
        (dict(bpsn_options={"fusion": "concat"}), "concat"),
        (dict(layers=0), "layers must be a positive int"),
        (dict(dropout=1), "dropout"),
    ],
)
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        SNNBertConfig(**bad)


def test_input_errors():
    model = tiny()
    with pytest.raises(ValueError, match="integer tensor \\[L, B\\]"):
        model(torch.randn(5, 2))
    with pytest.raises(ValueError, match="exceeds max_length=24"):
        model(torch.zeros(25, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one real token"):
        model(torch.zeros(5, 2, dtype=torch.long), torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="segment_ids"):
        model(torch.zeros(5, 2, dtype=torch.long), None, torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown SNNBertConfig fields"):
        SNNBertConfig.from_dict({"widht": 3})


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_multistep_lif_matches_spikingjelly(reset):
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    x = torch.randn(6, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.8
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    sj = neuron.LIFNode(
        tau=2.0,
        v_reset=0.0 if reset == "hard" else None,
        surrogate_function=surrogate.ATan(alpha=2.0),
        step_mode="m",
    )
    ours = MultiStepLIF(tau=2.0, reset=reset)
    s_ref, s = sj(x1), ours(x2)
    assert torch.equal(s, s_ref) and 0 < s.mean() < 1
    g = torch.randn_like(s)
    (s_ref * g).sum().backward()
    (s * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-6)


def test_lif_mask_zeroes_padded_tokens():
    x = torch.full((3, 2, 4, 5), 5.0)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    s = MultiStepLIF()(x, mask)
    assert s[:, 0, :2].sum() > 0 and s[:, 0, 2:].sum() == 0 and s[:, 1, 1:].sum() == 0


def test_energy_report_individual_vs_repeat():
    from bpsn_ext.energy import estimate

    ids, seg = batch(L=10, B=3)
    lengths = torch.tensor([10, 6, 3])
    ind = tiny()
    rep = tiny(coding="repeat", T=4)
    r_ind = estimate(ind, ids, coding="individual", forward_kwargs={"mask": lengths})
    r_rep = estimate(rep, ids, T=4, coding="repeat", batch_size=3, forward_kwargs={"mask": lengths})
    assert r_ind.notes == [] and r_rep.notes == []  # every leaf has a counter
    assert r_ind.T == 10 and r_ind.passes == 1 and r_rep.passes == 4
    # the neurons count only the 19 real tokens: LIF 1 mul + 3 add per neuron, step and token
    lif = r_rep["blocks.0.ffn_neuron"]
    assert lif.mul == 4 * 19 * 32 and lif.add == 3 * 4 * 19 * 32
    assert r_ind["blocks.0.ffn_neuron"].add > 0
    # the attention products are captured as spike x spike accumulates
    assert r_ind["blocks.0.attn [matmul]"].ac > 0
    # the same synapses: the ANN baselines of the blocks agree (one pass each)
    for name in ("blocks.0.attn.q", "blocks.1.fc1", "blocks.1.fc2"):
        assert r_rep[name].ann_mac == r_ind[name].ann_mac > 0
    # repeat coding runs every synapse T times: its dense ops are 4x those of one pass
    assert r_rep["blocks.1.fc1"].dense == 4 * r_ind["blocks.1.fc1"].dense


# ---------------------------------------------------------------------------- HF links
def _tiny_bert(tmp_path, num_labels=3, vocab=40):
    from bpsn_ext.models.hf_bert import import_transformers

    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")

    with import_transformers() as transformers:
        cfg = transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            num_labels=num_labels,
        )
        torch.manual_seed(1)
        bert = transformers.BertForSequenceClassification(cfg).eval()
        bert.save_pretrained(tmp_path / "bert")
    return bert, tmp_path / "bert"


def test_hf_init_copies_matching_weights(tmp_path):
    bert, path = _tiny_bert(tmp_path)
    model = tiny()
    info = load_bert_weights(model, path)
    sd = bert.state_dict()
    torch.testing.assert_close(
        model.blocks[1].attn.k.weight, sd["bert.encoder.layer.1.attention.self.key.weight"]
    )
    torch.testing.assert_close(
        model.blocks[0].fc1.bias, sd["bert.encoder.layer.0.intermediate.dense.bias"]
    )
    torch.testing.assert_close(
        model.embeddings.positions.weight, sd["bert.embeddings.position_embeddings.weight"][:24]
    )
    torch.testing.assert_close(model.classifier.weight, sd["classifier.weight"])
    assert "embeddings.tokens.weight" in info["copied"]
    assert any(name.startswith("bert.pooler") for name, _ in info["skipped"])
    # another vocabulary: the token table is skipped with the reason, the rest copied
    other = tiny(vocab_size=50)
    info = load_bert_weights(other, path)
    assert any("word_embeddings" in n and "shape" in why for n, why in info["skipped"])
    with pytest.raises(ValueError, match="shape"):
        load_bert_weights(tiny(vocab_size=50), path, strict_shapes=True)
    with pytest.raises(FileNotFoundError, match="no BERT weights"):
        load_bert_weights(model, tmp_path / "missing")
    # older checkpoints name the LayerNorm parameters gamma / beta
    old = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in sd.items()
    }
    assert "bert.encoder.layer.1.output.LayerNorm.gamma" in old
    torch.save(old, tmp_path / "old.bin")
    legacy = tiny()
    info = load_bert_weights(legacy, tmp_path / "old.bin")
    assert "blocks.1.fc2_norm.weight" in info["copied"]
    assert "embeddings.norm.bias" in info["copied"]
    torch.testing.assert_close(
        legacy.blocks[1].fc2_norm.weight, sd["bert.encoder.layer.1.output.LayerNorm.weight"]
    )


def test_distillation_from_local_teacher(tmp_path):
    from bpsn_ext.models.hf_bert import load_teacher, teacher_logits

    _, path = _tiny_bert(tmp_path)
    teacher = load_teacher(path)
    ids, seg = batch(L=8, B=4)
    mask = torch.arange(8)[:, None] < torch.tensor([8, 5, 3, 8])[None, :]
    t = teacher_logits(teacher, ids, mask, seg)
    assert t.shape == (4, 3)
    model = tiny().train()
    s = model(ids, mask, seg)
    task = torch.nn.functional.cross_entropy(s, torch.tensor([0, 1, 2, 0]))
    assert distillation_loss(s, t, task, alpha=0.0) == task
    assert distillation_loss(t, t, task, alpha=1.0).abs() < 1e-6
    loss = distillation_loss(s, t, task, alpha=0.5)
    loss.backward()
    assert loss > 0.5 * task and model.classifier.weight.grad is not None
    reg = distillation_loss(torch.zeros(3, 1), torch.ones(3, 1), torch.tensor(0.0), alpha=1.0)
    assert reg == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ"):
        distillation_loss(s, t[:, :2], task)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_teacher(tmp_path / "nothing")


def test_codings_are_decided_once_and_their_layouts_invert():
    from bpsn_ext.core.coding import INDIVIDUAL, REPEAT, get_coding
    from bpsn_ext.models.snn_bert_coding import snn_bert_coding

    x = torch.randn(5, 2, 8)  # [L, B, D]
    for layout in (INDIVIDUAL, REPEAT):
        seen = layout.present(x, T=3)
        assert torch.equal(layout.merge_heads(layout.split_heads(seen, 4)), seen)
        assert torch.allclose(layout.to_tokens(seen), x)
    assert REPEAT.present(x, T=3).shape == (3, 2, 5, 8) and REPEAT.passes(3) == 3
    mask = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 0], [0, 0]], dtype=torch.bool)  # [L, B]
    assert REPEAT.key_mask(REPEAT.neuron_mask(mask)).shape == (1, 2, 1, 1, 5)
    assert INDIVIDUAL.key_mask(INDIVIDUAL.neuron_mask(mask)).shape == (2, 1, 1, 5)
    assert get_coding("individual") is INDIVIDUAL and INDIVIDUAL.passes(3) == 1
    assert snn_bert_coding("ann").layout is INDIVIDUAL
    model = SNNBert(vocab_size=30, layers=1, width=8, heads=2, ffn_width=16, coding="repeat")
    assert model.coding is snn_bert_coding("repeat")
    with pytest.raises(ValueError, match="coding must be one of"):
        get_coding("rate")
