"""The Triton BPSN kernels against the torch recurrence (``method="loop"``).

They run the very kernel code a GPU runs, on CPU tensors, under Triton's interpreter:
``TRITON_INTERPRET=1 python -m pytest -k triton`` (``scripts/dev.sh test`` does this in its
first environment).  Without the interpreter (or without Triton) they are skipped.
"""

import copy
import importlib.util
import os

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.surrogate import S2NN, FastSigmoid, Sigmoid

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None,
    reason="the Triton kernels run on CPU only under Triton's interpreter: install "
    "bpsn-ext[triton] and set TRITON_INTERPRET=1 (scripts/dev.sh test does)",
)


def _pair(C, dtype=torch.float64, **options):
    """A loop reference and the same neuron (same parameters) on the Triton kernels."""
    torch.manual_seed(0)
    ref = BPSN(C, method="loop", **options).to(dtype)
    with torch.no_grad():
        for p in ref.parameters():  # per-channel values, so a channel mix-up shows
            p.add_(0.3 * torch.randn_like(p))
    tri = copy.deepcopy(ref)
    tri.method = "triton"
    return ref, tri


def _compare(ref, tri, x, mask=None, tol=1e-5):
    """Spikes bitwise equal, membranes equal, input and parameter gradients within tol."""
    xr, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    sr, mr = ref.forward_with_membrane(xr, mask)
    st, mt = tri.forward_with_membrane(xt, mask)
    assert sr.sum() > 0 and (sr == 0).any(), "the input should make some spikes, not all"
    assert torch.equal(sr, st)
    torch.testing.assert_close(mt, mr, rtol=0, atol=tol)
    w1, w2 = torch.randn_like(sr), torch.randn_like(sr)
    ((sr * w1).sum() + (mr * w2).sum()).backward()
    ((st * w1).sum() + (mt * w2).sum()).backward()
    torch.testing.assert_close(xt.grad, xr.grad, rtol=0, atol=tol)
    for (name, pr), pt in zip(ref.named_parameters(), tri.parameters(), strict=True):
        assert pt.grad is not None, name
        torch.testing.assert_close(pt.grad, pr.grad, rtol=tol, atol=tol, msg=name)


def _tokens(T=13, N=3, C=6):
    x = 1.2 * torch.randn(T, N, C, dtype=torch.float64) + 0.6
    mask = torch.arange(T)[:, None] < torch.tensor([T, 9, 4])[None, :]
    x[~mask] = float("nan")  # padding never leaks into real steps
    return x, mask


@pytest.mark.parametrize("runaway", ["refractory", "none", "soft_reset"])
def test_triton_masked_tokens_equal_loop(runaway):
    ref, tri = _pair(6, runaway=runaway)
    x, mask = _tokens()
    _compare(ref, tri, x, mask)


@pytest.mark.parametrize("runaway", ["refractory", "none", "soft_reset"])
def test_triton_conv_input_equal_loop(runaway):
    ref, tri = _pair(4, runaway=runaway, refractory_steps=2)
    x = 1.2 * torch.randn(7, 2, 4, 3, 3, dtype=torch.float64) + 0.6
    _compare(ref, tri, x)


@pytest.mark.parametrize("fusion", ["gate", "avg", "sum"])
def test_triton_fusions_equal_loop(fusion):
    ref, tri = _pair(5, fusion=fusion, runaway="none")
    x, mask = _tokens(C=5)
    _compare(ref, tri, x, mask)


def test_triton_gate_soft_reset_detach_and_channel_last_axis():
    ref, tri = _pair(4, fusion="gate", runaway="soft_reset", detach_reset=True, channel_dim=3)
    x = 1.2 * torch.randn(9, 2, 5, 4, dtype=torch.float64) + 0.6  # [T, N, L, C]
    _compare(ref, tri, x)


@pytest.mark.parametrize("surrogate", [Sigmoid(), S2NN(), FastSigmoid(fire_ge=False)])
def test_triton_surrogates_equal_loop(surrogate):
    ref, tri = _pair(6, surrogate=surrogate)
    x, mask = _tokens()
    _compare(ref, tri, x, mask)


def test_triton_float32_and_shared_parameters():
    ref, tri = _pair(None, dtype=torch.float32, runaway="soft_reset")
    x = (1.2 * torch.randn(11, 3, 6) + 0.6).float()
    _compare(ref, tri, x, torch.tensor([11, 5, 8]), tol=1e-4)


def test_triton_frameworks_select_it():
    from bpsn_ext.snntorch import BPSNLeaky
    from bpsn_ext.spikingjelly import BPSNNode

    x, mask = _tokens()
    for face in (BPSNNode(6, step_mode="m", method="triton"), BPSNLeaky(6, method="triton")):
        face = face.double()
        assert face.implementation(x) == "triton"
        ref = copy.deepcopy(face)
        ref.method = "loop"
        torch.testing.assert_close(face(x, mask)[0], ref(x, mask)[0], rtol=0, atol=0)


def test_triton_refuses_what_it_does_not_cover():
    x = torch.randn(4, 2, 6)
    with pytest.raises(ValueError, match="Triton BPSN kernel .*not kernel='window'"):
        BPSN(6, kernel="window", method="triton")(x)
    with pytest.raises(ValueError, match="fusion='concat'"):
        BPSN(6, fusion="concat", method="triton")(x)
    with pytest.raises(ValueError, match="T = 0"):
        BPSN(6, method="triton")(x[:0])


def test_triton_torch_compile_fullgraph():
    ref, tri = _pair(6, fusion="gate", runaway="soft_reset")
    x, mask = _tokens()
    compiled = torch.compile(tri, fullgraph=True, backend="aot_eager")
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    sc, se = compiled(xc, mask), tri(xe, mask)
    assert torch.equal(sc, se)
    sc.sum().backward()
    se.sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad, rtol=0, atol=1e-12)


def test_triton_opcheck():
    from bpsn_ext.kernels.triton_bpsn import bpsn_triton_forward

    torch.manual_seed(1)
    C = 4
    x = torch.randn(6, 2, C, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1]] * 4 + [[1, 0]] * 2, dtype=torch.uint8)

    def param(low, high):
        return (low + (high - low) * torch.rand(C, dtype=torch.float64)).requires_grad_()

    decay_f, decay_b, gate, thr = param(0.2, 0.9), param(0.2, 0.9), param(0, 1), param(0.5, 1)
    for runaway in (1, 2):
        args = (x, mask, decay_f, decay_b, gate, 1 - gate.detach(), thr, 1, 0.0, True)
        args += (runaway, 1, False, 0, 1.0, 3.14159)
        torch.library.opcheck(bpsn_triton_forward, args)
