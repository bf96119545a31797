"""The fused (channel-major) paths of the SSM layers against their op-by-op references.

Every layer and block runs once with ``fused=True`` (the default) and once with
`bpsn_ext.layers.set_fused` ``False`` on a copy with the same weights; forward outputs and
the gradients of the input and of every parameter agree to rounding in float64, for masks,
bidirectional kernels, norms, dropout in training mode (same random masks), and inputs stored
time-major or channel-major.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from bpsn_ext.core.channel_major import (
    is_channel_major,
    sequence_glu,
    sequence_layer_norm,
    sequence_linear,
    to_channel_major,
    to_time_major,
)
from bpsn_ext.core.diagonal_ssm import bidirectional_conv, causal_conv
from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5, TiedDropout, set_fused
from bpsn_ext.layers._block import foldable, time_constant_scale
from bpsn_ext.models import build_lra_model
from bpsn_ext.surrogate import ATan

F64 = torch.float64
TOL = dict(rtol=1e-9, atol=1e-11)


def _pair(module):
    """``(fused, reference)``: the module and an unfused deep copy (same weights)."""
    return module, set_fused(copy.deepcopy(module), False)


def _run(module, x, mask, seed):
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)  # the same dropout masks in both runs
    out = module(x, mask)
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(7))
    (out * g).sum().backward()
    return out, x.grad, {n: p.grad for n, p in module.named_parameters()}


def _assert_same(module, x, mask=None, seed=0):
    fused, ref = _pair(module)
    out, gx, gp = _run(fused, x, mask, seed)
    out_r, gx_r, gp_r = _run(ref, x, mask, seed)
    torch.testing.assert_close(out, out_r, **TOL)
    torch.testing.assert_close(gx, gx_r, **TOL)
    assert gp.keys() == gp_r.keys()
    for name in gp:
        if gp_r[name] is None:
            assert gp[name] is None, name
        else:
            torch.testing.assert_close(gp[name], gp_r[name], **TOL, msg=name)
    return out


def _seq(T=37, N=3, H=8, channel_major=False, seed=1):
    x = torch.randn(T, N, H, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return to_channel_major(x).detach() if channel_major else x


LENGTHS = torch.tensor([37, 20, 1])

CASES = [
    (S4D, {}),
    (S4D, {"bidirectional": True}),
    (S4D, {"bidirectional": True, "bidirectional_convention": "s4"}),
    (BinaryS4D, {}),
    (BinaryS4D, {"activation": "gelu"}),
    (BinaryS4D, {"dropout": 0.3}),
    (BinaryS4D, {"dropout": 0.3, "tied_dropout": False}),
    (BinaryS4D, {"norm": "batch", "prenorm": True, "dropout": 0.2}),
    (BinaryS4D, {"norm": "none", "glu": False, "residual": False}),
    (BinaryS4D, {"bidirectional": True, "v_threshold": 0.1}),
    (GSU, {}),
    (GSU, {"grad_mode": "prf_surrogate", "dropout": 0.2}),
    (GSU, {"norm": "batch", "bidirectional": True}),
    (SpikingS5, {}),
    (SpikingS5, {"bidirectional": True, "activation": "gelu"}),
]


@pytest.mark.parametrize("cls, options", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("mask", [None, LENGTHS], ids=["nomask", "mask"])
@pytest.mark.parametrize("channel_major", [False, True], ids=["time_major", "channel_major"])
def test_fused_equals_the_op_by_op_reference(cls, options, mask, channel_major):
    torch.manual_seed(0)
    # element-wise dropout draws in memory order: same masks only when it is off (eval)
    module = cls(8, 6, **options).double().train(options.get("tied_dropout", True))
    out = _assert_same(module, _seq(channel_major=channel_major), mask)
    if cls is not SpikingS5 and cls is not S4D:  # blocks return the input's layout
        assert is_channel_major(out) == channel_major
        assert out.is_contiguous() != channel_major


@pytest.mark.parametrize("layer", ["binary_s4d", "s4d", "gsu", "s5"])
@pytest.mark.parametrize("mask", [None, LENGTHS], ids=["nomask", "mask"])
def test_classifier_fused_equals_reference_in_training_mode(layer, mask):
    torch.manual_seed(0)
    model = build_lra_model(
        "sequential", layer, d_input=2, n_classes=5, d_model=8, n_layers=2, d_state=6
    ).double()
    assert model.blocks[0].dropout.p == 0.1 or layer in ("s5",)
    _assert_same(model.train(), _seq(H=2), mask, seed=3)


def test_elementwise_dropout_trains_in_both_layouts():
    torch.manual_seed(0)
    block = BinaryS4D(8, 6, dropout=0.5, tied_dropout=False).double().train()
    for x in (_seq(), _seq(channel_major=True)):
        x.requires_grad_(True)
        out = block(x)
        out.sum().backward()
        assert torch.isfinite(x.grad).all() and is_channel_major(out) == is_channel_major(x)
        drop = block.dropout(torch.ones_like(x))
        assert set(drop.unique().tolist()) == {0.0, 2.0}


def test_classifier_with_token_ids_and_batch_norm():
    torch.manual_seed(0)
    model = build_lra_model(
        "listops", "binary_s4d", d_input=1, n_classes=4, vocab_size=11, d_model=8, n_layers=2
    ).double()
    fused, ref = _pair(model.train())
    tokens = torch.randint(0, 11, (30, 3))
    lengths = torch.tensor([30, 12, 1])
    torch.testing.assert_close(fused(tokens, lengths), ref(tokens, lengths), **TOL)
    torch.testing.assert_close(fused(tokens), ref(tokens), **TOL)


def test_layout_conversions_roundtrip_and_pass_gradients():
    x = _seq().requires_grad_(True)
    cm = to_channel_major(x)
    assert is_channel_major(cm) and torch.equal(cm, x)
    assert to_channel_major(cm) is cm and to_time_major(x) is x
    back = to_time_major(cm)
    assert back.is_contiguous() and torch.equal(back, x)
    assert torch.autograd.gradcheck(lambda v: to_time_major(to_channel_major(v) * 2), (x,))


def test_channel_major_ops_match_torch_functional():
    x = _seq(channel_major=True).requires_grad_(True)
    w, b = torch.randn(8, dtype=F64), torch.randn(8, dtype=F64)
    out = sequence_layer_norm(x, w, b, 1e-5)
    assert is_channel_major(out)
    torch.testing.assert_close(out, F.layer_norm(x, (8,), w, b, 1e-5), **TOL)
    ln = lambda v, w, b: sequence_layer_norm(to_channel_major(v), w, b, 1e-5)  # noqa: E731
    small = _seq(T=5, N=2, H=4).requires_grad_(True)
    args = (small, torch.randn(4, dtype=F64, requires_grad=True), torch.randn(4, dtype=F64))
    assert torch.autograd.gradcheck(ln, args)
    z = _seq(H=16, channel_major=True)
    torch.testing.assert_close(sequence_glu(z, x), F.glu(z, dim=-1) + x, **TOL)
    glu = lambda z, r: sequence_glu(to_channel_major(z), to_channel_major(r))  # noqa: E731
    assert torch.autograd.gradcheck(glu, (_seq(5, 2, 8).requires_grad_(), small))
    W = torch.randn(3, 5, 8, dtype=F64)  # one matrix per sample
    bias = torch.randn(3, 5, dtype=F64)
    ref = torch.einsum("noh,tnh->tno", W, x) + bias
    torch.testing.assert_close(sequence_linear(x, W, bias), ref, **TOL)
    torch.testing.assert_close(sequence_linear(x, W[0], bias[0]), F.linear(x, W[0], bias[0]))


def test_fft_convolution_with_skip_term():
    u = _seq(T=11, N=2, H=3).requires_grad_(True)
    K = torch.randn(3, 11, dtype=F64, requires_grad=True)
    K_b = torch.randn(3, 11, dtype=F64, requires_grad=True)
    D = torch.randn(3, dtype=F64, requires_grad=True)
    torch.testing.assert_close(causal_conv(u, K, D), causal_conv(u, K) + u * D, **TOL)
    both = bidirectional_conv(u, K, K_b, 1, D)
    torch.testing.assert_close(both, bidirectional_conv(u, K, K_b, 1) + u * D, **TOL)
    assert torch.autograd.gradcheck(causal_conv, (u, K, D))
    assert torch.autograd.gradcheck(lambda u, D: causal_conv(u, K.detach(), D), (u, D))
    assert torch.autograd.gradcheck(lambda *a: bidirectional_conv(*a, 0, D), (u, K, K_b))


def test_dropout_folding_draws_the_masks_of_tied_dropout():
    x = _seq()
    drop = TiedDropout(0.4).train()
    torch.manual_seed(5)
    expected = drop(x)
    torch.manual_seed(5)
    scale = time_constant_scale(drop, x)
    torch.testing.assert_close(x * scale, expected, rtol=0, atol=0)
    assert time_constant_scale(drop.eval(), x) is None
    assert time_constant_scale(TiedDropout(0.0).train(), x) is None
    elementwise = torch.nn.Dropout(0.4).train()
    assert foldable(drop, TiedDropout(0.1)) and not foldable(drop, elementwise)
    with pytest.raises(ValueError, match="not constant over time"):
        time_constant_scale(elementwise, x)


def test_atan_fused_gradient_equals_its_gradient():
    x = torch.randn(1000, dtype=F64) * 3
    g = torch.randn(1000, dtype=F64)
    for alpha in (2.0, 0.5):
        torch.testing.assert_close(ATan.fused_grad(x, g, alpha), ATan.grad(x, g, alpha), **TOL)
    surrogate = ATan()
    v = x.clone().requires_grad_(True)
    surrogate.spike(v, fused=True).backward(g)
    torch.testing.assert_close(v.grad, ATan.grad(x, g, 2.0), **TOL)


def test_set_fused_reaches_every_layer_and_checks_its_argument():
    model = build_lra_model("sequential", "gsu", d_input=1, n_classes=2, d_model=4, n_layers=2)
    set_fused(model, False)
    flags = [m.fused for m in model.modules() if isinstance(getattr(m, "fused", None), bool)]
    assert len(flags) == 2 * 4 and not any(flags)  # block, its S4D, norm and GSU mixer
    with pytest.raises(TypeError, match="fused must be bool"):
        set_fused(model, 1)


def test_energy_estimate_counts_the_reference_path_and_restores_the_flags():
    from bpsn_ext.energy import estimate

    block = BinaryS4D(8, 6)
    x = _seq().float()
    fused_report = str(estimate(block, x, coding="individual"))
    assert block.fused is True and block.ssm.fused is True
    assert str(estimate(set_fused(block, False), x, coding="individual")) == fused_report
    assert block.fused is False
