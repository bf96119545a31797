"""``bpsn_ext.snntorch.swap_neurons`` / ``to_single_step`` / ``reset`` / ``detach``.

Networks are written the way snnTorch tutorials 5 and 7 write them: a ``Net`` class looping
over ``num_steps`` with explicit ``mem``, and an
``nn.Sequential`` of ``init_hidden=True`` neurons.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")

import snntorch.functional as SF  # noqa: E402
import snntorch.utils as snn_utils  # noqa: E402

import bpsn_ext  # noqa: E402
from bpsn_ext.snntorch import (  # noqa: E402
    SingleStepLeaky,
    detach,
    reset,
    swap_neurons,
    to_single_step,
)
from bpsn_ext.surrogate import S2NN, ATan  # noqa: E402

N_IN, N_HID, N_OUT, BATCH = 12, 16, 4, 6


@pytest.fixture(autouse=True)
def _restore_instances():
    """snnTorch keeps every neuron in a global list that ``utils.reset`` walks; keep it clean."""
    saved = list(snn.SpikingNeuron.instances)
    yield
    snn.SpikingNeuron.instances[:] = saved


class Net(nn.Module):
    """The snnTorch tutorial network (tutorial 5), with configurable neurons."""

    def __init__(self, num_steps: int = 3, lif1: dict | None = None, lif2: dict | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.num_steps = num_steps
        self.fc1 = nn.Linear(N_IN, N_HID)
        self.lif1 = snn.Leaky(**{"beta": 0.9, **(lif1 or {})})
        self.fc2 = nn.Linear(N_HID, N_OUT)
        self.lif2 = snn.Leaky(**{"beta": 0.9, **(lif2 or {})})

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class UserLeaky(snn.Leaky):
    """A user's own Leaky subclass: exact-type rules must leave it alone."""


class SequenceNeuron(nn.Module):
    """A whole-sequence neuron (like BPSN): consumes ``[T, B, ...]`` per call."""

    consumes_whole_sequence = True

    def __init__(self, threshold: float = 1.0):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(threshold))

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


def _sequential(**last) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(N_IN, N_HID),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(N_HID, N_OUT),
        snn.Leaky(**{"beta": 0.9, "init_hidden": True, "output": True, **last}),
    )


def _x(seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(BATCH, N_IN, generator=g) * 2.0).to(dtype)


def _in_instances(m: nn.Module) -> bool:
    return any(i is m for i in snn.SpikingNeuron.instances)


def _train_step(model: nn.Module, loss_of) -> dict[str, torch.Tensor]:
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    loss = loss_of(model)
    assert torch.isfinite(loss).all()
    loss.backward()
    opt.step()
    return {k: not torch.equal(before[k], v.detach()) for k, v in model.named_parameters()}


# --------------------------------------------------------------------------------------------
# swap_neurons on the tutorial network
# --------------------------------------------------------------------------------------------


LIF1_CFG = dict(
    beta=0.8,
    threshold=0.5,
    learn_beta=True,
    learn_threshold=True,
    reset_mechanism="zero",
    reset_delay=False,
    graded_spikes_factor=2.0,
    learn_graded_spikes_factor=True,
)


def test_swap_tutorial_net_copies_configuration_and_forgets_old_instances():
    net = Net(num_steps=1, lif1=LIF1_CFG)
    old1, old2 = net.lif1, net.lif2
    net(_x())  # give the old neurons some state
    assert _in_instances(old1) and _in_instances(old2)

    report = swap_neurons(net, {snn.Leaky: SingleStepLeaky})

    assert isinstance(report, list) and report.model is net
    assert [name for name, _, _ in report] == ["lif1", "lif2"]
    assert [old for _, old, _ in report] == [old1, old2]
    assert [new for _, _, new in report] == [net.lif1, net.lif2]
    for old, new in ((old1, net.lif1), (old2, net.lif2)):
        assert type(new) is SingleStepLeaky
        assert isinstance(new.spike_grad, S2NN) and new.spike_grad.fire_ge is False
        for attr in ("threshold", "beta", "graded_spikes_factor", "reset_mechanism_val"):
            assert torch.equal(getattr(new, attr), getattr(old, attr)), attr
            assert isinstance(getattr(new, attr), nn.Parameter) == isinstance(
                getattr(old, attr), nn.Parameter
            ), attr
        for attr in ("reset_mechanism", "reset_delay", "output", "init_hidden", "inhibition"):
            assert getattr(new, attr) == getattr(old, attr), attr
        assert not _in_instances(old)
        assert _in_instances(new)
    assert net.lif1.reset_mechanism == "zero" and net.lif1.reset_delay is False
    assert isinstance(net.lif1.threshold, nn.Parameter)
    assert not isinstance(net.lif2.threshold, nn.Parameter)
    # the old parameters are no longer part of the model
    assert not any(p is old1.threshold for p in net.parameters())
    assert any(p is net.lif1.threshold for p in net.parameters())

    # global snnTorch resets no longer touch the removed neurons
    old_mem = old1.mem.clone()
    assert old_mem.abs().sum() > 0
    snn.Leaky.reset_hidden()
    assert torch.equal(old1.mem, old_mem)


def test_swap_keeps_training_flag_per_module():
    net = Net()
    net.train()
    net.lif2.eval()
    swap_neurons(net, {snn.Leaky: SingleStepLeaky})
    assert net.lif1.training is True
    assert net.lif2.training is False


def test_swap_keeps_float64():
    net = Net(num_steps=1).double()
    swap_neurons(net, {snn.Leaky: SingleStepLeaky})
    for lif in (net.lif1, net.lif2):
        assert lif.threshold.dtype == torch.float64
        assert lif.beta.dtype == torch.float64
        assert lif.mem.dtype == torch.float64
    spk, mem = net(_x(dtype=torch.float64))
    assert spk.dtype == mem.dtype == torch.float64


def test_swapped_tutorial_net_trains_one_step():
    net = Net(num_steps=1, lif1=LIF1_CFG)
    swap_neurons(net, {snn.Leaky: SingleStepLeaky})
    targets = torch.tensor([0, 1, 2, 3, 0, 1])

    def loss_of(model):
        spk_rec, mem_rec = model(_x(1))
        assert spk_rec.shape == mem_rec.shape == (1, BATCH, N_OUT)
        return SF.ce_rate_loss()(spk_rec, targets) + SF.mse_membrane_loss()(mem_rec, targets)

    changed = _train_step(net, loss_of)
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "lif1.threshold"):
        assert changed[name], f"{name} did not change"


def test_swap_sequential_init_hidden_net():
    net = _sequential(threshold=0.7)
    report = swap_neurons(net, {snn.Leaky: SingleStepLeaky})
    assert [name for name, _, _ in report] == ["1", "3"]
    assert type(net[1]) is SingleStepLeaky and type(net[3]) is SingleStepLeaky
    assert net[1].init_hidden and not net[1].output
    assert net[3].init_hidden and net[3].output
    assert torch.equal(net[3].threshold, torch.tensor(0.7))
    if hasattr(snn_utils, "_final_layer_check"):
        assert snn_utils._final_layer_check(net) == 2

    targets = torch.tensor([0, 1, 2, 3, 0, 1])

    def loss_of(model):
        snn_utils.reset(model)
        out = model(_x(2))
        assert isinstance(out, tuple) and len(out) == 2
        spk, mem = out
        return SF.mse_count_loss(correct_rate=1.0, incorrect_rate=0.0)(spk.unsqueeze(0), targets)

    changed = _train_step(net, loss_of)
    assert changed["0.weight"] and changed["2.weight"]
    snn_utils.reset(net)
    assert torch.count_nonzero(net[1].mem) == 0 and torch.count_nonzero(net[3].mem) == 0


def test_swap_inside_module_list_and_dict():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([snn.Leaky(beta=0.5), nn.Sequential(snn.Leaky(beta=0.5))])
            self.named = nn.ModuleDict({"a": snn.Leaky(beta=0.5, threshold=0.3)})

    h = Holder()
    report = swap_neurons(h, {snn.Leaky: SingleStepLeaky})
    assert sorted(name for name, _, _ in report) == ["layers.0", "layers.1.0", "named.a"]
    assert type(h.layers[0]) is SingleStepLeaky
    assert type(h.layers[1][0]) is SingleStepLeaky
    assert type(h.named["a"]) is SingleStepLeaky
    assert torch.equal(h.named["a"].threshold, torch.tensor(0.3))


# --------------------------------------------------------------------------------------------
# to_single_step: first step of the original equals the converted model
# --------------------------------------------------------------------------------------------


def _s2nn_net(**kw) -> Net:
    """Tutorial net whose Leaky neurons use the S2NN surrogate with snnTorch's tie rule."""
    lif1 = {"spike_grad": S2NN(fire_ge=False), "threshold": 0.3, **kw}
    lif2 = {"spike_grad": S2NN(fire_ge=False), "threshold": 0.1, **kw}
    return Net(num_steps=3, lif1=lif1, lif2=lif2)


@pytest.mark.parametrize("converter", ["snntorch", "top_level"])
@pytest.mark.parametrize("reset_delay", [True, False])
def test_to_single_step_equals_first_step_of_original(converter, reset_delay):
    original = _s2nn_net(reset_delay=reset_delay)
    converted = _s2nn_net(reset_delay=reset_delay)  # same seed: same weights
    assert torch.equal(converted.fc1.weight, original.fc1.weight)
    convert = to_single_step if converter == "snntorch" else bpsn_ext.to_single_step
    report = convert(converted)
    assert report.model is converted
    assert [name for name, _, _ in report] == ["lif1", "lif2"]
    assert type(converted.lif1) is SingleStepLeaky and type(converted.lif2) is SingleStepLeaky
    assert isinstance(converted.lif1.spike_grad, S2NN)
    converted.num_steps = 1

    x = _x(3)
    spk_o, mem_o = original(x)
    spk_c, mem_c = converted(x)
    assert spk_c.shape == (1, BATCH, N_OUT)
    assert 0 < spk_c.sum() < spk_c.numel(), "test input must both fire and not fire"
    assert torch.equal(spk_c[0], spk_o[0])
    torch.testing.assert_close(mem_c[0], mem_o[0], rtol=2e-5, atol=4e-6)
    # later steps of the original carry state, so they differ from the converted single step
    assert not torch.allclose(mem_o[1], mem_c[0])

    # gradients of one step agree too
    original.num_steps = 1
    w = torch.randn(1, BATCH, N_OUT, generator=torch.Generator().manual_seed(5))
    for model in (original, converted):
        model.zero_grad()
        spk, mem = model(x)
        ((spk + mem) * w).sum().backward()
    for (name, p_o), (_, p_c) in zip(original.named_parameters(), converted.named_parameters()):
        torch.testing.assert_close(p_c.grad, p_o.grad, rtol=2e-5, atol=4e-6, msg=name)
    assert original.fc1.weight.grad.abs().sum() > 0


def test_top_level_and_snntorch_to_single_step_agree_not_inplace():
    net = Net(num_steps=1)
    a = to_single_step(net, inplace=False).model
    b = bpsn_ext.to_single_step(net, inplace=False).model
    assert type(net.lif1) is snn.Leaky  # original untouched
    x = _x(4)
    for ya, yb in zip(a(x), b(x)):
        assert torch.equal(ya, yb)


def test_to_single_step_surrogate_arguments():
    net = Net()
    kept = net.lif1.spike_grad
    to_single_step(net, keep_surrogate=True)
    assert net.lif1.spike_grad is kept

    with pytest.raises(ValueError, match="unknown surrogate name 'keep'"):
        to_single_step(Net(), spike_grad="keep")  # the flag is keep_surrogate=True
    with pytest.raises(ValueError, match="either spike_grad or keep_surrogate"):
        to_single_step(Net(), spike_grad="atan", keep_surrogate=True)

    net = Net()
    kept = net.lif2.spike_grad
    bpsn_ext.to_single_step(net, keep_surrogate=True)
    assert isinstance(net.lif2, SingleStepLeaky) and net.lif2.spike_grad is kept

    net = Net()
    bpsn_ext.to_single_step(net, surrogate="atan")
    assert isinstance(net.lif1.spike_grad, ATan) and net.lif1.spike_grad.fire_ge is False


def test_top_level_to_single_step_refuses_model_without_neurons():
    with pytest.raises(ValueError, match="snnTorch neurons"):
        bpsn_ext.to_single_step(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


# --------------------------------------------------------------------------------------------
# Rules: exact type, predicates, errors, sequence neurons, atomicity, inplace=False
# --------------------------------------------------------------------------------------------


def test_exact_type_rule_leaves_user_subclass_alone():
    net = Net()
    net.lif2 = UserLeaky(beta=0.9)
    report = swap_neurons(net, {snn.Leaky: SingleStepLeaky})
    assert [name for name, _, _ in report] == ["lif1"]
    assert type(net.lif1) is SingleStepLeaky
    assert type(net.lif2) is UserLeaky

    only_user = nn.Sequential(UserLeaky(beta=0.5))
    with pytest.warns(UserWarning, match="no module matched"):
        assert to_single_step(only_user) == []
    assert type(only_user[0]) is UserLeaky


def test_predicate_rule_with_factory():
    net = Net()
    net.lif2 = UserLeaky(beta=0.9, threshold=0.4)
    seen = []

    def factory(old):
        seen.append(old)
        return SingleStepLeaky.from_neuron(old)

    rules = [(lambda m: isinstance(m, snn.Leaky), factory)]
    report = swap_neurons(net, rules)
    assert [name for name, _, _ in report] == ["lif1", "lif2"]
    assert len(seen) == 2
    assert type(net.lif2) is SingleStepLeaky
    assert torch.equal(net.lif2.threshold, torch.tensor(0.4))


def test_factory_returning_non_module_raises_and_changes_nothing():
    net = Net()
    old1 = net.lif1
    with pytest.raises(TypeError, match="expected an nn.Module"):
        swap_neurons(net, {snn.Leaky: lambda old: 42})
    assert net.lif1 is old1 and _in_instances(old1)


@pytest.mark.parametrize("rules", [{}, []])
def test_empty_rules_raise_value_error(rules):
    with pytest.raises(ValueError, match="empty"):
        swap_neurons(Net(), rules)


def test_class_without_from_neuron_raises_type_error():
    with pytest.raises(TypeError, match="from_neuron"):
        swap_neurons(Net(), {snn.Leaky: nn.ReLU})


def test_model_itself_matching_raises_value_error():
    lif = snn.Leaky(beta=0.5)
    with pytest.raises(ValueError, match="model itself"):
        swap_neurons(lif, {snn.Leaky: SingleStepLeaky})
    with pytest.raises(ValueError, match="model itself"):
        to_single_step(lif)


def test_sequence_neuron_refused_unless_allowed():
    net = _sequential()
    old = net[1]
    with pytest.raises(ValueError, match="allow_sequence_neurons"):
        swap_neurons(net, {snn.Leaky: lambda o: SequenceNeuron(float(o.threshold))})
    assert net[1] is old and type(net[3]) is snn.Leaky

    report = swap_neurons(
        net,
        {snn.Leaky: lambda o: SequenceNeuron(float(o.threshold))},
        allow_sequence_neurons=True,
    )
    assert [name for name, _, _ in report] == ["1", "3"]
    assert isinstance(net[1], SequenceNeuron) and isinstance(net[3], SequenceNeuron)
    assert not _in_instances(old)


def test_swap_is_atomic_when_one_check_fails():
    net = Net()
    old1, old2 = net.lif1, net.lif2
    rules = [
        (lambda m: m is old2, lambda o: SequenceNeuron()),
        (snn.Leaky, SingleStepLeaky),
    ]
    with pytest.raises(ValueError, match="allow_sequence_neurons"):
        swap_neurons(net, rules)
    assert net.lif1 is old1 and net.lif2 is old2
    assert _in_instances(old1) and _in_instances(old2)
    assert dict(net.named_modules())["lif1"] is old1


def test_inplace_false_leaves_original_untouched():
    net = Net(num_steps=1)
    old1, old2 = net.lif1, net.lif2
    x = _x(5)
    before = [t.clone() for t in net(x)]
    reset(net)  # mem is a non-leaf tensor after a forward pass

    report = swap_neurons(net, {snn.Leaky: SingleStepLeaky}, inplace=False)
    assert report.model is not net
    assert type(report.model.lif1) is SingleStepLeaky and type(report.model.lif2) is SingleStepLeaky
    assert [name for name, _, _ in report] == ["lif1", "lif2"]
    assert net.lif1 is old1 and net.lif2 is old2
    assert _in_instances(old1) and _in_instances(old2)
    assert report[0][1] is not old1  # the report refers to the copy's old neurons
    for a, b in zip(net(x), before):
        assert torch.equal(a, b)
    assert report.model.fc1.weight is not net.fc1.weight
    assert torch.equal(report.model.fc1.weight, net.fc1.weight)


def test_inplace_false_after_a_training_forward_pass():
    net = Net(num_steps=1)
    net(_x(6))  # a normal training-mode forward: lif.mem now has a grad_fn
    report = to_single_step(net, inplace=False)
    assert type(report.model.lif1) is SingleStepLeaky
    assert type(net.lif1) is snn.Leaky


# --------------------------------------------------------------------------------------------
# bpsn_ext.snntorch.reset / detach
# --------------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, neuron: nn.Module):
        super().__init__()
        self.fc = nn.Linear(N_IN, N_IN)
        self.lif = neuron

    def forward(self, x):
        return self.lif(self.fc(x))


def _nested_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        Block(snn.Leaky(beta=0.9, init_hidden=True)),
        Block(SingleStepLeaky(threshold=0.5, init_hidden=True)),
        nn.Linear(N_IN, N_OUT),
    )


def test_reset_reaches_nested_neurons_that_utils_reset_misses():
    net = _nested_net()
    other = snn.Leaky(beta=0.9, init_hidden=True)  # a neuron of another model
    x = _x(7)
    net(x)
    other(x)
    other_mem = other.mem.clone()
    nested = [net[0].lif, net[1].lif]
    assert all(m.mem.abs().sum() > 0 for m in nested)

    snn_utils.reset(net)  # only looks at direct children: misses the nested neurons
    assert all(m.mem.abs().sum() > 0 for m in nested)

    assert reset(net) is net
    for m in nested:
        assert m.mem.shape == (BATCH, N_IN)
        assert torch.count_nonzero(m.mem) == 0
        assert not m.mem.requires_grad
    assert torch.equal(other.mem, other_mem)


def test_reset_then_forward_gives_first_step_again():
    net = _nested_net()
    x = _x(8)
    first = net(x).detach().clone()
    second = net(x).detach()
    assert not torch.equal(first, second)  # the Leaky in net[0] carried state
    reset(net)
    assert torch.equal(net(x), first)


def test_detach_cuts_the_graph_of_nested_state():
    net = _nested_net()
    x = _x(9).requires_grad_()
    net(x)
    nested = [net[0].lif, net[1].lif]
    values = [m.mem.clone() for m in nested]
    assert all(m.mem.grad_fn is not None for m in nested)
    assert detach(net) is net
    for m, v in zip(nested, values):
        assert m.mem.grad_fn is None
        assert not m.mem.requires_grad
        assert torch.equal(m.mem.detach(), v.detach())
