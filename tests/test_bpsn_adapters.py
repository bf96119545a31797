"""BPSN in SpikingJelly (BPSNNode) and snnTorch (bpsn_ext.snntorch.BPSN), backend dispatch."""

import copy
import io

import pytest
import torch

import bpsn_ext
from bpsn_ext import BPSN
from bpsn_ext.core.dispatch import cupy_available, resolve_backend

sj = pytest.importorskip("spikingjelly.activation_based")
snn = pytest.importorskip("snntorch")
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from bpsn_ext.snntorch import BPSN as SnnBPSN  # noqa: E402
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
    node, s = BPSNNode(5), SnnBPSN(5)
    node.load_state_dict(core.state_dict())
    s.neuron.load_state_dict(core.state_dict())
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
    assert isinstance(node, base.MemoryModule) and node.step_mode == "m"
    assert tuple(node.supported_step_mode()) == ("m",)
    net = torch.nn.Sequential(layer.Linear(4, 4, step_mode="m"), node)
    functional.set_step_mode(net, "m")
    with pytest.raises(ValueError, match="multi-step only"):
        functional.set_step_mode(net, "s")
    assert node.step_mode == "m"
    with pytest.raises(ValueError, match="multi-step only"):
        BPSNNode(4, step_mode="s")


def test_spikingjelly_surrogates_store_v_seq_and_reset():
    node = BPSNNode(3, surrogate_function=sj_surrogate.Sigmoid(), store_v_seq=True)
    x = (torch.randn(6, 2, 3) + 0.5).requires_grad_(True)
    out = node(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert node.v_seq.shape == x.shape
    functional.reset_net(node)
    assert node.v_seq is None
    assert list(node.state_dict()) == ["decay_f_logit", "decay_b_logit", "v_threshold"]


def test_reset_net_does_not_warn(caplog):
    # SpikingJelly 0.0.0.0.14 logs a warning for modules with reset() that are no MemoryModule
    net = torch.nn.Sequential(layer.Linear(3, 3, step_mode="m"), BPSNNode(3, store_v_seq=True))
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
    assert resolve_backend("auto", x) == "torch"  # CPU tensors always use torch
    with pytest.raises(RuntimeError, match="backend='cupy' runs on CUDA tensors only"):
        resolve_backend("cupy", x)
    monkeypatch.setenv("BPSN_EXT_CUDA_IMPLEMENTATION", "torch")
    assert resolve_backend("cupy", x) == "torch"  # the override forces the reference
    monkeypatch.setenv("BPSN_EXT_CUDA_IMPLEMENTATION", "triton")
    with pytest.raises(ValueError, match="BPSN_EXT_CUDA_IMPLEMENTATION must be one of"):
        resolve_backend("auto", x)
    monkeypatch.delenv("BPSN_EXT_CUDA_IMPLEMENTATION")
    with pytest.raises(NotImplementedError, match="not a supported backend"):
        node.backend = "triton"
    BPSNNode(2, backend="auto")(x)
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
    assert isinstance(s, snn.SpikingNeuron) and s.threshold is s.neuron.v_threshold
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
    assert net.lif.neuron.decay_f.item() == pytest.approx(0.8, abs=1e-6)
    assert net.lif.threshold.item() == pytest.approx(0.7)
    assert net(torch.randn(7, 2, 4)).shape == (7, 2, 4)


def test_register_exposes_bpsn_in_both_frameworks():
    bpsn_ext.register()
    assert neuron.BPSNNode is BPSNNode
    assert snn.BPSN is SnnBPSN
