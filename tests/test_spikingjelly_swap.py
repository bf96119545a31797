"""swap_neurons / to_single_step on SpikingJelly models (both generations)."""

import pytest
import torch

pytest.importorskip("spikingjelly")
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

import bpsn_ext  # noqa: E402
from bpsn_ext.spikingjelly import SingleStepNode, swap_neurons, to_single_step  # noqa: E402
from bpsn_ext.surrogate import S2NN  # noqa: E402


def small_net(step_mode="m"):
    net = torch.nn.Sequential(
        layer.Linear(6, 8),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, detach_reset=True),
        layer.Linear(8, 3),
        neuron.LIFNode(tau=2.0, v_reset=None),
    )
    functional.set_step_mode(net, step_mode)
    return net


class MultiStepOnly(torch.nn.Module, base.MultiStepModule):
    """A stand-in for a whole-sequence neuron (like BPSN)."""

    def __init__(self):
        super().__init__()
        self.step_mode = "m"

    def forward(self, x_seq):
        return (x_seq > 0).to(x_seq)


class MyLIF(neuron.LIFNode):
    pass


def test_swap_replaces_every_exact_match_and_carries_settings():
    net = small_net("m")
    net.add_module("custom", MyLIF())  # a subclass: must stay
    net.eval()
    report = swap_neurons(net, {neuron.LIFNode: SingleStepNode})
    assert [name for name, _, _ in report] == ["1", "3"]
    assert isinstance(net[1], SingleStepNode) and isinstance(net[3], SingleStepNode)
    assert type(net.custom) is MyLIF
    assert net[1].v_threshold == 0.5 and net[1].detach_reset is True
    assert net[3].v_reset is None
    assert net[1].step_mode == "m" and not net[1].training
    assert isinstance(net[1].surrogate_function, S2NN)
    for _, old, new in report:
        assert isinstance(old, neuron.LIFNode) and new is not old


def test_reset_net_reaches_new_modules_after_swap():
    net = small_net("m")
    x = torch.randn(2, 4, 6)
    net(x)
    functional.reset_net(net)  # fills SpikingJelly 2.0's reset cache with the old modules
    old = net[1]  # still referenced: the cache would keep resetting it
    net(x)
    swap_neurons(net, {neuron.LIFNode: SingleStepNode})
    net(x)
    assert isinstance(net[1].v, torch.Tensor)
    functional.reset_net(net)
    assert net[1].v == 0.0 and net[3].v == 0.0
    assert old is not net[1]


def test_swap_follows_device_and_dtype():
    net = small_net("m").double()
    swap_neurons(net, {neuron.LIFNode: SingleStepNode})
    out = net(torch.randn(2, 3, 6, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_multi_step_only_neuron_is_refused_where_wrong():
    single = small_net("s")
    with pytest.raises(ValueError, match=r"step mode 's'.*set_step_mode\(model, 'm'\)"):
        swap_neurons(single, {neuron.LIFNode: lambda old: MultiStepOnly()})
    assert isinstance(single[1], neuron.LIFNode) and isinstance(single[3], neuron.LIFNode)

    contained = torch.nn.Sequential(layer.Linear(4, 4), layer.MultiStepContainer(neuron.LIFNode()))
    with pytest.raises(ValueError, match="MultiStepContainer drives children one step"):
        swap_neurons(contained, {neuron.LIFNode: lambda old: MultiStepOnly()})

    multi = small_net("m")
    report = swap_neurons(multi, {neuron.LIFNode: lambda old: MultiStepOnly()})
    assert len(report) == 2 and multi(torch.randn(3, 2, 6)).shape == (3, 2, 3)


def test_swap_errors_are_clear():
    net = small_net()
    with pytest.raises(ValueError, match="the model itself"):
        swap_neurons(neuron.LIFNode(), {neuron.LIFNode: SingleStepNode})
    with pytest.raises(TypeError, match="returned int, expected an nn.Module"):
        swap_neurons(net, {neuron.LIFNode: lambda old: 3})
    with pytest.raises(TypeError, match="has no from_neuron"):
        swap_neurons(net, {neuron.LIFNode: torch.nn.ReLU})
    with pytest.raises(ValueError, match="swap rules are empty"):
        swap_neurons(net, {})
    with pytest.raises(TypeError, match="must be an nn.Module"):
        swap_neurons("net", {neuron.LIFNode: SingleStepNode})
    with pytest.warns(UserWarning, match="no module matched"):
        assert swap_neurons(net, {neuron.IFNode: SingleStepNode}) == []


def test_predicate_rules_and_not_inplace():
    net = small_net()
    report = swap_neurons(
        net, [(lambda m: isinstance(m, neuron.BaseNode), SingleStepNode)], inplace=False
    )
    assert isinstance(net[1], neuron.LIFNode)  # original untouched
    assert isinstance(report.model[1], SingleStepNode) and report.model is not net


def test_to_single_step_matches_if_step_from_rest():
    torch.manual_seed(3)
    net = small_net("m")
    to_single_step(net, surrogate_function=sj_surrogate.S2NN())
    ref = small_net("m")
    ref.load_state_dict(net.state_dict())
    for i in (1, 3):
        ref[i] = neuron.IFNode(
            v_threshold=net[i].v_threshold,
            v_reset=net[i].v_reset,
            surrogate_function=sj_surrogate.S2NN(),
            step_mode="m",
        )
    x = torch.randn(1, 5, 6)
    assert torch.equal(net(x), ref(x))
    # the top-level converter detects SpikingJelly models
    other = small_net("m")
    report = bpsn_ext.to_single_step(other)
    assert len(report) == 2 and all(isinstance(n, SingleStepNode) for _, _, n in report)


def test_to_single_step_keeps_the_surrogate_when_asked():
    net = small_net("m")
    kept = [net[1].surrogate_function, net[3].surrogate_function]
    bpsn_ext.to_single_step(net, keep_surrogate=True)
    assert isinstance(net[1], SingleStepNode) and isinstance(net[3], SingleStepNode)
    assert net[1].surrogate_function is kept[0] and net[3].surrogate_function is kept[1]
    other = small_net("m")
    with pytest.raises(ValueError, match="unknown surrogate name 'keep'"):
        SingleStepNode.from_neuron(other[1], surrogate_function="keep")
    with pytest.raises(ValueError, match="either surrogate_function or keep_surrogate"):
        to_single_step(other, surrogate_function="atan", keep_surrogate=True)
    with pytest.raises(ValueError, match="SpikingJelly or snnTorch neurons"):
        bpsn_ext.to_single_step(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_model_zoo_vgg11_swap_then_train_step(sj_zoo, step_mode):
    torch.manual_seed(0)
    net = sj_zoo("spiking_vgg").spiking_vgg11(spiking_neuron=neuron.LIFNode, num_classes=10)
    functional.set_step_mode(net, step_mode)
    n_lif = sum(type(m) is neuron.LIFNode for m in net.modules())
    report = swap_neurons(net, {neuron.LIFNode: SingleStepNode})
    assert len(report) == n_lif > 0
    assert not any(type(m) is neuron.LIFNode for m in net.modules())
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 32, 32)
    if step_mode == "m":
        x = x.unsqueeze(0)  # T = 1: the single-step network needs one time step
    before = net.classifier[-1].bias.detach().clone()
    out = net(x)
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, 10), torch.tensor([1, 7]))
    loss.backward()
    opt.step()
    functional.reset_net(net)
    assert torch.isfinite(loss)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert not torch.equal(before, net.classifier[-1].bias)  # the step changed the model
