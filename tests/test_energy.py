"""Energy estimator: hand-counted networks, spike/ternary detection, codings, protocol."""

import pytest
import torch
from torch import nn

import bpsn_ext
from bpsn_ext.energy import (
    EnergyModel,
    Ops,
    classify,
    estimate,
    register_counter,
    synaptic,
    unregister_counter,
)

E = EnergyModel()  # fp32 45 nm: MAC 4.6, AC 0.9, mul 3.7, add 0.9, nonlin 4.6 pJ


def _row(report, name):
    return report[name]


# -- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, kind",
    [
        ([0.0, 1.0, 1.0, 0.0], "spike"),
        ([0.0, 0.25, 0.25], "spike"),  # up to a scale
        ([0.0, 0.0], "spike"),  # all zero: a silent spike tensor
        ([-2.0, 0.0, 2.0], "ternary"),
        ([-1.0, 0.0, 0.0], "ternary"),
        ([0.0, 1.0, 2.0], "real"),
        ([0.5, -0.25], "real"),
        ([float("nan"), 1.0], "real"),
    ],
)
def test_classify(values, kind):
    assert classify(torch.tensor(values)) == kind


def test_classify_bool_is_spike():
    assert classify(torch.tensor([True, False])) == "spike"


# -- Linear -> LIF -> Linear with known spikes -------------------------------------------------
def _linear_lif_linear():
    from spikingjelly.activation_based import layer, neuron

    fc1 = layer.Linear(3, 4, step_mode="m")
    fc2 = layer.Linear(4, 3, step_mode="m")
    with torch.no_grad():
        # real weights (not all in {0, s}, which would count as binary weights)
        fc1.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0.1]]))
        fc1.bias.zero_()
        fc2.weight.normal_()
    lif = neuron.LIFNode(tau=2.0, v_threshold=1.0, step_mode="m")
    return nn.Sequential(fc1, lif, fc2)


def test_linear_lif_linear_hand_count():
    pytest.importorskip("spikingjelly")
    net = _linear_lif_linear()
    # LIF (tau 2, v_reset 0): current 4 -> v = 2 -> spike at both steps; 0.5 or 0.4 never fire
    x = torch.tensor([[4.0, 0.5, 0.0], [0.0, 4.0, 4.0]])  # N = 2
    r = estimate(net, x, T=2, step_mode="m")  # repeat coding: [2, 2, 3]
    T, N = 2, 2
    fc1, lif, fc2 = r["0"], r["1"], r["2"]
    assert (fc1.input_kind, fc1.mac, fc1.ac, fc1.add) == ("real", T * N * 3 * 4, 0, T * N * 4)
    spikes = 2 + 4  # sample 0: neuron 0 twice; sample 1: neurons 1 and 2 twice
    assert lif.output_rate == spikes / (T * N * 4)
    assert (lif.mul, lif.add, lif.mac, lif.ac, lif.dense) == (T * N * 4, 3 * T * N * 4, 0, 0, 0)
    assert (fc2.input_kind, fc2.input_rate) == ("spike", spikes / (T * N * 4))
    assert (fc2.mac, fc2.ac, fc2.add) == (0, spikes * 3, T * N * 3)

    t = r.totals()
    assert (t["mac"], t["ac"], t["mul"], t["add"]) == (48, 18, 16, 16 + 48 + 12)
    assert t["ann_mac"] == (48 + T * N * 4 * 3) / T  # every op a MAC, one pass
    assert t["synaptic_energy_pJ"] == pytest.approx(48 * 4.6 + 18 * 0.9)
    assert t["energy_pJ"] == pytest.approx(48 * 4.6 + 18 * 0.9 + 16 * 3.7 + 76 * 0.9)
    assert t["ann_energy_pJ"] == pytest.approx(48 * 4.6)
    assert t["ratio"] == pytest.approx(48 * 4.6 / (48 * 4.6 + 18 * 0.9))
    assert r.per_sample()["mac"] == 48 / N
    assert (r.T, r.passes, r.batch_size) == (2, 2, 2)


def test_same_network_in_snntorch_counts_the_same():
    snn = pytest.importorskip("snntorch")
    fc1, fc2 = nn.Linear(3, 4), nn.Linear(4, 3)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0.1]]))
        fc1.bias.zero_()
    # Leaky(beta 0.5, threshold 1): current 4 -> mem 4, then 5 -> spikes at both steps
    net = nn.Sequential(fc1, snn.Leaky(beta=0.5, init_hidden=True), fc2)
    x = torch.tensor([[4.0, 0.5, 0.0], [0.0, 4.0, 4.0]])
    r = estimate(net, x, T=2, step_mode="s")  # two calls, state carried between them
    assert r["1"].calls == 2 and r["1"].output_rate == 6 / 16
    assert (r["1"].mul, r["1"].add) == (16, 48)
    t = r.totals()
    assert (t["mac"], t["ac"], t["mul"], t["add"]) == (48, 18, 16, 76)


# -- convolutions ------------------------------------------------------------------------------
def test_conv_net_hand_count():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),  # real input
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    x = torch.randn(1, 1, 4, 4)
    r = estimate(net, x)
    conv = r["0"]
    assert (conv.mac, conv.ac, conv.add) == (2 * 4 * 4 * 9, 0, 2 * 4 * 4)
    assert (r["1"].mul, r["1"].add) == (32, 32)  # eval BN folded: scale + shift
    assert r["2"].nonlin == 32
    assert r["3"].add == 2 * 2 * 2 * 3  # 3 compares per 2x2 window


def test_conv1d_groups_and_spike_input():
    conv = nn.Conv1d(4, 6, 3, groups=2)
    x = torch.randn(2, 4, 10)
    r = estimate(conv, x)
    out = 2 * 6 * 8
    assert (r["<model>"].mac, r["<model>"].add) == (out * 2 * 3, out)
    spikes = torch.zeros(2, 4, 10)
    spikes[0, 1, 3] = spikes[1, 2, :5] = 1.0  # 6 of 80 inputs
    r = estimate(conv, spikes)
    assert r["<model>"].mac == 0 and r["<model>"].ac == pytest.approx(6 / 80 * out * 2 * 3)


def test_conv_exact_counts_borders():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 1.0  # a corner spike reaches 4 of the 9 outputs
    assert estimate(conv, x).totals()["ac"] == pytest.approx(9 * 9 / 9)  # rate x dense
    assert estimate(conv, x, conv_ac="exact").totals()["ac"] == 4


# -- ternary ------------------------------------------------------------------------------------
def test_ternary_input_layer():
    fc = nn.Linear(4, 3, bias=False)
    x = 0.5 * torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    r = estimate(fc, x)
    row = r["<model>"]
    assert row.input_kind == "ternary" and row.input_rate == 3 / 8
    assert (row.mac, row.ac, row.dense) == (0, 3 / 8 * 24, 24)
    forced = estimate(fc, x, input_kind="real")["<model>"]  # override the detection
    assert (forced.mac, forced.ac, forced.input_kind) == (24, 0, "real")
    assert estimate(fc, x, input_kind={"<model>": "real"})["<model>"].mac == 24


def test_ternary_weights_with_real_input():
    fc = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0, -1, 0], [0, 0, 1, 1]]))  # 4 of 8 nonzero
    r = estimate(fc, torch.randn(3, 4))
    assert r["<model>"].ac == 0.5 * 3 * 8 and r["<model>"].mac == 0


# -- silence, codings ---------------------------------------------------------------------------
def test_all_zero_spike_input_costs_zero_ac():
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 2))  # silence stays silent
    r = estimate(net, torch.zeros(3, 5))
    t = r.totals()
    assert t["ac"] == 0 and t["mac"] == 0 and r["0"].input_kind == "spike"
    assert t["synaptic_energy_pJ"] == 0 and t["ratio"] is None
    assert r["0"].dense == 3 * 5 * 4  # the ANN still pays


def _token_net():
    torch.manual_seed(0)
    # channel_dim=-1: under repeat coding the neuron sees [T, N, L, D] (tokens)
    return nn.Sequential(nn.Linear(6, 8), bpsn_ext.BPSN(8, channel_dim=-1), nn.Linear(8, 3))


def test_repeat_counts_T_passes_individual_one():
    net = _token_net()
    L, N, T = 5, 2, 3
    tokens = torch.randn(L, N, 6)
    ind = estimate(net, tokens, coding="individual")  # token t at step t: [L, N, D]
    rep = estimate(net, tokens.transpose(0, 1), T=T, step_mode="m")  # [T, N, L, D]
    assert (ind.T, ind.passes, rep.T, rep.passes) == (L, 1, T, T)
    assert ind["0"].mac == L * N * 6 * 8
    assert rep["0"].mac == T * ind["0"].mac
    assert rep["1"].mul == T * ind["1"].mul  # neuron updates: T passes
    # the ANN sees every token once in both cases
    assert rep.totals()["ann_mac"] == ind.totals()["ann_mac"] == L * N * (6 * 8 + 8 * 3)


def test_single_step_mode_calls_per_step():
    fc = nn.Linear(4, 2)
    x = torch.randn(3, 4)
    rep = estimate(fc, x, T=4, step_mode="s")
    assert rep["<model>"].calls == 4 and rep["<model>"].mac == 4 * 3 * 8
    seq = torch.randn(5, 3, 4)
    ind = estimate(fc, seq, coding="individual", step_mode="s")
    assert ind["<model>"].calls == 5 and ind["<model>"].mac == 5 * 3 * 8
    assert ind.batch_size == 3 and ind.totals()["ann_mac"] == 5 * 3 * 8


def test_encode_once_counts_the_static_encoding_layer_once():
    net = nn.Sequential(nn.Linear(4, 3), bpsn_ext.BPSN(3), nn.Linear(3, 2))
    x = torch.randn(2, 4) * 3
    full = estimate(net, x, T=4, step_mode="m")
    once = estimate(net, x, T=4, step_mode="m", encode_once=True)
    assert once["0"].mac == full["0"].mac / 4 == 2 * 4 * 3
    assert once["1"].mul == full["1"].mul  # neurons still update at every step
    assert once.totals()["ann_mac"] == full.totals()["ann_mac"] == 2 * (4 * 3 + 3 * 2)
    fc = nn.Linear(4, 3)
    assert estimate(fc, x, T=3, step_mode="s", encode_once=True)["<model>"].mac == 2 * 4 * 3


# -- attention matmuls --------------------------------------------------------------------------
class SpikeAttention(nn.Module):
    def forward(self, q, k, v):
        a = q @ k.transpose(-1, -2)  # spike x spike
        return torch.matmul(a, v)  # spike x real


def test_attention_matmuls_attributed_to_the_module():
    net = nn.Sequential()
    net.add_module("attn", SpikeAttention())
    q = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    k = torch.tensor([[1.0, 0, 0], [0, 1, 0]])  # q k^T = identity: 2 coincidences
    v = torch.randn(2, 5)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = SpikeAttention()

        def forward(self, v):
            return self.attn(q, k, v)

    r = estimate(Wrap(), v)
    row = r["attn [matmul]"]
    assert row.type == "SpikeAttention" and row.calls == 2
    # q@k^T: 2 coincidences (dense 12); identity(rate 0.5) @ v: 0.5 * 20
    assert (row.mac, row.ac, row.dense) == (0, 2 + 10, 12 + 20)


def test_real_matmul_and_bmm_are_macs():
    class M(nn.Module):
        def forward(self, a, b):
            return torch.bmm(a, b) + torch.addmm(torch.zeros(2, 2), a[0], b[0])

    a, b = torch.randn(3, 2, 4), torch.randn(3, 4, 2)
    r = estimate(M(), a, b)
    assert r["<model> [bmm]"].mac == 3 * 2 * 2 * 4
    assert r["<model> [addmm]"].mac == 2 * 2 * 4 and r["<model> [addmm]"].add == 4


def test_multihead_attention():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 5, 8)  # N = 3, L = S = 5, E = 8
    r = estimate(mha, x, x, x)
    assert [row.key for row in r.layers] == ["<model>"]
    row = r["<model>"]
    tokens = 15
    assert row.mac == 4 * tokens * 8 * 8 + 2 * 3 * 5 * 5 * 8
    assert row.nonlin == 3 * 2 * 5 * 5 and row.add == 3 * 2 * 25 + 4 * tokens * 8


def test_matmuls_inside_counted_layers_are_not_counted_twice():
    neuron = bpsn_ext.BPSN(4, method="matmul")  # Toeplitz matmul: a training artefact
    r = estimate(neuron, torch.randn(6, 2, 4))
    assert [x.key for x in r.layers] == ["<model>"]
    assert r.totals()["mac"] == 0


# -- BPSN and single-step neurons ---------------------------------------------------------------
def test_bpsn_recurrent_form_cost_and_mask():
    x = torch.randn(5, 2, 4)
    r = estimate(bpsn_ext.BPSN(4, fusion="gate"), x, coding="individual")
    # 2 leaky branches (1 mul + 1 add each), gate (2 mul + 1 add), compare, refractory gate
    assert (r["<model>"].mul, r["<model>"].add) == (4 * 40, 5 * 40)
    masked = estimate(
        bpsn_ext.BPSN(4, fusion="gate"),
        x,
        coding="individual",
        forward_kwargs={"mask": torch.tensor([3, 5])},
    )
    assert masked["<model>"].mul == 4 * (3 + 5) * 4  # only real steps
    split = estimate(bpsn_ext.BPSN(4), x, coding="individual")  # default: one branch each
    assert (split["<model>"].mul, split["<model>"].add) == (1 * 40, 3 * 40)
    concat = estimate(bpsn_ext.BPSN(4, fusion="concat", runaway="none"), x, coding="individual")
    assert (concat["<model>"].mul, concat["<model>"].add) == (2 * 40, 4 * 40)


def test_standalone_spike_function_costs_one_compare():
    from bpsn_ext.surrogate import ATan

    net = nn.Sequential(nn.Linear(4, 6), ATan())  # a Heaviside activation (Binary S4D style)
    r = estimate(net, torch.randn(3, 4))
    assert (r["1"].add, r["1"].mul, r["1"].output_numel) == (18, 0, 18)
    smooth = estimate(nn.Sequential(nn.Linear(4, 6), ATan(spiking=False)), torch.randn(3, 4))
    assert smooth["1"].nonlin == 18 and smooth["1"].add == 0


# -- protocol and registry ----------------------------------------------------------------------
class DummySSM(nn.Module):
    """A spiking SSM stand-in: real state update (counted by the protocol), spikes, a child
    linear (counted by its own hook), and a 'kernel' matmul that must not be counted."""

    def __init__(self, h=4, n=3):
        super().__init__()
        self.h, self.n = h, n
        self.kernel = torch.randn(h, h)
        self.out = nn.Linear(h, h)

    def forward(self, u):  # [L, B, H]
        y = u @ self.kernel  # training-time kernel: owned by energy_ops
        return self.out((y > 0).float())

    def energy_ops(self, inputs, output):
        u = inputs[0]
        steps = u.shape[0] * u.shape[1]
        return [
            Ops(mac=steps * self.h * self.n * 2, label="state update"),
            Ops(add=u.numel(), dense=0, label="spike compare"),
        ]


def test_protocol_dummy_module():
    u = torch.randn(7, 2, 4)
    r = estimate(DummySSM(), u, coding="individual")
    own = r["<model>"]
    assert (own.mac, own.add, own.dense) == (14 * 4 * 3 * 2, 56, 14 * 4 * 3 * 2)
    assert "<model> [matmul]" not in [x.key for x in r.layers]
    assert r["out"].input_kind == "spike" and r["out"].mac == 0
    assert r["out"].ac == pytest.approx(r["out"].input_rate * 14 * 4 * 4)


def test_protocol_receives_keyword_arguments():
    class Masked(nn.Module):
        def forward(self, x, mask=None):
            return x

        def energy_ops(self, inputs, output, kwargs):
            return Ops(mac=int(kwargs["mask"].sum()))

    r = estimate(Masked(), torch.randn(4, 2), forward_kwargs={"mask": torch.tensor([1, 0, 1])})
    assert r["<model>"].mac == 2


def test_protocol_exclusive_counts_the_subtree():
    class Whole(DummySSM):
        energy_exclusive = True

    r = estimate(Whole(), torch.randn(3, 1, 4), coding="individual")
    assert [x.key for x in r.layers] == ["<model>"]


def test_register_counter_overrides_and_synaptic_helper():
    class Mixer(nn.Module):
        def forward(self, x):
            return x

    @register_counter(Mixer)
    def count(module, inputs, output):
        return synaptic(inputs[0], inputs[0].numel() * 10)

    try:
        r = estimate(nn.Sequential(Mixer()), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        assert r["0"].ac == 0.25 * 40 and r["0"].dense == 40
        register_counter(nn.Linear, lambda m, i, o: Ops(mac=1), exclusive=True)
        assert estimate(nn.Linear(3, 3), torch.randn(2, 3)).totals()["mac"] == 1
    finally:
        unregister_counter(Mixer)
        unregister_counter(nn.Linear)
    assert estimate(nn.Linear(3, 3), torch.randn(2, 3)).totals()["mac"] == 18


def test_bad_counter_result_is_reported():
    class Bad(nn.Module):
        def forward(self, x):
            return x

        def energy_ops(self, inputs, output):
            return 42

    with pytest.raises(TypeError, match="energy counter of layer '<model>' \\(Bad\\)"):
        estimate(Bad(), torch.randn(2))
    with pytest.raises(ValueError, match="Ops.mac must be a number >= 0"):
        Ops(mac=-1)


def test_uncounted_leaf_is_noted_and_model_is_left_untouched():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    net = nn.Sequential(nn.Linear(3, 3), Odd())
    net.train()
    r = estimate(net, torch.randn(2, 3))
    assert any("1 (Odd)" in n for n in r.notes)
    assert net.training and all(m.training for m in net.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
