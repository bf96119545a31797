"""Our neurons inside SpikingJelly's own model zoo, through swap_neurons and the builders.

Each network x neuron x path is built, run forward and backward, and trained on one fixed
small batch until the loss falls (a swapped-in neuron that breaks the model does not).
"""

import pytest
import torch

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, neuron  # noqa: E402

from bpsn_ext.spikingjelly import SJ_GENERATION, BPSNNode, SingleStepNode, swap_neurons  # noqa: E402

pytestmark = pytest.mark.slow

# module, builder, extra builder kwargs, image size (VGG's five poolings need 32 x 32)
CNNS = {
    "spiking_resnet18": ("spiking_resnet", "spiking_resnet18", {}, 16),
    "sew_resnet18": ("sew_resnet", "sew_resnet18", {"cnf": "ADD"}, 16),
    "spiking_vgg11_bn": ("spiking_vgg", "spiking_vgg11_bn", {}, 32),
}
# small configurations of SpikingJelly 2.0's transformers (the builders' kwargs reach neurons);
# the last field: whether some neuron sees a rank-4 [T, N, C, L] input (Spikformer's MLP)
TRANSFORMERS = {
    "spikformer": (
        "spikformer",
        "Spikformer",
        dict(T=2, img_size_h=32, img_size_w=32, patch_size=4, embed_dims=48, num_heads=4, depths=1),
        True,
    ),
    "spike_driven_transformer": (
        "spike_driven_transformer",
        "SpikeDrivenTransformer",
        dict(T=2, embed_dims=64, num_heads=4, depths=1),
        False,
    ),
}
NEURONS = {"SingleStepNode": SingleStepNode, "BPSNNode": BPSNNode}


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Each test sees the one-time warnings of the neurons' no-op keywords afresh."""
    from bpsn_ext.util.warn import forget_warnings

    forget_warnings()


def overfit(net, x, steps=4, lr=2e-3):
    """Train on one fixed batch; returns (first loss, last loss)."""
    torch.manual_seed(0)
    y = torch.arange(x.shape[-4]) % 10
    for p in net.parameters():  # VGG's 25088 x 4096 and 4096 x 4096 layers: too slow for CI
        p.requires_grad_(p.numel() < 10_000_000)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        out = net(x)
        logits = out.mean(0) if out.dim() == 3 else out
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        opt.step()
        functional.reset_net(net)
        losses.append(loss.item())
    return losses[0], losses[-1]


def build_cnn(sj_zoo, name, spiking_neuron, **kwargs):
    module, builder, extra, _ = CNNS[name]
    torch.manual_seed(0)
    return getattr(sj_zoo(module), builder)(
        spiking_neuron=spiking_neuron, num_classes=10, **extra, **kwargs
    )


@pytest.mark.parametrize("neuron_name", sorted(NEURONS))
@pytest.mark.parametrize("path", ["swap", "builder"])
@pytest.mark.parametrize("net_name", sorted(CNNS))
def test_zoo_cnn_trains_with_our_neuron(sj_zoo, net_name, path, neuron_name):
    new = NEURONS[neuron_name]
    if path == "swap":
        net = build_cnn(sj_zoo, net_name, neuron.LIFNode, tau=2.0)
        functional.set_step_mode(net, "m")
        n_lif = sum(type(m) is neuron.LIFNode for m in net.modules())
        assert len(swap_neurons(net, {neuron.LIFNode: new})) == n_lif > 0
    else:
        with (
            pytest.warns(UserWarning, match="has no effect")
            if new is SingleStepNode
            else _no_warning()
        ):
            net = build_cnn(sj_zoo, net_name, new, tau=2.0)  # LIF keywords reach the neuron
        functional.set_step_mode(net, "m")
    ours = [m for m in net.modules() if isinstance(m, new)]
    assert ours and all(isinstance(m, neuron.BaseNode) for m in ours)
    if new is BPSNNode:
        assert all(m.decay_f.item() == pytest.approx(0.5) for m in ours)  # 1 - 1/tau
    size = CNNS[net_name][3]
    first, last = overfit(net, torch.rand(2, 2, 3, size, size))
    assert last < first


def test_zoo_cnn_left_in_single_step_mode_refuses_bpsn(sj_zoo):
    """The builder path without set_step_mode(net, 'm') would feed [N, C, H, W] per step."""
    net = build_cnn(sj_zoo, "spiking_vgg11_bn", BPSNNode)
    with pytest.raises(ValueError, match=r"set_step_mode\(net, 'm'\)"):
        net(torch.rand(2, 3, 32, 32))
    # swap_neurons refuses before touching the model
    lif_net = build_cnn(sj_zoo, "spiking_resnet18", neuron.LIFNode)
    with pytest.raises(ValueError, match=r"set_step_mode\(model, 'm'\)"):
        swap_neurons(lif_net, {neuron.LIFNode: BPSNNode})
    assert not any(isinstance(m, BPSNNode) for m in lif_net.modules())


def test_swap_infers_the_channel_axis_from_the_feeding_layer(sj_zoo):
    net = build_cnn(sj_zoo, "spiking_resnet18", neuron.LIFNode)
    functional.set_step_mode(net, "m")
    swap_neurons(net, {neuron.LIFNode: BPSNNode})
    # the axis is read from the data flow on the first forward
    assert {m.channel_dim for m in net.modules() if isinstance(m, BPSNNode)} == {None}
    node = net.sn1
    x = torch.rand(3, 2, 3, 16, 16)
    seen = {}
    node.register_forward_hook(lambda m, i, o: seen.update(io=(i[0], o)))
    net(x)
    assert {m.channel_dim for m in net.modules() if isinstance(m, BPSNNode)} == {2}
    assert not net._forward_pre_hooks  # the probe is gone once every axis is known
    # the split acts on channels: the first half of layer1's channels ignores the future
    inp, out = seen["io"]
    functional.reset_net(net)
    later = inp.clone()
    later[-1] += 3.0
    diff = (node(later) != out)[:-1]
    C = inp.shape[2]
    assert not diff[:, :, : C // 2].any() and diff[:, :, C // 2 :].any()


def refused_axes(net, x):
    """Run forwards until every swapped BPSN knows its channel axis; each one the data flow
    cannot place refuses, naming itself, and gets channel_dim=-1 (heads x features last)."""
    import re

    refused = []
    while True:
        try:
            net(x)
        except ValueError as error:
            found = re.search(r"at '([^']+)' cannot tell which dimension", str(error))
            assert found and "channel_dim" in str(error), error
            refused.append(found.group(1))
            net.get_submodule(found.group(1)).channel_dim = -1
            functional.reset_net(net)
            continue
        functional.reset_net(net)
        return refused


def _no_warning():
    import contextlib
    import warnings

    @contextlib.contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            yield

    return ctx()


@pytest.mark.skipif(SJ_GENERATION != 2, reason="the transformer zoo is SpikingJelly 2.0's")
@pytest.mark.parametrize("neuron_name", sorted(NEURONS))
@pytest.mark.parametrize("path", ["swap", "builder"])
@pytest.mark.parametrize("net_name", sorted(TRANSFORMERS))
def test_zoo_transformer_trains_with_our_neuron(sj_zoo, net_name, path, neuron_name):
    module, cls_name, config, rank4 = TRANSFORMERS[net_name]
    cls = getattr(sj_zoo(module), cls_name)
    new = NEURONS[neuron_name]
    torch.manual_seed(0)
    if path == "swap":
        net = cls(num_classes=10, spiking_neuron=neuron.LIFNode, **config)
        swap_neurons(net, {neuron.LIFNode: new})
        assert not any(type(m) is neuron.LIFNode for m in net.modules())
        if new is BPSNNode:  # attention splits the channels into heads: no whole axis
            assert refused_axes(net, torch.rand(2, 3, 32, 32)) == ["blocks.0.attn.attn_lif"]
            dims = {m.channel_dim for m in net.modules() if isinstance(m, BPSNNode)}
            assert dims == {2, -1}  # [T, N, C, L] or [T, N, C, H, W]; the one set by hand
    else:
        extra = {"channel_dim": 2} if new is BPSNNode and rank4 else {}
        if extra:  # rank-4 [T, N, C, L] inputs need the layout said (swap infers it)
            with pytest.raises(ValueError, match="channel_dim=2 for a"):
                cls(num_classes=10, spiking_neuron=new, **config)(torch.rand(2, 3, 32, 32))
        net = cls(num_classes=10, spiking_neuron=new, **config, **extra)
    assert any(isinstance(m, new) for m in net.modules())
    first, last = overfit(net, torch.rand(2, 3, 32, 32))
    assert last < first
