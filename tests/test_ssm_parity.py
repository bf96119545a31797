"""Parity of the SSM layers with the published reference code, against references written here.

* PRF's ``GSU``/``spikeGate`` (threshold ``0.15 max|x|`` over the whole tensor, not detached,
  ATan(2) surrogates at +-threshold, learnable scale ``exp(log_w)`` with lr 1e-3 and no decay)
  versus ``grad_mode="prf_surrogate"``: forward and every gradient;
* state-spaces' ``_optim`` hints and its ``setup_optimizer`` convention;
* tied dropout (s4's ``DropoutNd``), the GELU switch of the GSU block;
* s4's ``FFTConv`` bidirectional convention (backward kernel shifted by one step);
* the S5 options (free real part with clip, bilinear discretisation, bidirectional scan).
"""

import copy
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bpsn_ext.core.ternary import Ternary
from bpsn_ext.layers import GSU, S4D, BinaryS4D, GSUMixer, SpikingS5, TiedDropout
from bpsn_ext.optim import ssm_param_groups

F64 = torch.float64


# -- an independent PRF reference (published equations, SpikingJelly ATan(alpha=2)) ----


class _ATanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (1 + (math.pi * x) ** 2)  # (alpha/2) / (1 + (pi alpha x / 2)^2), alpha = 2


def _prf_spike_gate(x, log_w):
    th = torch.max(torch.abs(x)) * 0.15  # not detached, whole tensor
    return torch.exp(log_w) * (_ATanSpike.apply(x - th) - _ATanSpike.apply(-x - th))


def _prf_gsu(y, lin1_w, lin1_b, lin2_w, lin2_b, log_w1, log_w2):
    x1 = F.linear(_prf_spike_gate(y, log_w1), lin1_w, lin1_b)
    x2 = F.linear(y, _prf_spike_gate(lin2_w, log_w2), lin2_b)
    return x1 * x2


def test_prf_spike_gate_frozen_values():
    """Hand-computed: x = (0.2, -1, 0.6), threshold 0.15 on |x| = 1 at x[1]; the threshold's
    gradient lands on x[1]: sum_i g_i (g'(-x_i - th) - g'(x_i - th)) * 0.15 * sign(x[1])."""
    x = torch.tensor([0.2, -1.0, 0.6], dtype=F64, requires_grad=True)
    t = Ternary(0.15, grad="surrogate", learn_scale=True, detach=False).double()
    out = t(x)
    assert out.tolist() == [1.0, -1.0, 1.0]
    (out * torch.tensor([1.0, 2.0, -0.5], dtype=F64)).sum().backward()
    expected = [1.4286082236761053, 0.43767372247176195, -0.24306138906412483]
    assert torch.allclose(x.grad, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-15)
    assert t.log_scale.grad.item() == pytest.approx(1.0 * 1 + 2.0 * -1 + -0.5 * 1)
    # the detached threshold (our own rule) misses exactly the argmax term 0.04937...
    x2 = x.detach().clone().requires_grad_(True)
    (
        Ternary(grad="surrogate").double()(x2) * torch.tensor([1.0, 2.0, -0.5], dtype=F64)
    ).sum().backward()
    assert (x.grad - x2.grad).abs().argmax().item() == 1
    assert (x.grad - x2.grad)[1].item() == pytest.approx(0.04937223444874314, abs=1e-15)


def _prf_pair(H=6, seed=0):
    torch.manual_seed(seed)
    mix = GSUMixer(H, grad_mode="prf_surrogate").double()
    with torch.no_grad():
        mix.tern_act.log_scale.fill_(0.3)
        mix.tern_weight.log_scale.fill_(-0.2)
    ref = {  # PRF names: pro_linear1 (real weight, ternary input), pro_linear2 (ternary weight)
        "lin1_w": mix.weight2,
        "lin1_b": mix.bias2,
        "lin2_w": mix.weight1,
        "lin2_b": mix.bias1,
        "log_w1": mix.tern_act.log_scale,
        "log_w2": mix.tern_weight.log_scale,
    }
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in ref.items()}
    return mix, ref


@pytest.mark.parametrize("shape", [(7, 6), (5, 3, 6)])
def test_prf_preset_equals_the_prf_gsu_in_forward_and_gradients(shape):
    mix, ref = _prf_pair()
    assert not mix.gelu and mix.act_delta == "tensor"
    y = torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    y[(0,) * len(shape)] = 4.0  # one clear argmax: the threshold's gradient goes there
    y1, y2 = y.clone().requires_grad_(True), y.clone().requires_grad_(True)
    g = torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(4))
    out, out_ref = mix(y1), _prf_gsu(y2, **ref)
    assert torch.allclose(out, out_ref, rtol=0, atol=1e-13)
    (out * g).sum().backward()
    (out_ref * g).sum().backward()
    assert torch.allclose(y1.grad, y2.grad, rtol=0, atol=1e-12)
    pairs = {
        "weight2": "lin1_w",
        "bias2": "lin1_b",
        "weight1": "lin2_w",
        "bias1": "lin2_b",
        "tern_act.log_scale": "log_w1",
        "tern_weight.log_scale": "log_w2",
    }
    params = dict(mix.named_parameters())
    for ours, theirs in pairs.items():
        assert torch.allclose(params[ours].grad, ref[theirs].grad, rtol=0, atol=1e-12), ours
    # the threshold's gradient is real: our own rule (detached) differs at the argmax only
    rule = GSUMixer(6, grad_mode="surrogate", act_delta="tensor", gelu=False).double()
    rule.load_state_dict(mix.state_dict())
    y3 = y.clone().requires_grad_(True)
    (rule(y3) * g).sum().backward()
    diff = (y3.grad - y1.grad).abs().flatten()
    assert diff.argmax().item() == 0 and diff[0] > 1e-3 and diff[1:].max() < 1e-12


def test_prf_preset_block_honours_gelu_and_matches_the_mixer():
    torch.manual_seed(0)
    block = GSU(6, 8, grad_mode="prf_surrogate", norm="none").double()
    x = torch.randn(9, 2, 6, dtype=F64)
    y = block.ssm(x)
    assert torch.allclose(block(x), block.mixer(y) + x, rtol=0, atol=1e-13)
    with_gelu = GSU(6, 8, grad_mode="prf_surrogate", norm="none", gelu=True).double()
    with_gelu.load_state_dict(block.state_dict())
    n, m, _ = block.mixer.routes(y)
    assert torch.allclose(with_gelu(x), F.gelu(n * m) + x, rtol=0, atol=1e-13)
    assert torch.allclose(block(x), n * m + x, rtol=0, atol=1e-13)
    plain = GSU(6, 8, norm="none", gelu=False).double()  # a GELU-free default GSU block
    plain.load_state_dict(GSU(6, 8, norm="none").double().state_dict())
    n, m, _ = plain.mixer.routes(plain.ssm(x))
    assert torch.allclose(plain(x), n * m + x, rtol=0, atol=1e-13)


# -- optimiser hints ----------------------------------------


def _setup_optimizer(model, lr, weight_decay):
    """The state-spaces convention: plain parameters in the base group, then one group per
    distinct ``_optim`` hint with the hint's values over the defaults."""
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        [p for p in params if not hasattr(p, "_optim")], lr=lr, weight_decay=weight_decay
    )
    hints = []
    for p in params:
        if hasattr(p, "_optim") and p._optim not in hints:
            hints.append(p._optim)
    for hint in hints:
        opt.add_param_group(
            {"params": [p for p in params if getattr(p, "_optim", None) == hint], **hint}
        )
    return opt


def _group_of(opt, p):
    return next(g for g in opt.param_groups if any(q is p for q in g["params"]))


def test_state_spaces_setup_optimizer_reads_our_hints():
    torch.manual_seed(0)
    model = nn.Sequential(
        BinaryS4D(4, 8), GSU(4, 8, grad_mode="prf_surrogate"), SpikingS5(4, 4, real_part="free")
    )
    opt = _setup_optimizer(model, lr=0.01, weight_decay=0.05)
    small = [
        model[0].ssm.log_dt,
        model[0].ssm.log_A_real,
        model[0].ssm.A_imag,
        model[2].log_dt,
        model[2].A_real,
        model[2].A_imag,
        model[2].B,
        model[1].mixer.tern_act.log_scale,
        model[1].mixer.tern_weight.log_scale,
    ]
    for p in small:
        g = _group_of(opt, p)
        assert g["lr"] == 0.001 and g["weight_decay"] == 0.0
    for p in (model[0].ssm.C, model[0].ssm.D, model[0].output_linear.weight, model[2].C):
        g = _group_of(opt, p)
        assert g["lr"] == 0.01 and g["weight_decay"] == 0.05


def test_hints_survive_copies_and_drive_ssm_param_groups():
    torch.manual_seed(0)
    model = nn.Sequential(S4D(4, 8), GSU(4, 8, grad_mode="prf_surrogate"))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone[0].log_dt._optim == {"lr": 0.001, "weight_decay": 0.0}
        assert clone[1].mixer.tern_act.log_scale._optim == {"lr": 0.001, "weight_decay": 0.0}
    # PRF: the scale keeps lr 1e-3 and no decay even when the base lr is smaller
    groups = ssm_param_groups(model, lr=0.0005, weight_decay=0.01)
    scale = model[1].mixer.tern_act.log_scale
    g = next(g for g in groups if any(q is scale for q in g["params"]))
    assert g["lr"] == 0.001 and g["weight_decay"] == 0.0
    g = next(g for g in groups if any(q is model[0].log_dt for q in g["params"]))
    assert g["lr"] == 0.0005 and g["weight_decay"] == 0.0
    # with the usual lr the scale joins the SSM group (same values)
    assert len(ssm_param_groups(model, lr=0.01, weight_decay=0.01)) == 2


# -- tied dropout ----------------------------------------


def test_tied_dropout_drops_whole_channels_for_the_whole_sequence():
    drop = TiedDropout(0.5).train()
    torch.manual_seed(1)
    out = drop(torch.ones(50, 4, 16, dtype=F64))
    assert torch.equal(out, out[:1].expand_as(out))  # the same mask at every step
    assert set(out.unique().tolist()) == {0.0, 2.0}
    torch.manual_seed(1)
    keep = torch.empty(4, 16, dtype=F64).bernoulli_(0.5)  # the reference: one [N, H] mask
    x = torch.randn(50, 4, 16, dtype=F64)
    torch.manual_seed(1)
    assert torch.equal(drop(x), x * (keep / 0.5))
    assert torch.equal(drop.eval()(x), x)
    assert isinstance(nn.Dropout(0.1), nn.Dropout) and isinstance(drop, nn.Dropout)


@pytest.mark.parametrize("cls", [BinaryS4D, GSU])
def test_blocks_use_tied_dropout_by_default(cls):
    block = cls(4, 8, dropout=0.3)
    assert type(block.dropout) is TiedDropout and type(block.inner_dropout) is TiedDropout
    untied = cls(4, 8, dropout=0.3, tied_dropout=False)
    assert type(untied.dropout) is nn.Dropout and type(untied.inner_dropout) is nn.Dropout
    with pytest.raises(TypeError, match="tied_dropout must be bool"):
        cls(4, 8, tied_dropout=1)


# -- s4's bidirectional convention ----------------------------------------


def _direct_bidirectional(u, K_f, K_b, D, shift):
    T = u.shape[0]
    y = u * D
    for t in range(T):
        for s in range(T):
            if s <= t:
                y[t] = y[t] + K_f[:, t - s] * u[s]
            if s >= t + shift:
                y[t] = y[t] + K_b[:, s - t - shift] * u[s]
    return y


def test_s4_bidirectional_convention_shifts_the_backward_kernel():
    torch.manual_seed(0)
    ours = S4D(3, 8, bidirectional=True).double()
    s4 = S4D(3, 8, bidirectional=True, bidirectional_convention="s4").double()
    s4.load_state_dict(ours.state_dict())
    u = torch.randn(11, 2, 3, dtype=F64)
    K_f, K_b = (k.detach() for k in s4.kernel(11))
    D = s4.D.detach()
    assert torch.allclose(s4(u), _direct_bidirectional(u, K_f, K_b, D, 1), atol=1e-12)
    assert torch.allclose(ours(u), _direct_bidirectional(u, K_f, K_b, D, 0), atol=1e-12)
    # s4's own layout: F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0)), FFT length 2L
    k = F.pad(K_f, (0, 11)) + F.pad(K_b.flip(-1), (11, 0))
    u_f = torch.fft.rfft(u.permute(1, 2, 0), n=22)
    y = torch.fft.irfft(u_f * torch.fft.rfft(k, n=22), n=22)[..., :11].permute(2, 0, 1) + u * D
    assert torch.allclose(s4(u), y, atol=1e-12)
    # masks: outputs of a padded batch equal those of the unpadded sequences
    x = torch.randn(8, 2, 3, dtype=F64)
    lengths = torch.tensor([8, 5])
    padded = s4(x, lengths)
    assert torch.allclose(padded[:5, 1], s4(x[:5, 1:2])[:, 0], atol=1e-12)
    assert torch.equal(padded[5:, 1], torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="bidirectional_convention must be one of"):
        S4D(3, 8, bidirectional=True, bidirectional_convention="shifted")


# -- S5 options ----------------------------------------


def _s5_reference(s5, x, reverse=False, C=None):
    """The recurrence, step by step, with the layer's own A, dt, B (and C or C_backward)."""
    A, dt = s5.A.detach(), s5.log_dt.exp().detach()
    B = torch.view_as_complex(s5.B.detach())
    C = torch.view_as_complex((s5.C if C is None else C).detach())
    if s5.discretization == "zoh":
        Ab, f = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A
    else:
        Ab, f = (1 + dt * A / 2) / (1 - dt * A / 2), dt / (1 - dt * A / 2)
    Bb = f[:, None] * B
    state = torch.zeros(x.shape[1], s5.d_state, dtype=torch.complex128)
    out = [None] * x.shape[0]
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in steps:
        state = Ab * state + x[t].to(Bb.dtype) @ Bb.T
        out[t] = 2 * (state @ C.T).real
    return torch.stack(out)


def test_s5_bilinear_free_real_part_and_bidirectional_match_the_recurrence():
    torch.manual_seed(0)
    s5 = SpikingS5(
        4,
        6,
        activation="none",
        real_part="free",
        clip_real=-1e-4,
        discretization="bilinear",
        bidirectional=True,
    ).double()
    with torch.no_grad():
        s5.A_real[0] = 0.3  # positive: clipped to -1e-4
    assert s5.A.real[0].item() == -1e-4 and s5.A.real[1].item() == -0.5
    x = torch.randn(13, 2, 4, dtype=F64)
    ref = (
        _s5_reference(s5, x)
        + _s5_reference(s5, x, reverse=True, C=s5.C_backward)
        + s5.D.detach() * x
    )
    assert torch.allclose(s5(x), ref, atol=1e-12)
    (s5(x) ** 2).sum().backward()
    assert s5.A_real.grad[0] == 0 and s5.A_real.grad[1] != 0  # the clip passes no gradient
    assert torch.allclose(s5(x, torch.tensor([13, 9]))[:9, 1], s5(x[:9, 1:2])[:, 0], atol=1e-12)
    with pytest.raises(RuntimeError, match="no streaming form"):
        s5.step(x[0])
    with pytest.raises(ValueError, match="clip_real applies"):
        SpikingS5(4, 6, clip_real=-1e-4)
    causal = SpikingS5(4, 6, activation="none", discretization="bilinear").double()
    assert torch.allclose(causal(x), _s5_reference(causal, x) + causal.D.detach() * x, atol=1e-12)
    assert torch.allclose(causal.stream(x), causal(x), atol=1e-12)
