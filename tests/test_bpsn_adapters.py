"""BPSN in SpikingJelly (BPSNNode) and snnTorch (bpsn_ext.snntorch.BPSNLeaky), backend dispatch."""

import copy
import io

import pytest
import torch

import bpsn_ext
from bpsn_ext import BPSN
from bpsn_ext.kernels import dispatch
from bpsn_ext.kernels.dispatch import cupy_available

sj = pytest.importorskip("spikingjelly.activation_based")
snn = pytest.importorskip("snntorch")
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from bpsn_ext.snntorch import BPSNLeaky as SnnBPSN  # noqa: E402
from bpsn_ext.snntorch import swap_neurons as snn_swap  # noqa: E402
from bpsn_ext.spikingjelly import SJ_GENERATION, BPSNNode, swap_neurons  # noqa: E402


def trained_core(C=5):
    core = BPSN(C)
    with torch.no_grad():
        for p in core.parameters():
            p.uniform_(-0.5, 0.5)
        core.v_threshold.uniform_(0.6, 1.2)
    return core


def test_same_weights_same_spikes_in_core_spikingjelly_and_snntorch():
    core = trained_core()
    node, s = BPSNNode(5, step_mode="m"), SnnBPSN(5)
    node.load_state_dict(core.state_dict())
    s.load_state_dict(core.state_dict())  # the same keys in all three classes
    assert list(node.state_dict()) == list(s.state_dict()) == list(core.state_dict())
    core.load_state_dict(s.state_dict())
    x = torch.randn(17, 3, 5) + 0.4  # continuous values: no exact ties between >= and >
    lengths = torch.tensor([17, 11, 4])
    ref = core(x, lengths)
    assert ref.sum() > 0
    assert torch.equal(node(x, lengths), ref)
    spk, mem = s(x, lengths)
    assert torch.equal(spk, ref)
    assert torch.equal(mem, core.forward_with_membrane(x, lengths)[1])


def test_spikingjelly_step_mode_contract():
    node = BPSNNode(4)
    assert isinstance(node, neuron.BaseNode) and isinstance(node, base.MemoryModule)
    assert node.step_mode == "m" and tuple(node.supported_step_mode()) == ("m",)
    net = torch.nn.Sequential(layer.Linear(4, 4), node, layer.Linear(4, 4))
    x = torch.randn(6, 2, 4)
    with pytest.raises(ValueError, match=r"never put in step mode 'm'.*set_step_mode\(net, 'm'\)"):
        net(x)
    functional.set_step_mode(net, "m")
    assert net(x).shape == x.shape
    # switching to 's' completes (no half-switched model) and the node refuses to run
    functional.set_step_mode(net, "s")
    assert [net[0].step_mode, net[2].step_mode] == ["s", "s"]
    with pytest.raises(ValueError, match="switched to step mode 's'"):
        net(x[0])
    functional.set_step_mode(net, "m")
    assert net(x).shape == x.shape
    with pytest.raises(ValueError, match="multi-step only"):
        BPSNNode(4, step_mode="s")


def test_spikingjelly_surrogates_store_v_seq_and_reset():
    node = BPSNNode(3, surrogate_function=sj_surrogate.Sigmoid(), store_v_seq=True, step_mode="m")
    x = (torch.randn(6, 2, 3) + 0.5).requires_grad_(True)
    out = node(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert node.v_seq.shape == x.shape
    assert torch.equal(node.v, node.v_seq[-1].detach()) and node.v.grad_fn is None
    functional.reset_net(node)
    assert node.v_seq is None and node.v == 0.0
    assert list(node.state_dict()) == ["decay_f_logit", "decay_b_logit", "v_threshold"]


def test_reset_net_does_not_warn(caplog):
    # SpikingJelly 0.0.0.0.14 logs a warning for modules with reset() that are no MemoryModule
    net = torch.nn.Sequential(
        layer.Linear(3, 3, step_mode="m"), BPSNNode(3, store_v_seq=True, step_mode="m")
    )
    net(torch.randn(5, 2, 3))
    with caplog.at_level("WARNING"):
        functional.reset_net(net)
    assert net[1].v_seq is None
    assert not [r for r in caplog.records if "MemoryModule" in r.getMessage()]


def test_from_neuron_keeps_explicit_surrogate_and_threshold():
    old = neuron.LIFNode(tau=4.0, v_threshold=0.7, step_mode="m")
    new = BPSNNode.from_neuron(old, surrogate_function=sj_surrogate.Sigmoid(), v_threshold=0.3)
    assert isinstance(new.surrogate_function, sj_surrogate.Sigmoid)
    assert float(new.v_threshold.detach()) == pytest.approx(0.3)
    assert BPSNNode.from_neuron(old).surrogate_function is old.surrogate_function
    leaky = snn.Leaky(beta=0.8, threshold=0.9)
    grad = snn.surrogate.fast_sigmoid()
    s = SnnBPSN.from_neuron(leaky, spike_grad=grad, output=True)
    assert s.output is True and float(s.threshold.detach()) == pytest.approx(0.9)


def test_backend_selection_and_errors(monkeypatch):
    node = BPSNNode(2)
    assert node.backend == "torch" and node.supported_backends == ("torch", "cupy")
    x = torch.randn(3, 1, 2)
    node.method = "chunked"
    assert node.implementation(x, "auto") == "torch"  # CPU tensors never run CuPy
    with pytest.raises(RuntimeError, match="backend='cupy' runs on CUDA tensors only"):
        node.implementation(x, "cupy")
    monkeypatch.setenv("BPSN_EXT_BPSN_IMPLEMENTATION", "torch")
    dispatch.read_environment()  # the variables are read once, until read again
    assert BPSN(2).implementation(x) == "torch"  # the override forces the reference
    monkeypatch.setenv("BPSN_EXT_BPSN_IMPLEMENTATION", "cuda")
    with pytest.raises(ValueError, match="BPSN_EXT_BPSN_IMPLEMENTATION must be one of"):
        dispatch.read_environment()
    monkeypatch.delenv("BPSN_EXT_BPSN_IMPLEMENTATION")
    dispatch.read_environment()
    with pytest.raises(NotImplementedError, match="not a supported backend"):
        node.backend = "triton"
    BPSNNode(2, backend="auto", step_mode="m")(x)
    if not cupy_available():
        with pytest.raises(ImportError, match="pip install 'bpsn-ext\\[cupy\\]'"):
            BPSNNode(2, backend="cupy")


@pytest.mark.skipif(SJ_GENERATION != 1, reason="functional.set_backend exists in 0.0.0.0.14")
def test_set_backend_on_legacy_spikingjelly():
    net = torch.nn.Sequential(layer.Linear(2, 2), BPSNNode(2))
    functional.set_step_mode(net, "m")
    functional.set_backend(net, "torch")
    assert net[1].backend == "torch"
    if cupy_available():
        functional.set_backend(net, "cupy")
        assert net[1].backend == "cupy"
    else:
        with pytest.raises(ImportError, match="needs CuPy"):
            functional.set_backend(net, "cupy")


def test_swap_bpsn_into_multi_step_spikingjelly_model_and_train():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Linear(6, 8), neuron.LIFNode(tau=4.0, v_threshold=0.8), layer.Linear(8, 3)
    )
    functional.set_step_mode(net, "m")
    report = swap_neurons(net, {neuron.LIFNode: BPSNNode})
    assert len(report) == 1 and isinstance(net[1], BPSNNode)
    assert net[1].decay_f.item() == pytest.approx(0.75)  # 1 - 1/tau
    assert net[1].v_threshold.item() == pytest.approx(0.8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(10, 4, 6) * 2
    before = net[1].decay_b_logit.detach().clone()
    loss = net(x).mean(0).pow(2).sum()
    loss.backward()
    opt.step()
    assert not torch.equal(before, net[1].decay_b_logit)
    single = torch.nn.Sequential(layer.Linear(6, 8), neuron.LIFNode())
    with pytest.raises(ValueError, match="step mode 's'"):
        swap_neurons(single, {neuron.LIFNode: BPSNNode})


def test_snntorch_call_conventions_and_persistence():
    x = torch.randn(9, 2, 4) + 0.5
    spk = SnnBPSN(4, init_hidden=True)(x)
    assert isinstance(spk, torch.Tensor) and spk.shape == x.shape
    spk, mem = SnnBPSN(4, init_hidden=True, output=True)(x)
    assert mem.shape == x.shape
    s = SnnBPSN(4)
    assert isinstance(s, snn.SpikingNeuron) and isinstance(s, BPSN)
    assert s.threshold is s.v_threshold
    buf = io.BytesIO()
    torch.save(s, buf)  # the default spike_grad pickles (snnTorch's closures do not)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded(x)[0], s(x)[0])
    assert torch.equal(copy.deepcopy(s)(x)[0], s(x)[0])
    # mask: padded steps are silent and do not influence real ones
    lengths = torch.tensor([9, 5])
    out = s(x, lengths)[0]
    junk = x.clone()
    junk[5:, 1] = 100.0
    assert torch.equal(s(junk, lengths)[0], out) and (out[5:, 1] == 0).all()
    # spike records [T, B, C] feed snnTorch's losses
    from snntorch import functional as SF

    xg = x.clone().requires_grad_(True)
    loss = SF.ce_rate_loss()(SnnBPSN(4)(xg)[0], torch.tensor([1, 3]))
    loss.backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_snntorch_swap_needs_explicit_opt_in():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.lif = snn.Leaky(beta=0.8, threshold=0.7, init_hidden=True)

        def forward(self, x_seq):  # receives the whole [T, B, C] sequence
            return self.lif(self.fc(x_seq))

    net = Net()
    with pytest.raises(ValueError, match="allow_sequence_neurons=True"):
        snn_swap(net, {snn.Leaky: SnnBPSN})
    assert type(net.lif) is snn.Leaky
    snn_swap(net, {snn.Leaky: SnnBPSN}, allow_sequence_neurons=True)
    assert isinstance(net.lif, SnnBPSN)
    assert net.lif.decay_f.item() == pytest.approx(0.8, abs=1e-6)
    assert net.lif.threshold.item() == pytest.approx(0.7)
    assert net(torch.randn(7, 2, 4)).shape == (7, 2, 4)


def test_register_exposes_bpsn_in_both_frameworks():
    bpsn_ext.register()
    assert neuron.BPSNNode is BPSNNode
    assert snn.BPSNLeaky is SnnBPSN


def test_bpsn_node_is_found_by_spikingjelly_monitors_and_keeps_v():
    try:
        from spikingjelly.activation_based import monitor
    except ImportError as exc:  # 0.0.0.0.14's monitor imports tensorboard
        pytest.skip(f"spikingjelly's monitor does not import here: {exc}")

    net = torch.nn.Sequential(layer.Linear(3, 4), neuron.LIFNode(), layer.Linear(4, 4), BPSNNode(4))
    functional.set_step_mode(net, "m")
    mon = monitor.OutputMonitor(net, neuron.BaseNode)
    x = torch.randn(6, 2, 3)
    out = net(x)
    assert len(mon.records) == 2 and torch.equal(mon.records[1], out)
    mon.remove_hooks()
    assert net[3].v.shape == (2, 4)  # the fused membrane of the last step
    functional.reset_net(net)
    assert net[3].v == 0.0


@pytest.mark.skipif(SJ_GENERATION != 2, reason="the neuron-config registry is SpikingJelly 2.0's")
def test_register_makes_bpsn_node_a_spikingjelly_neuron_config():
    from spikingjelly.activation_based.distributed.vision import config

    bpsn_ext.register()
    path = f"{BPSNNode.__module__}.{BPSNNode.__qualname__}"
    cls, kwargs = config._resolve_neuron_config(
        config.NeuronConfig(class_path=path, kwargs={"tau": 4.0})
    )
    assert cls is BPSNNode
    node = cls(**kwargs, step_mode="m")
    assert node.decay_f.item() == pytest.approx(0.75)


def test_lif_keywords_map_or_warn_once():
    from bpsn_ext.util.warn import forget_warnings

    forget_warnings()
    assert BPSNNode(tau=4.0).decay_b.item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="tau must be > 1"):
        BPSNNode(tau=1.0)
    with pytest.raises(ValueError, match="tau or decay_init, not both"):
        BPSNNode(tau=2.0, decay_init=0.3)
    with pytest.warns(UserWarning, match=r"decay_input=...\) has no effect"):
        BPSNNode(decay_input=True)
    with pytest.warns(UserWarning, match=r"v_reset=...\) has no effect"):
        BPSNNode(v_reset=0.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BPSNNode(decay_input=False)  # the second time: no warning
    from bpsn_ext.spikingjelly import SingleStepNode

    with pytest.warns(UserWarning, match=r"SingleStepNode\(tau=...\) has no effect"):
        SingleStepNode(tau=2.0)
    # snnTorch's Leaky keywords
    s = SnnBPSN(beta=0.9, learn_beta=False)
    assert s.decay_f.item() == pytest.approx(0.9) and not s.decay_f_logit.requires_grad
    with pytest.raises(ValueError, match=r"beta must lie in \(0, 1\)"):
        SnnBPSN(beta=1.0)
    with pytest.warns(UserWarning, match=r"reset_mechanism=...\) has no effect"):
        SnnBPSN(reset_mechanism="subtract")
