"""BinaryS4D, GSU (and its ternarisation), SpikingS5: equations, streaming, masks, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from bpsn_ext.core.ternary import Ternary, ternarize, ternary_delta
from bpsn_ext.layers import GSU, S4D, BinaryS4D, GSUMixer, SpikingS5, set_fused
from bpsn_ext.surrogate import ATan, FastSigmoid

F64 = torch.float64


def make(cls, dtype=F64, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(6, 8, **kw).to(dtype).eval()


def rand_seq(T=24, N=3, D=6, dtype=F64, seed=1):
    return torch.randn(T, N, D, dtype=dtype, generator=torch.Generator().manual_seed(seed))


LAYERS = [
    (S4D, {}),
    (BinaryS4D, {}),
    (BinaryS4D, {"activation": "gelu", "norm": "batch", "prenorm": True}),
    (GSU, {}),
    (GSU, {"grad_mode": "nsa_shared", "norm": "none"}),
    (GSU, {"grad_mode": "surrogate"}),
    (GSU, {"grad_mode": "prf_surrogate", "act_delta": "token"}),
    (SpikingS5, {}),
]
IDS = ["s4d", "binary", "gelu-bn-pre", "gsu", "gsu-nsa", "gsu-surrogate", "gsu-prf-token", "s5"]


# --------------------------------------------------------------------------------------------
# Binary S4D
# --------------------------------------------------------------------------------------------


def test_binary_s4d_spikes_are_heaviside_of_the_s4d_output_with_atan_gradient():
    block = make(BinaryS4D)
    x = rand_seq().requires_grad_(True)
    _, spikes = block.forward_with_activation(x)
    pre = block.ssm(x)
    assert torch.equal(spikes, (pre >= 0).to(F64))
    assert 0.2 < spikes.mean() < 0.8
    g = torch.randn_like(spikes)
    (spikes * g).sum().backward()
    # reference: the S4D's vector-Jacobian product at ATan(2)'(pre) * g
    x2 = x.detach().clone().requires_grad_(True)
    pre2 = block.ssm(x2)
    pre2.backward(ATan(2.0).derivative(pre2.detach()) * g)
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    assert torch.equal(ATan(2.0).derivative(torch.zeros(1)), torch.ones(1))  # peak alpha/2


def test_binary_s4d_surrogate_is_configurable():
    block = make(BinaryS4D, surrogate=FastSigmoid(25.0))
    y = block.ssm(rand_seq()).detach().requires_grad_(True)
    _, spikes = block._mix(y, None)
    spikes.sum().backward()
    assert torch.allclose(y.grad, 1 / (25 * y.detach().abs() + 1) ** 2)


def test_gelu_switch_recovers_the_plain_s4d_block_exactly():
    spike = make(BinaryS4D)
    gelu = make(BinaryS4D, activation="gelu")
    assert list(spike.state_dict()) == list(gelu.state_dict())
    gelu.load_state_dict(spike.state_dict())
    x = rand_seq()
    # the s4 S4D block: y -> GELU -> Conv1d(H, 2H, 1) -> GLU, then residual and post-LayerNorm
    set_fused(gelu, False)  # op by op: exactly these ops; fused: the same to rounding
    y = gelu.ssm(x)
    z = F.glu(F.linear(F.gelu(y), gelu.output_linear.weight, gelu.output_linear.bias), dim=-1)
    ref = F.layer_norm(z + x, (6,), gelu.norm.norm.weight, gelu.norm.norm.bias)
    assert torch.equal(gelu(x), ref)
    torch.testing.assert_close(set_fused(gelu, True)(x), ref, rtol=0, atol=1e-12)
    bare = set_fused(make(BinaryS4D, activation="gelu", norm="none", residual=False), False)
    y = bare.ssm(x)
    w, b = bare.output_linear.weight, bare.output_linear.bias
    ref = F.glu(F.linear(F.gelu(y), w, b), dim=-1)
    assert torch.equal(bare(x), ref)
    torch.testing.assert_close(set_fused(bare, True)(x), ref, rtol=0, atol=1e-12)
    assert not torch.allclose(spike(x), gelu(x))


def test_binary_s4d_layout_options():
    x = rand_seq()
    pre = make(BinaryS4D, prenorm=True, glu=False)
    assert pre.output_linear.out_features == 6
    h = F.layer_norm(x, (6,), pre.norm.norm.weight, pre.norm.norm.bias)
    s = (pre.ssm(h) >= 0).to(F64)
    assert torch.allclose(pre(x), pre.output_linear(s) + x, atol=1e-12)
    with pytest.raises(ValueError, match="norm must be one of"):
        BinaryS4D(6, 8, norm="group")
    with pytest.raises(ValueError, match="dropout must lie in"):
        BinaryS4D(6, 8, dropout=1.0)
    with pytest.raises(ValueError, match="surrogate only applies"):
        BinaryS4D(6, 8, activation="gelu", surrogate="atan")
    with pytest.raises(ValueError, match="activation must be one of"):
        BinaryS4D(6, 8, activation="relu")


# --------------------------------------------------------------------------------------------
# Ternarisation and GSU
# --------------------------------------------------------------------------------------------


def test_ternary_values_threshold_and_scale():
    x = torch.tensor([-2.0, -0.3, -0.29, 0.0, 0.1, 0.3, 1.0])  # max|x| = 2: delta = 0.3
    assert torch.equal(Ternary()(x), torch.tensor([-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0]))
    t = Ternary(learn_scale=True)
    with torch.no_grad():
        t.log_scale.fill_(math.log(0.5))
    out = t(torch.randn(5, 7))
    assert set(out.unique().tolist()) <= {-0.5, 0.0, 0.5}
    per_token = Ternary(dim=-1)(torch.tensor([[1.0, 0.1], [10.0, 1.0]]))
    assert torch.equal(per_token, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    for grad in ("none", "ste", "surrogate"):
        v = Ternary(grad=grad)(torch.randn(4, 9))
        assert set(v.unique().tolist()) <= {-1.0, 0.0, 1.0}, grad


def test_ternary_backward_modes():
    x = torch.randn(50, dtype=F64, requires_grad=True)
    delta = ternary_delta(x)
    assert delta == 0.15 * x.detach().abs().max() and not delta.requires_grad
    assert not ternarize(x, delta, "none").requires_grad
    (ternarize(x, delta, "ste") * torch.arange(50.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(50.0, dtype=F64))
    x.grad = None
    ternarize(x, delta, "surrogate").sum().backward()
    sg = ATan(2.0)
    assert torch.allclose(x.grad, sg.derivative(x - delta) + sg.derivative(-x - delta))
    with pytest.raises(ValueError, match="grad must be one of"):
        ternarize(x, delta, "straight")


def _tern(v, dim=None):
    d = 0.15 * (v.abs().amax() if dim is None else v.abs().amax(dim, keepdim=True))
    return torch.sign(v) * (v.abs() >= d)


@pytest.mark.parametrize("mode", ["default", "nsa_shared", "surrogate", "prf_surrogate"])
def test_gsu_mixer_forward_equation(mode):
    torch.manual_seed(0)
    mix = GSUMixer(6, grad_mode=mode).double()
    y = torch.randn(5, 4, 6, dtype=F64)
    W2 = mix.weight1 if mode == "nsa_shared" else mix.weight2
    n = y @ _tern(mix.weight1).T + mix.bias1
    prf = mode == "prf_surrogate"  # PRF: one threshold over the whole tensor, no GELU
    m = _tern(y, None if prf else -1) @ W2.T + mix.bias2
    assert torch.allclose(mix(y), n * m if prf else F.gelu(n * m), atol=1e-12)
    assert (mix.weight2 is None) == (mode == "nsa_shared")


def test_gsu_without_ternarisation_is_the_bilinear_glu():
    torch.manual_seed(0)
    mix = GSUMixer(6, ternary=False).double()
    y = torch.randn(5, 6, dtype=F64)
    ref = F.gelu((y @ mix.weight1.T + mix.bias1) * (y @ mix.weight2.T + mix.bias2))
    assert torch.equal(mix(y), ref)
    ternary = GSUMixer(6).double()
    ternary.load_state_dict(mix.state_dict())
    assert not torch.allclose(ternary(y), ref)


def test_gsu_nsa_shared_gradients_follow_the_detached_reference():
    torch.manual_seed(0)
    mix = GSUMixer(6, grad_mode="nsa_shared").double()
    y = torch.randn(7, 6, dtype=F64, requires_grad=True)
    g = torch.randn(7, 6, dtype=F64)
    (mix(y) * g).sum().backward()
    W = mix.weight1.detach().clone().requires_grad_(True)
    y2 = y.detach().clone().requires_grad_(True)
    n = y2 @ _tern(W.detach()).T + mix.bias1.detach()  # Tern(W) detached: y's only path
    m = _tern(y2.detach(), -1) @ W.T + mix.bias2.detach()  # W's only path
    (F.gelu(n * m) * g).sum().backward()
    assert torch.allclose(y.grad, y2.grad, atol=1e-12)
    assert torch.allclose(mix.weight1.grad, W.grad, atol=1e-12)
    assert [n for n, _ in mix.named_parameters()] == ["weight1", "bias1", "bias2"]


@pytest.mark.parametrize("mode", ["default", "nsa_shared", "surrogate", "prf_surrogate"])
@pytest.mark.parametrize("where", ["mixer", "block"])
def test_every_weight_receives_gradient_in_every_grad_mode(mode, where):
    torch.manual_seed(0)
    model = GSUMixer(6, grad_mode=mode) if where == "mixer" else GSU(6, 8, grad_mode=mode)
    x = torch.randn(12, 3, 6)
    (model(x) * torch.randn(12, 3, 6)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{mode}: {name} has no gradient"
    if mode in ("surrogate", "prf_surrogate"):
        mixer = model if where == "mixer" else model.mixer
        assert mixer.tern_act.log_scale is not None and mixer.tern_weight.log_scale is not None


def test_gsu_refuses_the_w_never_trains_configuration():
    with pytest.raises(ValueError, match="leave W without any gradient"):
        GSUMixer(6, weight_grad="none")
    GSUMixer(6, weight_grad="none", grad_mode="nsa_shared")  # one shared W: fine
    GSUMixer(6, weight_grad="none", ternary=False)  # no Tern(W): fine


def test_gsu_surrogate_rule_gradient_through_both_ternarisations():
    torch.manual_seed(0)
    mix = GSUMixer(6, grad_mode="surrogate", learn_scale=False).double()
    y = torch.randn(9, 6, dtype=F64, requires_grad=True)
    mix(y).sum().backward()
    # the same with both Tern() straight from explicit ATan surrogates
    sg = ATan(2.0)
    W = mix.weight1.detach().clone().requires_grad_(True)
    y2 = y.detach().clone().requires_grad_(True)
    dW = 0.15 * W.detach().abs().max()
    dy = 0.15 * y2.detach().abs().amax(-1, keepdim=True)
    tW = sg(W - dW) - sg(-W - dW)
    ty = sg(y2 - dy) - sg(-y2 - dy)
    F.gelu(
        (y2 @ tW.T + mix.bias1.detach()) * (ty @ mix.weight2.detach().T + mix.bias2.detach())
    ).sum().backward()
    assert torch.allclose(y.grad, y2.grad, atol=1e-12)
    assert torch.allclose(mix.weight1.grad, W.grad, atol=1e-12)


# --------------------------------------------------------------------------------------------
# SpikingS5
# --------------------------------------------------------------------------------------------


def test_spiking_s5_parallel_scan_equals_the_sequential_recurrence():
    s5 = make(SpikingS5, activation="none")
    x = rand_seq(T=37)
    A = torch.complex(-s5.log_A_real.exp(), s5.A_imag).detach()
    dt = s5.log_dt.exp().detach()
    B = torch.view_as_complex(s5.B.detach())
    C = torch.view_as_complex(s5.C.detach())
    Ab, Bb = torch.exp(dt * A), ((torch.exp(dt * A) - 1) / A)[:, None] * B
    state, ys = torch.zeros(3, 8, dtype=torch.complex128), []
    for t in range(37):
        state = Ab * state + x[t].to(Bb.dtype) @ Bb.T
        ys.append(2 * (state @ C.T).real + s5.D.detach() * x[t])
    ref = torch.stack(ys)
    y, last = s5.ssm_forward(x)
    assert (y - ref).abs().max() < 1e-12 and (last - state).abs().max() < 1e-12
    assert torch.allclose(s5(x), ref, atol=1e-12)
    spiking = make(SpikingS5)
    spiking.load_state_dict(s5.state_dict())
    spikes, pre = spiking.forward_with_membrane(x)
    assert torch.equal(spikes, (pre >= 0).to(F64)) and torch.allclose(pre, ref, atol=1e-12)


def test_spiking_s5_is_mimo_and_its_gradient_flows():
    s5 = make(SpikingS5, dtype=torch.float32)
    assert s5.B.shape == (8, 6, 2) and s5.C.shape == (6, 8, 2) and s5.log_dt.shape == (8,)
    x = rand_seq(dtype=torch.float32)
    x0 = x.clone()
    x0[:, :, 0] += 1.0  # one input channel drives every output channel
    y, _ = s5.ssm_forward(x)
    y0, _ = s5.ssm_forward(x0)
    assert ((y0 - y).abs()[5:].amin(dim=(0, 1)) > 0).all()
    s5(x.requires_grad_(True)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in s5.parameters())


# --------------------------------------------------------------------------------------------
# every layer: streaming = parallel, state handling, masks, dtypes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,kw", LAYERS, ids=IDS)
def test_streaming_equals_parallel(cls, kw):
    layer = make(cls, **kw)
    x = rand_seq()
    lengths = torch.tensor([24, 15, 3])
    y = layer(x, lengths)
    assert layer.ssm_state is None  # the parallel form keeps no state
    ys = layer.stream(x, lengths)
    assert (ys - y).abs().max() < 1e-12
    first_state = layer.ssm_state
    assert first_state is not None
    layer.stream(x)  # continues from the state: different outputs
    layer.reset_state()
    assert layer.ssm_state is None
    assert (layer.stream(x, lengths) - y).abs().max() < 1e-12
    keys = set(layer.state_dict())
    assert keys == set(make(cls, **kw).state_dict()) and not any("ssm_state" in k for k in keys)


@pytest.mark.parametrize("cls,kw", LAYERS, ids=IDS)
def test_chunked_parallel_form_equals_whole_sequence(cls, kw):
    layer = make(cls, **kw)
    x = rand_seq()
    a, state = layer.forward_with_state(x[:10])
    b, _ = layer.forward_with_state(x[10:], state)
    assert (torch.cat([a, b]) - layer(x)).abs().max() < 1e-12


@pytest.mark.parametrize("cls,kw", LAYERS, ids=IDS)
def test_float32_streaming_matches_parallel(cls, kw):
    layer = make(cls, dtype=torch.float32, **kw)
    x = rand_seq(dtype=torch.float32)
    y = layer(x)
    ys = layer.stream(x)
    assert y.dtype == ys.dtype == torch.float32
    close = (ys - y).abs() < 1e-4
    if cls is S4D:
        assert close.all()
    else:  # a spike or ternary value may flip where its input is within rounding of a threshold
        assert close.float().mean() > 0.97


@pytest.mark.parametrize("cls,kw", LAYERS, ids=IDS)
def test_padding_content_does_not_change_real_outputs(cls, kw):
    layer = make(cls, **kw)
    batch_stats = kw.get("norm") == "batch"
    if batch_stats:
        layer.train()  # masked BatchNorm statistics come from real tokens only
    x = rand_seq()
    lengths = torch.tensor([24, 15, 3])
    mask = torch.arange(24)[:, None] < lengths
    noisy = torch.where(mask[..., None], x, 100 * torch.randn_like(x))
    y, y_noisy = layer(x, lengths), layer(noisy, mask)
    assert (y - y_noisy).abs().max() < 1e-12
    assert torch.all(y[~mask] == 0)
    if batch_stats:
        return  # training-mode BatchNorm statistics depend on which sequences share the batch
    # and equal to running the real part alone (padded length does not matter)
    short = layer(x[:15, 1:2])
    assert (short - y[:15, 1:2]).abs().max() < 1e-12


def test_bidirectional_masks():
    """With a mask the anti-causal kernel starts at each sequence's own end: real outputs are
    independent of the padding's content and length.  Without a mask the padding is input
    like any other step and reaches every earlier output."""
    layer = make(S4D, bidirectional=True)
    x = rand_seq()
    lengths = torch.tensor([24, 15, 3])
    mask = torch.arange(24)[:, None] < lengths
    noisy = torch.where(mask[..., None], x, torch.randn_like(x))
    assert (layer(x, lengths) - layer(noisy, lengths)).abs().max() < 1e-12
    assert (layer(x[:15, 1:2]) - layer(x, lengths)[:15, 1:2]).abs().max() < 1e-12
    leak = (layer(x) - layer(noisy)).abs()[:15, 1]
    assert leak.min() > 0
    for call in (lambda: layer.step(x[0]), lambda: layer.forward_with_state(x)):
        with pytest.raises(RuntimeError, match="needs the whole"):
            call()


@pytest.mark.parametrize("cls,kw", LAYERS, ids=IDS)
def test_dtypes_and_bad_inputs(cls, kw):
    for dtype in (torch.float32, torch.float64):
        layer = make(cls, dtype=dtype, **kw)
        assert layer(rand_seq(dtype=dtype)).dtype == dtype
    layer = make(cls, **kw)
    with pytest.raises(TypeError, match="float64 parameters but the input is torch.float32"):
        layer(rand_seq(dtype=torch.float32))
    with pytest.raises(ValueError, match=r"time-first input \[T, N, D\] with D = d_model = 6"):
        layer(torch.randn(4, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="use step"):
        layer(torch.randn(3, 6, dtype=F64))
    with pytest.raises(ValueError, match=r"\[T, N, D\]"):
        layer(torch.randn(2, 4, 3, 6, dtype=F64))
    with pytest.raises(ValueError, match=r"bool mask must have shape \[T, N\] = \[24, 3\]"):
        layer(rand_seq(), torch.ones(24, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths must have shape \[N\] = \[3\]"):
        layer(rand_seq(), torch.tensor([3, 4]))
    with pytest.raises(ValueError, match=r"use forward"):
        layer.step(rand_seq())
    with pytest.raises(ValueError, match=r"step mask must be a bool tensor of shape \[N\]"):
        layer.step(rand_seq()[0], torch.ones(3))
    layer.step(rand_seq()[0])
    with pytest.raises(ValueError, match="call reset_state"):
        layer.step(torch.randn(5, 6, dtype=F64))  # batch changed without a reset


@pytest.mark.parametrize("cls", [S4D, BinaryS4D, GSU, SpikingS5])
def test_constructor_errors(cls):
    if cls is not SpikingS5:
        with pytest.raises(ValueError, match="d_state must be even"):
            cls(4, 7)
    with pytest.raises(ValueError, match="did you swap them"):
        cls(4, 8, dt_min=0.1, dt_max=0.001)
    with pytest.raises(TypeError, match="dt_min must be a Python float"):
        cls(4, 8, dt_min=1)
    with pytest.raises(ValueError, match="dt_max must be > 0"):
        cls(4, 8, dt_min=0.001, dt_max=-1.0)
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        cls(0, 8)
    with pytest.raises(ValueError, match="d_state must be a positive int"):
        cls(4, 0)


def test_gsu_tensor_threshold_uses_real_tokens_only():
    gsu = make(GSU, act_delta="tensor")
    x = rand_seq()
    lengths = torch.tensor([24, 15, 3])
    mask = torch.arange(24)[:, None] < lengths
    noisy = torch.where(mask[..., None], x, 1e3 * torch.randn_like(x))
    assert (gsu(x, lengths) - gsu(noisy, lengths)).abs().max() < 1e-12
