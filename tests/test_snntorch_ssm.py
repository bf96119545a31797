"""snnTorch faces of the SSM layers: sequence form, step form, snnTorch's own reset."""

import pickle

import pytest

snn = pytest.importorskip("snntorch")

import torch  # noqa: E402
from snntorch import utils  # noqa: E402
from torch import nn  # noqa: E402

from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5  # noqa: E402
from bpsn_ext.snntorch import (  # noqa: E402
    BinaryS4DLeaky,
    GSULeaky,
    S4DLeaky,
    SpikingS5Leaky,
    reset,
)

F64 = torch.float64
PAIRS = [
    (S4DLeaky, S4D, {}),
    (BinaryS4DLeaky, BinaryS4D, {}),
    (GSULeaky, GSU, {}),
    (SpikingS5Leaky, SpikingS5, {}),
]
IDS = ["s4d", "binary", "gsu", "s5"]


def _pair(face_cls, core_cls, opts, **face_opts):
    torch.manual_seed(0)
    core = core_cls(4, 6, **opts).double().eval()
    face = face_cls(4, 6, **opts, **face_opts).double().eval()
    face.load_state_dict(core.state_dict())  # same keys: no missing or unexpected ones
    return face, core


def _x(T=9, B=2, seed=1):
    return torch.randn(T, B, 4, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("face_cls,core_cls,opts", PAIRS, ids=IDS)
def test_sequence_form_equals_the_core_layer_and_is_a_leaky(face_cls, core_cls, opts):
    face, core = _pair(face_cls, core_cls, opts)
    x = _x()
    assert isinstance(face, snn.Leaky) and face in snn.SpikingNeuron.instances
    assert torch.equal(face(x), core(x))
    lengths = torch.tensor([9, 5])
    assert torch.equal(face(x, mask=lengths), core(x, lengths))
    assert set(face.state_dict()) == set(core.state_dict())


@pytest.mark.parametrize("face_cls,core_cls,opts", PAIRS, ids=IDS)
def test_step_form_hidden_and_explicit_state(face_cls, core_cls, opts):
    face, _ = _pair(face_cls, core_cls, opts, init_hidden=True)
    x = _x()
    seq = face(x)
    steps = torch.stack([face(x[t]) for t in range(9)])
    assert torch.allclose(steps, seq, atol=1e-10)
    assert face.mem.is_complex() and face.mem.shape[0] == 2
    with pytest.raises(TypeError, match="should not be passed"):
        face(x[0], face.mem)
    explicit, _ = _pair(face_cls, core_cls, opts)
    mem, outs = explicit.init_leaky(), []
    for t in range(9):
        out, mem = explicit(x[t], mem)
        outs.append(out)
    assert torch.allclose(torch.stack(outs), seq, atol=1e-10)
    assert explicit.mem.numel() == 0  # the explicit loop leaves the hidden state alone


def test_output_records_follow_state_leaky():
    face, core = _pair(SpikingS5Leaky, SpikingS5, {}, output=True)
    x = _x()
    spk, mem = face(x)
    ref_spk, ref_mem = core.forward_with_membrane(x)
    assert torch.equal(spk, ref_spk) and torch.equal(mem, ref_mem)
    face, core = _pair(BinaryS4DLeaky, BinaryS4D, {}, output=True)
    out, spikes = face(x)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out, core(x))
    # snnTorch's tie rule by default (fires at > 0); any snnTorch spike_grad is accepted
    assert face.activation.fire_ge is False
    custom = BinaryS4DLeaky(4, 6, spike_grad=snn.surrogate.fast_sigmoid())
    assert custom(_x().float()).shape == (9, 2, 4)


def test_snntorch_utils_reset_clears_direct_children_in_both_versions():
    torch.manual_seed(0)
    layer = BinaryS4DLeaky(4, 6, init_hidden=True).double().eval()
    net = nn.Sequential(nn.Linear(4, 4).double(), layer)
    x = _x()
    first = torch.stack([net(x[t]) for t in range(9)])
    utils.reset(net)  # snnTorch's own reset
    assert layer.ssm_state is None and not layer.mem.requires_grad
    again = torch.stack([net(x[t]) for t in range(9)])
    assert torch.equal(first, again)  # started from zero again
    utils.reset(net)
    assert layer(torch.randn(5, 4, dtype=F64)).shape == (5, 4)  # a new batch size is fine


def test_nested_layers_need_a_direct_leaky_or_bpsn_reset():
    torch.manual_seed(0)
    layer = S4DLeaky(4, 6, init_hidden=True)
    nested = nn.Sequential(nn.Sequential(layer))
    layer(torch.randn(2, 4))
    utils.reset(nested)  # no direct Leaky child: snnTorch's reset does nothing here
    assert layer.ssm_state is not None
    with_leaky = nn.Sequential(nested, snn.Leaky(beta=0.5, init_hidden=True))
    with_leaky[1](torch.randn(2, 4))
    utils.reset(with_leaky)  # a direct Leaky child: every Leaky instance is reset
    assert layer.ssm_state is None
    layer(torch.randn(2, 4))
    reset(nested)  # bpsn_ext's reset is recursive and local
    assert layer.ssm_state is None and layer.mem.numel() == 0


def test_faces_pickle_and_refuse_streaming_when_bidirectional():
    layer = GSULeaky(4, 6, grad_mode="prf_surrogate")
    clone = pickle.loads(pickle.dumps(layer))
    x = _x().float()
    assert torch.equal(clone(x), layer(x))
    bi = S4DLeaky(4, 6, bidirectional=True, bidirectional_convention="s4")
    assert bi(x).shape == x.shape
    with pytest.raises(RuntimeError, match="no streaming form"):
        bi(x[0])
    with pytest.raises(TypeError, match="starts from a zero state"):
        S4DLeaky(4, 6)(x, torch.zeros(0))
