"""A swapped BPSN's channel axis comes from the data flow, never from declaration order.

Each model declares its layers in an order that is not the order data flows in (or moves the
channel axis with a transpose), as hand-written networks do; the BPSN must split along the
channels (half look back, half ahead), or refuse naming ``channel_dim`` and the shape.
"""

import copy

import pytest
import torch
from torch import nn

sj = pytest.importorskip("spikingjelly.activation_based")
snn = pytest.importorskip("snntorch")
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402

from bpsn_ext.snntorch import BPSNLeaky  # noqa: E402
from bpsn_ext.snntorch import swap_neurons as snn_swap  # noqa: E402
from bpsn_ext.spikingjelly import BPSNNode  # noqa: E402
from bpsn_ext.spikingjelly import swap_neurons as sj_swap  # noqa: E402

T, B = 6, 2


def sj_lif():
    return neuron.LIFNode(step_mode="m")


def snn_leaky():
    return snn.Leaky(beta=0.5, init_hidden=True)


class ConvDeclaredFcFirst(nn.Module):
    """Declares conv1, fc, sn1, sn2: the neuron after its Linear in declaration order."""

    def __init__(self, make_neuron):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.fc = nn.Linear(6 * 5 * 7, 10)
        self.sn1, self.sn2 = make_neuron(), make_neuron()

    def forward(self, x):  # [T, B, 1, 5, 7]
        T, B = x.shape[:2]
        y = self.sn1(self.conv1(x.flatten(0, 1)).reshape(T, B, 6, 5, 7))
        return self.sn2(self.fc(y.flatten(2)))


class SpikformerMLP(nn.Module):
    """The original Spikformer MLP: Linear on [T*B, N, C], BatchNorm1d through a transpose,
    the neuron on [T, B, N, C] after a contiguous copy."""

    def __init__(self, make_neuron, C=4, hidden=8):
        super().__init__()
        self.hidden = hidden
        self.fc1_linear, self.fc1_bn = nn.Linear(C, hidden), nn.BatchNorm1d(hidden)
        self.fc1_lif = make_neuron()

    def forward(self, x):  # [T, B, N, C]
        T, B, N, _ = x.shape
        h = self.fc1_linear(x.flatten(0, 1))
        h = self.fc1_bn(h.transpose(-1, -2)).transpose(-1, -2)
        return self.fc1_lif(h.reshape(T, B, N, self.hidden).contiguous())


class MergedChannels(nn.Module):
    """The channel axis is merged with the positions before the neuron: cannot be known."""

    def __init__(self, make_neuron):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1)
        self.sn = make_neuron()

    def forward(self, x):  # [T, B, 3, 5]
        T, B = x.shape[:2]
        y = self.conv(x.flatten(0, 1)).reshape(T, B, 20)
        return self.sn(y.reshape(T, B, 5, 4))


def split_axis(node, net, x):
    """The axis along which the node's split runs: raising the input at the last step changes
    earlier spikes exactly in the second half of that axis (the half that looks ahead)."""
    seen = {}
    handle = node.register_forward_hook(lambda m, i, o: seen.update(io=(i[0], o)))
    net(x)
    handle.remove()
    inp, out = seen["io"]
    later = inp.clone()
    later[-1] += 10.0
    changed = (node(later) != out)[:-1].flatten(0, 1)  # earlier steps, [T*B, ...]
    axes = []
    for dim in range(1, changed.dim()):
        half = (changed.shape[dim] + 1) // 2
        first, second = (
            changed.narrow(dim, 0, half),
            changed.narrow(dim, half, changed.shape[dim] - half),
        )
        if not first.any() and second.any():
            axes.append(dim + 1)  # back to [T, N, ...] numbering
    return axes


def case(framework, model_cls):
    """(model, swapped neurons) for one framework."""
    torch.manual_seed(0)
    if framework == "spikingjelly":
        net = model_cls(sj_lif)
        sj_swap(net, {neuron.LIFNode: BPSNNode})
        return net, BPSNNode
    net = model_cls(snn_leaky)
    snn_swap(net, {snn.Leaky: BPSNLeaky}, allow_sequence_neurons=True)
    return net, BPSNLeaky


FRAMEWORKS = ["spikingjelly", "snntorch"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_conv_neuron_declared_after_the_linear_splits_channels(framework):
    net, kind = case(framework, ConvDeclaredFcFirst)
    assert net.sn1.channel_dim is None  # not guessed at swap time
    x = torch.rand(T, B, 1, 5, 7) * 3
    net(x)
    assert net.sn1.channel_dim == 2 and net.sn2.channel_dim == 2
    assert split_axis(net.sn1, net, x) == [2]  # channels, not the image width
    assert not net._forward_pre_hooks and not net.sn1._forward_pre_hooks  # probe removed


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_spikformer_mlp_splits_channels_not_tokens(framework):
    net, kind = case(framework, SpikformerMLP)
    x = torch.rand(T, B, 10, 4) * 3
    net(x)
    assert net.fc1_lif.channel_dim == -1
    assert split_axis(net.fc1_lif, net, x) == [3]  # the hidden features, not the tokens


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_merged_channel_axis_is_refused_naming_channel_dim_and_shape(framework):
    net, kind = case(framework, MergedChannels)
    with pytest.raises(ValueError, match=r"'sn' cannot tell .* shape \[6, 2, 5, 4\].*channel_dim"):
        net(torch.rand(T, B, 3, 5))
    net.sn.channel_dim = -1  # the fix the message names
    assert net(torch.rand(T, B, 3, 5)).shape == (T, B, 5, 4)


def test_neuron_called_outside_the_model_before_its_first_forward_is_refused():
    net, _ = case("spikingjelly", ConvDeclaredFcFirst)
    with pytest.raises(ValueError, match="outside the swapped model's forward"):
        net.sn1(torch.rand(T, B, 6, 5, 7))


def test_explicit_channel_dim_is_kept_and_copies_resolve_on_their_own():
    net = ConvDeclaredFcFirst(sj_lif)
    sj_swap(net, {neuron.LIFNode: lambda old: BPSNNode.from_neuron(old, channel_dim=-1)})
    net(torch.rand(T, B, 1, 5, 7))
    assert net.sn1.channel_dim == -1  # said by the user: never replaced
    net, _ = case("spikingjelly", ConvDeclaredFcFirst)
    twin = copy.deepcopy(net)  # before the first forward: the copy has its own probe
    twin(torch.rand(T, B, 1, 5, 7))
    assert twin.sn1.channel_dim == 2 and net.sn1.channel_dim is None
    functional.reset_net(net)


def test_multi_step_layers_of_spikingjelly_are_followed():
    """SpikingJelly's own multi-step wrappers (SeqToANNContainer) fold time into the batch."""
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)),
        sj_lif(),
        layer.SeqToANNContainer(nn.MaxPool2d(2)),
        nn.Flatten(2),
        layer.SeqToANNContainer(nn.Linear(4 * 2 * 2, 6)),
        sj_lif(),
    )
    sj_swap(net, {neuron.LIFNode: BPSNNode})
    net(torch.rand(T, B, 1, 4, 4))
    assert [net[1].channel_dim, net[5].channel_dim] == [2, 2]


def test_a_swapped_model_saved_before_its_first_forward_resolves_after_loading(tmp_path):
    net, _ = case("spikingjelly", ConvDeclaredFcFirst)  # snnTorch's atan does not pickle
    torch.save(net, tmp_path / "net.pt")
    loaded = torch.load(tmp_path / "net.pt", weights_only=False)
    loaded(torch.rand(T, B, 1, 5, 7))
    assert loaded.sn1.channel_dim == 2 and net.sn1.channel_dim is None


@pytest.mark.parametrize(
    "op, expected",
    [
        (lambda y: y.reshape(6, 2, 4, 3), 2),  # [T*B, C, L] -> [T, B, C, L]: time unfolded
        (lambda y: y.transpose(1, 2).reshape(6, 2, 3, 4), 3),  # channels last
        (lambda y: y.permute(0, 2, 1).contiguous().unsqueeze(1), 3),
        (lambda y: torch.relu(y * 2 + 1).reshape(6, 2, 4, 3), 2),  # elementwise keeps it
        (lambda y: y.reshape(6, 2, 12), None),  # merged with the positions: lost
        (lambda y: y.mean(1).reshape(6, 2, 3), None),  # reduced away
        (lambda y: (y @ y.transpose(1, 2)).reshape(6, 2, 4, 4), None),  # mixed by a matmul
    ],
)
def test_the_axis_is_followed_through_operations_that_keep_it(op, expected):
    """The tracker on its own: a BatchNorm1d output [T*B, C=4, L=3] and where C lands."""
    from bpsn_ext.layout_probe import _Tracker

    bn = nn.BatchNorm1d(4)
    with _Tracker() as tracker:
        out = op(bn(torch.rand(12, 4, 3)))
        assert tracker.dim_of(out) == expected
