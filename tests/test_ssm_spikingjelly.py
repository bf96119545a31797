"""SpikingJelly adapters of the SSM layers (`bpsn_ext.spikingjelly.ssm_layers`),
both generations."""

import copy

import pytest
import torch

from bpsn_ext.kernels.dispatch import cupy_available
from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5

pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import base, functional, layer  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from bpsn_ext.spikingjelly._compat import SJ_GENERATION  # noqa: E402
from bpsn_ext.spikingjelly.ssm_layers import (  # noqa: E402
    BinaryS4DLayer,
    GSULayer,
    S4DLayer,
    SpikingS5Layer,
)

F64 = torch.float64
PAIRS = [(S4DLayer, S4D), (BinaryS4DLayer, BinaryS4D), (GSULayer, GSU), (SpikingS5Layer, SpikingS5)]
IDS = ["s4d", "binary_s4d", "gsu", "spiking_s5"]


def build(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(6, 8, **kw).to(F64).eval()


def seq(T=20, N=3, seed=1):
    return torch.randn(T, N, 6, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cls,core_cls", PAIRS, ids=IDS)
def test_single_step_mode_equals_multi_step_mode_and_reset_net(cls, core_cls):
    node = build(cls)
    assert isinstance(node, base.MemoryModule) and isinstance(node, core_cls)
    assert node.step_mode == "s" and tuple(node.supported_step_mode()) == ("s", "m")
    x = seq()
    lengths = torch.tensor([20, 11, 4])
    mask = torch.arange(20)[:, None] < lengths
    streamed = torch.stack([node(x[t], mask[t]) for t in range(20)])
    assert isinstance(node.ssm_state, torch.Tensor)
    functional.reset_net(node)
    assert node.ssm_state is None
    node.step_mode = "m"
    parallel = node(x, lengths)
    assert node.ssm_state is None  # 'm' without carry_state: every call is a whole sequence
    assert (parallel - streamed).abs().max() < 1e-12
    # after reset_net, streaming starts over and gives the same outputs again
    node.step_mode = "s"
    node(x[0])
    functional.reset_net(node)
    again = torch.stack([node(x[t], mask[t]) for t in range(20)])
    assert (again - streamed).abs().max() < 1e-12


@pytest.mark.parametrize("cls,core_cls", PAIRS, ids=IDS)
def test_same_parameters_and_outputs_as_the_core_module(cls, core_cls):
    core = build(core_cls)
    node = build(cls, seed=5, step_mode="m")
    assert list(node.state_dict()) == list(core.state_dict())
    node.load_state_dict(core.state_dict())
    x = seq()
    assert torch.equal(node(x), core(x))
    node.step_mode = "s"
    for t in range(3):
        node(x[t])
    assert list(node.state_dict()) == list(core.state_dict())  # the state is a memory
    assert list(node._memories) == ["ssm_state"]


@pytest.mark.parametrize("cls,core_cls", PAIRS, ids=IDS)
def test_carry_state_chunks_equal_the_whole_sequence(cls, core_cls):
    node = build(cls, step_mode="m", carry_state=True)
    x = seq()
    whole = node(x)
    functional.reset_net(node)
    chunks = torch.cat([node(x[:7]), node(x[7:])])
    assert (chunks - whole).abs().max() < 1e-12
    state_after_chunks = node.ssm_state
    functional.reset_net(node)
    node.step_mode = "s"
    for t in range(20):
        node(x[t])
    assert (node.ssm_state - state_after_chunks).abs().max() < 1e-12


def test_inside_a_spikingjelly_network_in_both_step_modes():
    torch.manual_seed(0)
    net = (
        torch.nn.Sequential(
            layer.Linear(4, 6, step_mode="m"),
            BinaryS4DLayer(6, 8, step_mode="m"),
            SpikingS5Layer(6, 8, step_mode="m"),
            layer.Linear(6, 2, step_mode="m"),
        )
        .to(F64)
        .eval()
    )
    x = torch.randn(15, 2, 4, dtype=F64)
    parallel = net(x)
    functional.set_step_mode(net, "s")
    streamed = torch.stack([net(x[t]) for t in range(15)])
    assert (streamed - parallel).abs().max() < 1e-12
    functional.detach_net(net)
    assert not net[1].ssm_state.requires_grad
    functional.reset_net(net)
    assert net[1].ssm_state is None and net[2].ssm_state is None


def test_training_through_the_parallel_form_reaches_every_parameter():
    torch.manual_seed(0)
    node = GSULayer(6, 8, step_mode="m", grad_mode="prf_surrogate")
    x = torch.randn(12, 2, 6)
    (node(x) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in node.parameters())
    functional.reset_net(node)  # loss -> reset -> backward order is harmless (no memory used)


def test_spikingjelly_surrogate_objects():
    x = seq().requires_grad_(True)
    ours = build(BinaryS4DLayer, step_mode="m")
    theirs = build(BinaryS4DLayer, step_mode="m", surrogate_function=sj_surrogate.ATan())
    out_ours, out_theirs = ours(x), theirs(x)
    assert torch.equal(out_ours, out_theirs)
    g_ours = torch.autograd.grad(out_ours.sum(), x)[0]
    g_theirs = torch.autograd.grad(out_theirs.sum(), x)[0]
    assert torch.allclose(g_ours, g_theirs, atol=1e-12)
    sig = build(SpikingS5Layer, step_mode="m", surrogate_function=sj_surrogate.Sigmoid())
    assert isinstance(sig.activation, sj_surrogate.Sigmoid)


def test_bidirectional_layer_is_multi_step_only():
    node = build(S4DLayer, step_mode="m", bidirectional=True)
    assert tuple(node.supported_step_mode()) == ("m",)
    with pytest.raises(ValueError):
        functional.set_step_mode(torch.nn.Sequential(node), "s")
    with pytest.raises(ValueError, match="use step_mode='m'"):
        S4DLayer(6, 8, bidirectional=True)
    with pytest.raises(ValueError, match="carry_state=True needs a causal layer"):
        S4DLayer(6, 8, bidirectional=True, step_mode="m", carry_state=True)
    x = seq()
    assert node(x).shape == x.shape


def test_backend_argument():
    node = build(S4DLayer, step_mode="m")
    assert node.backend == "torch" and node.supported_backends == ("torch", "cupy")
    x = seq()
    auto = build(S4DLayer, step_mode="m", backend="auto")
    assert torch.equal(auto(x), node(x))  # auto on CPU: the torch code
    with pytest.raises(NotImplementedError, match="not a supported backend"):
        node.backend = "triton"
    if cupy_available():
        node.backend = "cupy"
        with pytest.raises(RuntimeError, match="CUDA tensors only"):
            node(x)
    else:
        with pytest.raises(ImportError, match="needs CuPy"):
            S4DLayer(6, 8, backend="cupy")
        with pytest.raises(ImportError, match="needs CuPy"):
            node.backend = "cupy"
    assert node.backend == "torch"


@pytest.mark.skipif(SJ_GENERATION != 1, reason="functional.set_backend exists in 0.0.0.0.14")
def test_set_backend_on_legacy_spikingjelly():
    net = torch.nn.Sequential(layer.Linear(6, 6), SpikingS5Layer(6, 8))
    functional.set_backend(net, "torch")
    assert net[1].backend == "torch"


@pytest.mark.skipif(SJ_GENERATION != 2, reason="functional forwards exist in SpikingJelly 2.0")
def test_functional_forward_is_pure():
    node = build(S4DLayer)
    x = seq()
    fn = base.to_functional_forward(node)
    (y0,), (s0,) = fn((x[0],), (None,))
    (y1,), (s1,) = fn((x[1],), (s0,))
    assert node.ssm_state is None  # the module's memory is untouched
    assert torch.equal(y0, node(x[0])) and torch.equal(y1, node(x[1]))
    assert torch.equal(s1, node.ssm_state)
    node.step_mode = "m"
    node.carry_state = True
    (ym,), (sm,) = node.functional_forward((x[:2],), (None,))
    assert (ym - torch.stack([y0, y1])).abs().max() < 1e-12 and (sm - s1).abs().max() < 1e-12


def test_deepcopy_after_reset_and_repr():
    node = build(SpikingS5Layer)
    node(seq()[0])
    functional.reset_net(node)
    clone = copy.deepcopy(node)
    assert clone.ssm_state is None and torch.equal(clone.D, node.D)
    assert "step_mode='s'" in repr(node) and "carry_state=False" in repr(node)
