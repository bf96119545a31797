"""Energy estimator on SpikingJelly and snnTorch networks; cross-check with SpikingJelly's
``op_counter`` (2.0 only); the demo's energy line."""

import json

import pytest
import torch
from torch import nn

from bpsn_ext.energy import demo_energy, estimate

pytest.importorskip("spikingjelly")
pytest.importorskip("snntorch")

import snntorch as snn  # noqa: E402
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402

from bpsn_ext.snntorch import BPSNLeaky as SnnBPSN  # noqa: E402
from bpsn_ext.snntorch import SingleStepLeaky  # noqa: E402
from bpsn_ext.spikingjelly import BPSNNode, SingleStepNode  # noqa: E402


def test_spikingjelly_neurons_single_step_mode():
    net = nn.Sequential(
        layer.Linear(4, 6),
        neuron.IFNode(),
        layer.Linear(6, 6),
        neuron.LIFNode(),
        layer.Linear(6, 2),
    )
    x = torch.rand(3, 4) * 2
    r = estimate(net, x, T=5, step_mode="s")
    assert r["1"].calls == 5 and (r["1"].mul, r["1"].add) == (0, 3 * 5 * 3 * 6)  # IF
    assert (r["3"].mul, r["3"].add) == (5 * 3 * 6, 3 * 5 * 3 * 6)  # LIF
    assert r["0"].mac == 5 * 3 * 4 * 6
    functional.reset_net(net)
    assert r.totals()["ann_mac"] == 3 * (4 * 6 + 6 * 6 + 6 * 2)


def test_spikingjelly_seq_to_ann_conv_counts_every_step():
    net = nn.Sequential(
        layer.Conv2d(2, 3, 3, padding=1, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(3 * 4 * 4, 2, step_mode="m"),
    )
    x = torch.rand(4, 2, 2, 4, 4) * 3  # [T, N, C, H, W]
    r = estimate(net, x, coding="individual")
    assert r["0"].mac == 4 * 2 * 3 * 16 * 2 * 9
    assert r["1"].mul == 4 * 2 * 3 * 16


def test_single_step_neurons_cost_one_compare():
    x = torch.randn(3, 5)
    for node in (SingleStepNode(), SingleStepLeaky()):
        r = estimate(nn.Sequential(nn.Linear(5, 5), node), x)
        assert (r["1"].mul, r["1"].add, r["1"].dense) == (0, 15, 0)


def test_bpsn_adapters_count_once():
    x = torch.randn(6, 2, 4)
    core = estimate(BPSNNode(4, fusion="gate", step_mode="m"), x, coding="individual").totals()
    wrapped = estimate(
        nn.Sequential(SnnBPSN(4, init_hidden=True, fusion="gate")), x, coding="individual"
    )
    assert [row.key for row in wrapped.layers] == ["0"]  # the core neuron is not counted again
    assert wrapped.totals()["mul"] == core["mul"] == 4 * 48


def test_snntorch_synaptic_and_unknown_neurons():
    x = torch.rand(2, 3)
    syn = estimate(
        nn.Sequential(nn.Linear(3, 4), snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True)), x
    )
    assert (syn["1"].mul, syn["1"].add) == (2 * 8, 4 * 8)


def _demo_mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        layer.Linear(8, 16, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.Linear(16, 12, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Linear(12, 4, bias=False, step_mode="m"),
    )


def _op_counter():
    try:
        from spikingjelly.activation_based import op_counter
    except ImportError:
        return None
    needed = ("SynOpCounter", "MACCounter", "DispatchCounterMode")
    return op_counter if all(hasattr(op_counter, n) for n in needed) else None


@pytest.mark.skipif(_op_counter() is None, reason="needs SpikingJelly >= 2.0 op_counter")
@pytest.mark.parametrize("which", ["mlp", "conv"])
def test_agrees_with_spikingjelly_op_counter(which):
    oc = _op_counter()
    torch.manual_seed(0)
    if which == "mlp":
        net, x = _demo_mlp(), torch.rand(4, 5, 8) * 3
    else:  # exact border counting needed for 3x3 convolutions on spikes
        net = nn.Sequential(
            layer.Conv2d(2, 4, 3, padding=1, step_mode="m"),
            neuron.LIFNode(step_mode="m"),
            layer.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, step_mode="m"),
            neuron.IFNode(step_mode="m"),
            layer.Flatten(step_mode="m"),
            layer.Linear(6 * 4 * 4, 3, step_mode="m"),
        )
        x = torch.rand(3, 2, 2, 8, 8) * 3
    syn, mac = oc.SynOpCounter(), oc.MACCounter()
    functional.reset_net(net)
    with torch.no_grad(), oc.DispatchCounterMode([syn, mac]):
        net(x)
    r = estimate(net, x, coding="individual", conv_ac="exact")
    assert r.totals()["ac"] == syn.get_total() > 0
    assert r.totals()["mac"] == mac.get_total() > 0
    # per layer: SpikingJelly scopes are "<Class>.<name>"
    root = type(net).__name__
    for row in r.layers:
        scope = f"{root}.{row.name}"
        assert row.ac == sum(syn.get_counts().get(scope, {}).values())
        assert row.mac == sum(mac.get_counts().get(scope, {}).values())


class SpikeScores(nn.Module):
    """Attention scores of two spike tensors: a matmul outside any counted layer."""

    def __init__(self, k: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("k", k)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q @ self.k.transpose(-1, -2)


@pytest.mark.skipif(_op_counter() is None, reason="needs SpikingJelly >= 2.0 op_counter")
def test_spike_by_spike_matmul_agrees_with_synop_counter():
    """docs/energy.md: spike x spike matmuls are counted as SynOpCounter counts them, as the
    exact number of products of two nonzero entries."""
    oc = _op_counter()
    torch.manual_seed(0)
    q, k = [(torch.rand(4, 6, 8) < 0.4).float() for _ in range(2)]
    net = SpikeScores(k)
    syn = oc.SynOpCounter()
    with torch.no_grad(), oc.DispatchCounterMode([syn]):
        scores = net(q)
    coincidences = scores.sum().item()
    assert 0 < coincidences < q.shape[0] * 6 * 6 * 8  # sparse: not the dense count
    assert estimate(net, q).totals()["ac"] == syn.get_total() == coincidences


def test_demo_energy_line_and_json():
    from bpsn_ext.bench.single_step_bench import build_s3nn, build_sj_lif

    torch.manual_seed(0)
    x = torch.randn(10, 8)
    s3nn = demo_energy(build_s3nn(8, 16, 2, 4), x)
    lif = demo_energy(build_sj_lif(8, 16, 2, 4, 4), x, T=4)
    assert s3nn["T"] == 1 and lif["T"] == 4 and lif["passes"] == 4
    assert lif["ann_mac"] == s3nn["ann_mac"] == 8 * 16 + 16 * 16 + 16 * 4  # same layers
    assert s3nn["mac"] == 8 * 16 and lif["mac"] == 4 * 8 * 16  # T passes of the encoder
    line = f"{s3nn}"
    assert "/sample" in line and "MAC" in line and "\n" not in line
    json.dumps({"energy": lif})  # a plain JSON-able dict
    assert lif.report.layers[1].type == "LIFNode"
