"""SingleStepNode obeys SpikingJelly's neuron contract (both generations) and is the S3NN neuron."""

import copy
import io

import pytest
import torch

pytest.importorskip("spikingjelly")
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from bpsn_ext.spikingjelly import SJ_GENERATION, SingleStepNode  # noqa: E402
from bpsn_ext.surrogate import S2NN  # noqa: E402


def drive(x, v_threshold=1.0):
    """Inputs around the threshold, none exactly on it."""
    return (x * 1.5 + v_threshold + 1e-3).requires_grad_(True)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_equals_one_if_step_from_rest(v_reset):
    torch.manual_seed(0)
    x = drive(torch.randn(8, 5))
    ours = SingleStepNode(v_threshold=1.0, v_reset=v_reset)
    ref = neuron.IFNode(v_threshold=1.0, v_reset=v_reset, surrogate_function=sj_surrogate.S2NN())
    up = torch.rand(8, 5)
    s1 = ours(x)
    (g1,) = torch.autograd.grad(s1, x, up)
    s2 = ref(x)
    (g2,) = torch.autograd.grad(s2, x, up)
    assert torch.equal(s1, s2)
    assert torch.equal(g1, g2)
    torch.testing.assert_close(ours.v, ref.v, rtol=2e-5, atol=4e-6)


def test_gradient_is_s2nn_at_pre_spike_value():
    x = drive(torch.randn(64), v_threshold=0.5)
    node = SingleStepNode(v_threshold=0.5)
    s = node(x)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.equal(g, S2NN().derivative(x.detach() - 0.5))
    assert torch.isfinite(g).all() and (g != 0).all()


def test_multi_step_is_independent_single_steps():
    torch.manual_seed(1)
    x = drive(torch.randn(4, 3, 6))
    node = SingleStepNode(step_mode="m", store_v_seq=True)
    s = node(x)
    assert s.shape == x.shape and node.v.shape == x.shape[1:]
    ref = neuron.IFNode(surrogate_function=sj_surrogate.S2NN())
    for t in range(x.shape[0]):
        functional.reset_net(ref)
        assert torch.equal(s[t], ref(x[t]))
    # looped single-step mode gives the same spikes: nothing carries over between steps
    loop = SingleStepNode(step_mode="s")
    assert torch.equal(torch.stack([loop(xt) for xt in x]), s)
    assert node.v_seq.shape == x.shape
    assert torch.equal(node.v_seq[-1], node.v)


def test_step_mode_contract():
    node = SingleStepNode()
    assert isinstance(node, base.MemoryModule) and isinstance(node, neuron.BaseNode)
    assert tuple(node.supported_step_mode()) == ("s", "m")
    net = torch.nn.Sequential(layer.Linear(4, 3), node)
    functional.set_step_mode(net, "m")
    assert node.step_mode == "m"
    assert net(torch.randn(2, 5, 4)).shape == (2, 5, 3)


def test_sj_layers_and_surrogates_interoperate():
    net = torch.nn.Sequential(
        layer.Linear(6, 8, step_mode="m"),
        SingleStepNode(surrogate_function=sj_surrogate.ATan(), step_mode="m"),
        layer.Linear(8, 2, step_mode="m"),
    )
    x = torch.randn(3, 4, 6)
    y = net(x)
    y.sum().backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def test_bad_input_gives_clear_errors():
    with pytest.raises(TypeError, match="v_threshold must be a Python float, got int 1"):
        SingleStepNode(v_threshold=1)
    with pytest.raises(TypeError, match="v_reset must be a Python float"):
        SingleStepNode(v_reset="0")
    with pytest.raises(ValueError, match="step_mode must be 's' or 'm'"):
        SingleStepNode(step_mode="x")
    with pytest.raises(ValueError, match="unknown surrogate name 'relu'"):
        SingleStepNode(surrogate_function="relu")
    with pytest.raises(ValueError, match="supports backend in"):
        SingleStepNode(backend="cupy")
    node = SingleStepNode(step_mode="m")
    with pytest.raises(ValueError, match=r"\[T, N, \*\] in step mode 'm'"):
        node(torch.randn(5))
    with pytest.raises(TypeError, match="floating-point"):
        SingleStepNode()(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError):
        node.step_mode = "q"


def test_reset_semantics():
    node = SingleStepNode(step_mode="m", store_v_seq=True)
    x = drive(torch.randn(3, 4, 2))
    loss = node(x).sum()
    functional.reset_net(node)  # scalar reset values: resetting before backward is safe
    loss.backward()
    assert node.v == 0.0 and isinstance(node.v, float)
    if SJ_GENERATION == 2:
        assert node.v_seq is None
    # another batch size works after the reset
    assert node(torch.randn(3, 7, 2)).shape == (3, 7, 2)


def test_persistence_and_dtype():
    node = SingleStepNode(v_threshold=0.25, step_mode="m")
    node(torch.randn(2, 3, 3))
    assert list(node.state_dict()) == []  # memories (v) are not part of the state dict
    node(torch.randn(2, 3))
    functional.reset_net(node)
    clone = copy.deepcopy(node)
    buf = io.BytesIO()
    torch.save(node, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(2, 3, 4)
    assert torch.equal(clone(x), loaded(x))
    node = node.to(torch.float64)
    functional.reset_net(node)
    out = node(x.double())
    assert out.dtype == torch.float64 and node.v.dtype == torch.float64


def test_detach_reset_only_changes_membrane_gradient():
    x = drive(torch.randn(10))
    a = SingleStepNode(detach_reset=True, keep_v_graph=True)
    b = SingleStepNode(detach_reset=False, keep_v_graph=True)
    sa, sb = a(x), b(x)
    assert torch.equal(sa, sb)
    (ga,) = torch.autograd.grad(a.v.sum(), x)
    (gb,) = torch.autograd.grad(b.v.sum(), x)
    # detached reset: v = (1 - s) * x -> dv/dx = 1 - s ; attached adds -x * g'(x - 1)
    assert torch.equal(ga, 1 - sa.detach())
    torch.testing.assert_close(gb, 1 - sb.detach() - x.detach() * S2NN().derivative(x.detach() - 1))
    # by default v is stored without a graph (nothing reads it later; it would only hold memory)
    c = SingleStepNode()
    c(x)
    assert c.v.grad_fn is None and not c.v.requires_grad


@pytest.mark.skipif(SJ_GENERATION != 2, reason="functional forwards exist in SpikingJelly 2.0")
def test_functional_forward_is_pure():
    node = SingleStepNode(step_mode="m")
    x = torch.randn(3, 2, 4)
    node(x)
    before = node.v.clone()
    (out,), (v,) = node.functional_forward((x * 2,), (node.v,))
    assert torch.equal(node.v, before)
    assert torch.equal(out, node(x * 2)) and torch.equal(v, node.v)
    net = torch.nn.Sequential(layer.Linear(4, 4, step_mode="m"), node)
    functional.reset_net(net)
    f = base.to_functional_forward(net)
    outputs, states = f((x,), tuple(base.extract_memories(net)))
    assert node.v == 0.0  # the module's own state is untouched
    assert torch.equal(outputs[0] if isinstance(outputs, tuple) else outputs, net(x))


@pytest.mark.skipif(SJ_GENERATION != 1, reason="backend API exists only in 0.0.0.0.14")
def test_legacy_backend_api():
    net = torch.nn.Sequential(layer.Linear(3, 3), SingleStepNode())
    functional.set_step_mode(net, "m")
    functional.set_backend(net, "torch")
    assert net[1].backend == "torch" and net[1].supported_backends == ("torch",)
    functional.set_backend(net, "cupy")  # SpikingJelly warns and keeps torch
    assert net[1].backend == "torch"
