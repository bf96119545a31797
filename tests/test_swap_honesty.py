"""Every supported source neuron is swapped faithfully, with a warning naming what is dropped,
or refused with an error that names the fix (the table of `bpsn_ext.swap_losses`)."""

import warnings

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import layer, neuron  # noqa: E402

from bpsn_ext.snntorch import BPSNLeaky, SingleStepLeaky, to_sequence  # noqa: E402
from bpsn_ext.snntorch import swap_neurons as snn_swap  # noqa: E402
from bpsn_ext.spikingjelly import BPSNNode  # noqa: E402
from bpsn_ext.spikingjelly import swap_neurons as sj_swap  # noqa: E402

T, B = 5, 2


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_rleaky_to_single_step_warns_naming_the_recurrence():
    net = nn.Sequential(
        nn.Linear(3, 20), snn.RLeaky(beta=0.5, linear_features=20, init_hidden=True)
    )
    before = count(net)
    with pytest.warns(UserWarning, match=r"drops the recurrent connection .* of the RLeaky") as rec:
        snn_swap(net, {snn.RLeaky: SingleStepLeaky})
    assert f"({before - 80} parameters before" in str(rec[0].message)  # the neuron's own
    assert count(net) < before


@pytest.mark.parametrize(
    "old, what",
    [
        (lambda: snn.RLeaky(beta=0.5, linear_features=4, init_hidden=True), "recurrent"),
        (lambda: snn.Synaptic(alpha=0.9, beta=0.5, init_hidden=True), "`syn` and its decay"),
    ],
)
def test_sequence_swaps_to_bpsn_warn_naming_what_is_dropped(old, what):
    net = to_sequence(nn.Sequential(nn.Linear(3, 4), old()))
    with pytest.warns(UserWarning, match=what):
        snn_swap(net, {type(net[1].neuron): BPSNLeaky})
    assert net(torch.rand(T, B, 3)).shape == (T, B, 4)


class ExplicitSynaptic(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lif = nn.Linear(3, 4), snn.Synaptic(alpha=0.9, beta=0.5)

    def forward(self, x):
        syn, mem = self.lif.init_synaptic()
        out = []
        for x_t in x:
            spk, syn, mem = self.lif(self.fc(x_t), syn, mem)
            out.append(spk)
        return torch.stack(out)


@pytest.mark.parametrize("new", [SingleStepLeaky, BPSNLeaky])
def test_explicit_state_synaptic_is_refused_and_left_alone(new):
    net = ExplicitSynaptic()
    with pytest.raises(ValueError, match=r"init_hidden=False.*\(input, syn, mem\).*init_hidden"):
        snn_swap(net, {snn.Synaptic: new}, allow_sequence_neurons=True)
    assert type(net.lif) is snn.Synaptic
    assert net(torch.rand(T, B, 3)).shape == (T, B, 4)


def test_plain_leaky_swap_drops_nothing_and_stays_silent():
    net = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.5, init_hidden=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        snn_swap(net, {snn.Leaky: SingleStepLeaky})


class Tutorial5Style(nn.Module):
    """Tutorial 5's explicit-mem convention, handed the whole sequence in one call."""

    def __init__(self):
        super().__init__()
        self.fc, self.lif = nn.Linear(3, 4), snn.Leaky(beta=0.5)

    def forward(self, x):
        mem = self.lif.init_leaky()
        spk, mem = self.lif(self.fc(x), mem)
        return spk, mem


def test_explicit_mem_convention_works_with_bpsn_leaky():
    torch.manual_seed(0)
    net = Tutorial5Style()
    snn_swap(net, {snn.Leaky: BPSNLeaky}, allow_sequence_neurons=True)
    x = torch.rand(T, B, 3) * 4
    spk, mem = net(x)
    ref_spk, ref_mem = net.lif(net.fc(x))  # the same neuron without the state argument
    assert torch.equal(spk, ref_spk) and torch.equal(mem, ref_mem)
    assert torch.equal(net.lif(net.fc(x), torch.zeros(B, 4))[0], spk)  # zeros: initial too
    with pytest.raises(ValueError, match="no state between calls"):
        net.lif(net.fc(x), mem)  # a non-zero mem: a per-step loop
    lengths = torch.tensor([T, 2])
    masked = net.lif(net.fc(x), lengths)[0]  # an integer tensor second: the padding mask
    assert torch.equal(masked, net.lif(net.fc(x), mask=lengths)[0]) and not masked[2:, 1].any()


@pytest.mark.skipif(not hasattr(neuron, "PSN"), reason="SpikingJelly 2.0's PSN family")
@pytest.mark.parametrize("make", ["PSN", "SlidingPSN"])
def test_psn_family_to_bpsn_warns_naming_the_learned_weights(make):
    old = neuron.PSN(T=T) if make == "PSN" else neuron.SlidingPSN(k=2, step_mode="m")
    net = nn.Sequential(nn.Linear(3, 4), old)
    with pytest.warns(UserWarning, match=f"drops the learned .* of the {make}"):
        sj_swap(net, {type(old): BPSNNode})
    assert isinstance(net[1], BPSNNode) and net[1].v_threshold.item() == 1.0
    assert net(torch.rand(T, B, 3)).shape == (T, B, 4)


def test_bpsn_node_inside_a_step_container_is_refused_clearly():
    with pytest.raises(ValueError, match=r"BPSNNode.*(cannot sit inside|must be 's')"):
        layer.MultiStepContainer(BPSNNode(step_mode="m"))
    net = nn.Sequential(nn.Linear(3, 4), layer.MultiStepContainer(neuron.LIFNode()))
    with pytest.raises(ValueError, match="drives children one step at a time"):
        sj_swap(net, {neuron.LIFNode: BPSNNode})
