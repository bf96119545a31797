"""Our neurons inside snnTorch's tutorial networks (tutorial 5: a fully connected net with its
own loop over time; tutorial 7: an ``nn.Sequential`` conv net with ``init_hidden=True``)."""

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
from snntorch import functional as SF  # noqa: E402
from snntorch import utils as snn_utils  # noqa: E402

import bpsn_ext  # noqa: E402
from bpsn_ext.snntorch import (  # noqa: E402
    BPSNLeaky,
    SingleStepLeaky,
    StepLoop,
    TimeFolded,
    reset,
    swap_neurons,
    to_sequence,
)

T, B = 6, 4


class Tutorial5(nn.Module):
    """snnTorch tutorial 5: Linear-Leaky-Linear-Leaky, explicit membranes, a loop over T."""

    def __init__(self, n_in=20, hidden=32, n_out=10):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(n_in, hidden), snn.Leaky(beta=0.95)
        self.fc2, self.lif2 = nn.Linear(hidden, n_out), snn.Leaky(beta=0.95)

    def forward(self, x_seq):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes = []
        for x in x_seq:
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
        return torch.stack(spikes)


def tutorial7():
    """snnTorch tutorial 7's conv net (28 x 28 inputs), neurons with init_hidden=True."""
    grad = snn.surrogate.fast_sigmoid(slope=25)
    return nn.Sequential(
        nn.Conv2d(1, 12, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Conv2d(12, 64, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 10),
        snn.Leaky(beta=0.5, spike_grad=grad, init_hidden=True, output=True),
    )


def tutorial7_forward(net, data):
    """The tutorial's loop: one call per time step."""
    reset(net)
    spk_rec = [net(x)[0] for x in data]
    return torch.stack(spk_rec)


def overfit(forward, params, x, y, steps=10, lr=2e-2):
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = SF.ce_rate_loss()
    losses = []
    for _ in range(steps):
        loss = loss_fn(forward(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_tutorial5_with_single_step_neurons_trains():
    torch.manual_seed(0)
    net = Tutorial5()
    swap_neurons(net, {snn.Leaky: SingleStepLeaky})
    x, y = torch.rand(T, B, 20) * 2, torch.arange(B)
    first, last = overfit(net, net.parameters(), x, y)
    assert last < first


def test_tutorial5_refuses_bpsn_with_a_clear_error():
    """Its forward loops over time: BPSN would see one step per call."""
    net = Tutorial5()
    with pytest.raises(ValueError, match="whole \\[T, B, ...\\] sequence per call"):
        swap_neurons(net, {snn.Leaky: BPSNLeaky})
    assert type(net.lif1) is snn.Leaky


@pytest.mark.parametrize("new", [SingleStepLeaky, BPSNLeaky])
def test_tutorial7_conv_net_trains_with_our_neurons(new):
    torch.manual_seed(0)
    x, y = torch.rand(T, B, 1, 28, 28), torch.arange(B)
    if new is SingleStepLeaky:  # a step neuron: the tutorial's own loop still works
        net = tutorial7()
        swap_neurons(net, {snn.Leaky: new})
        forward = lambda data: tutorial7_forward(net, data)  # noqa: E731
    else:  # BPSN needs the sequence: fold time into the batch for the per-step layers
        net = to_sequence(tutorial7())
        report = swap_neurons(net, {snn.Leaky: new})
        assert len(report) == 3 and not any(isinstance(m, StepLoop) for m in net.modules())
        net(x[:, :1])  # the first forward reads each channel axis from the data flow
        assert [m.channel_dim for m in net if isinstance(m, BPSNLeaky)] == [2, 2, 2]
        forward = lambda data: net(data)[0]  # noqa: E731  (the last neuron has output=True)
    first, last = overfit(forward, net.parameters(), x, y)
    assert last < first


def test_to_sequence_equals_the_tutorial_loop():
    """The rewritten model gives the tutorial's per-step results, spike for spike."""
    torch.manual_seed(0)
    net = tutorial7()
    x = torch.rand(T, B, 1, 28, 28)
    ref = tutorial7_forward(net, x)
    seq = to_sequence(net)
    assert isinstance(seq[0], TimeFolded) and isinstance(seq[1], StepLoop)
    spk, mem = seq(x)
    assert torch.equal(spk, ref) and mem.shape == ref.shape
    with pytest.raises(TypeError, match="rewrites an nn.Sequential"):
        to_sequence(Tutorial5())
    with pytest.raises(ValueError, match="init_hidden=True"):
        StepLoop(snn.Leaky(beta=0.5))


def test_time_folded_is_the_per_step_layer_at_every_step():
    conv = nn.Conv2d(2, 3, 3)
    x = torch.randn(5, 4, 2, 8, 8)
    y = TimeFolded(conv)(x)
    assert torch.equal(y, torch.stack([conv(x_t) for x_t in x]))
    with pytest.raises(ValueError, match="expects \\[T, B, \\*\\]"):
        TimeFolded(conv)(torch.randn(3))


def test_weights_load_across_the_three_bpsn_classes():
    sj = pytest.importorskip("spikingjelly.activation_based")  # noqa: F841
    from bpsn_ext.spikingjelly import BPSNNode

    core = bpsn_ext.BPSN(8)
    with torch.no_grad():
        core.decay_f_logit.uniform_(-1, 1)
    for cls in (BPSNLeaky, BPSNNode):
        other = cls(8)
        other.load_state_dict(core.state_dict())  # strict: the same keys
        assert torch.equal(other.decay_f_logit, core.decay_f_logit)
        core.load_state_dict(other.state_dict())


def test_snntorch_reset_utility_leaves_bpsn_alone():
    net = nn.Sequential(nn.Linear(3, 4), BPSNLeaky(4, init_hidden=True))
    x = torch.randn(5, 2, 3)
    out = net(x)
    snn_utils.reset(net)
    reset(net)
    assert torch.equal(net(x), out)  # stateless across calls


def test_bpsn_leaky_is_the_only_snntorch_name_of_bpsn():
    import bpsn_ext.snntorch as adapters

    assert not hasattr(adapters, "BPSN")  # one class, one name: bpsn_ext.BPSN is the core's
    bpsn_ext.register()
    assert snn.BPSNLeaky is BPSNLeaky
