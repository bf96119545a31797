"""BPSN core: parallel = sequential, the reductions of the reconstruction, masks, gradients."""

import itertools

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.core.bpsn_functional import bpsn, refractory_gate
from bpsn_ext.core.leaky_integrate import leaky_integrate
from bpsn_ext.surrogate import ATan
from tests.bpsn_reference import bpsn_reference, recurrence, refractory

F64 = torch.float64


def make(T=13, N=3, C=4, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, C, generator=g, dtype=dtype) * 0.8 + 0.3
    lengths = torch.tensor([T, T - 4, 1][:N])
    mask = torch.arange(T)[:, None] < lengths[None, :]
    return x, mask, lengths


def core_args(C=4, gate=0.3, **kw):
    g = torch.Generator().manual_seed(1)
    args = dict(
        v_threshold=torch.full((C,), 0.9, dtype=F64),
        surrogate=ATan(),
        decay_f=torch.rand(C, generator=g, dtype=F64) * 0.8 + 0.1,
        decay_b=torch.rand(C, generator=g, dtype=F64) * 0.8 + 0.1,
        gate=torch.full((C,), gate, dtype=F64),
    )
    args.update(kw)
    return args


@pytest.mark.parametrize(
    "fusion,runaway,method",
    list(
        itertools.product(
            ["gate", "avg", "sum"], ["none", "refractory", "soft_reset"], ["fft", "matmul"]
        )
    ),
)
def test_parallel_equals_sequential(fusion, runaway, method):
    x, mask, _ = make()
    a = core_args()
    s, h = bpsn(x, mask, fusion=fusion, runaway=runaway, method=method, **a)
    s_ref, h_ref = bpsn_reference(
        x,
        mask,
        lam_f=a["decay_f"],
        lam_b=a["decay_b"],
        gate=a["gate"],
        v_threshold=a["v_threshold"],
        surrogate=ATan(),
        fusion=fusion,
        runaway=runaway,
    )
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)
    assert torch.equal(s, s_ref)
    assert s.abs().sum() > 0  # the test input does make the neurons fire


def test_window_kernel_equals_sequential_and_concat_streams():
    x, mask, _ = make()
    taps = torch.tensor([1.0, 0.5, 0.25], dtype=F64)
    a = core_args(kernel="window", taps_f=taps, taps_b=taps * 0.9)
    s, h = bpsn(x, mask, runaway="none", **a)
    s_ref, h_ref = bpsn_reference(
        x,
        mask,
        lam_f=None,
        lam_b=None,
        gate=a["gate"],
        v_threshold=a["v_threshold"],
        surrogate=ATan(),
        kernel="window",
        taps_f=taps,
        taps_b=taps * 0.9,
    )
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)
    assert torch.equal(s, s_ref)
    # concat: forward stream = gate 1, backward stream = gate 0, side by side
    a = core_args()
    cat, _ = bpsn(x, mask, fusion="concat", runaway="none", **a)
    one, zero = torch.ones(4, dtype=F64), torch.zeros(4, dtype=F64)
    fwd, _ = bpsn(x, mask, fusion="gate", runaway="none", **{**a, "gate": one})
    bwd, _ = bpsn(x, mask, fusion="gate", runaway="none", **{**a, "gate": zero})
    assert cat.shape == (13, 3, 8)
    assert torch.equal(cat, torch.cat([fwd, bwd], dim=-1))


def test_forward_only_is_serial_lif_without_reset():
    x, _, _ = make(T=40)
    lam = torch.tensor(0.5, dtype=F64)
    s, h = bpsn(
        x,
        None,
        v_threshold=1.0,
        surrogate=ATan(),
        decay_f=lam,
        decay_b=lam,
        gate=torch.tensor(1.0, dtype=F64),
        runaway="none",
    )
    v = recurrence(x, lam)  # h_t = lam h_{t-1} + x_t, no reset
    torch.testing.assert_close(h, v, rtol=1e-12, atol=1e-12)
    assert torch.equal(s, (v >= 1.0).to(F64))


def test_gate_zero_is_forward_branch_on_reversed_sequence():
    x, mask, _ = make()
    a = core_args()
    back, _ = bpsn(x, mask, runaway="none", **{**a, "gate": torch.zeros(4, dtype=F64)})
    fwd_on_rev, _ = bpsn(
        x.flip(0),
        mask.flip(0),
        runaway="none",
        **{**a, "gate": torch.ones(4, dtype=F64), "decay_f": a["decay_b"]},
    )
    assert torch.equal(back, fwd_on_rev.flip(0))


def test_window_reduces_to_sliding_psn():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    if not hasattr(neuron, "SlidingPSN"):
        pytest.skip("this SpikingJelly has no SlidingPSN")
    k, T, N = 4, 20, 6
    psn = neuron.SlidingPSN(k, exp_init=True, surrogate_function=ATan(), step_mode="m").double()
    with torch.no_grad():
        psn.bias.fill_(-0.7)
    x = torch.randn(T, N, dtype=F64)
    taps = psn.weight.detach().flip(0)  # SlidingPSN weights the most recent input last
    s, _ = bpsn(
        x,
        None,
        v_threshold=0.7,
        surrogate=ATan(),
        kernel="window",
        taps_f=taps,
        taps_b=taps,
        gate=torch.tensor(1.0, dtype=F64),
        runaway="none",
    )
    assert torch.equal(s, psn(x))


def test_soft_reset_reproduces_lif_with_reset_exactly():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    x, _, _ = make(T=60, N=4, C=5)
    lif = neuron.LIFNode(
        tau=2.0,
        decay_input=False,
        v_reset=None,
        v_threshold=1.0,
        surrogate_function=ATan(),
        step_mode="m",
    )
    ref = lif(x * 1.5)
    lam = torch.tensor(0.5, dtype=F64)  # 1 - 1/tau
    s, _ = bpsn(
        x * 1.5,
        None,
        v_threshold=1.0,
        surrogate=ATan(),
        decay_f=lam,
        decay_b=lam,
        gate=torch.tensor(1.0, dtype=F64),
        runaway="soft_reset",
    )
    assert ref.sum() > 10 and torch.equal(s, ref)


@pytest.mark.parametrize("period", [1, 2, 3])
def test_refractory_parallel_equals_sequential(period):
    g = torch.Generator().manual_seed(period)
    raw = (torch.rand(200, 5, 3, generator=g) < 0.7).float()
    gate = refractory_gate(raw, period)
    assert torch.equal(raw * gate, refractory(raw, period))
    if period == 1:  # exactly S_t = S~_t (1 - S_{t-1})
        out, prev = [], torch.zeros_like(raw[0])
        for t in range(raw.shape[0]):
            prev = raw[t] * (1 - prev)
            out.append(prev)
        assert torch.equal(raw * gate, torch.stack(out))


def test_no_uninterrupted_firing_under_constant_drive():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    T, N, C = 128, 2, 8
    for drive in (1.2, 2.0, 5.0):
        x = torch.full((T, N, C), drive)
        rate = BPSN(C)(x).mean().item()
        assert rate <= 0.5 + 1e-6, (drive, rate)
        rate3 = BPSN(C, refractory_steps=3)(x).mean().item()
        assert rate3 <= 0.25 + 1e-6
        assert BPSN(C, runaway="none")(x).mean().item() == 1.0
        if hasattr(neuron, "SlidingPSN"):  # SpikingJelly 2.0: the failure mode BPSN avoids
            sliding = neuron.SlidingPSN(4, surrogate_function=ATan(), step_mode="m")
            assert sliding(x).mean().item() == 1.0


def test_padding_content_and_length_invariance():
    x, mask, lengths = make(T=12)
    layer = BPSN(4, fusion="gate").double()
    with torch.no_grad():
        layer.gate_logit.fill_(0.4)
    out = layer(x, lengths)
    assert torch.equal(out, layer(x, mask))  # lengths and bool mask agree
    junk = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    assert torch.equal(layer(junk, mask), out)  # pad contents do not matter
    assert (out[~mask] == 0).all()
    # a sample padded to 12 with 8 valid steps equals the unpadded 8-step sample
    n = int(lengths[1])
    alone = layer(x[:n, 1:2])
    assert torch.equal(out[:n, 1:2], alone)


def test_parameters_do_not_depend_on_T_and_any_length_runs():
    layer = BPSN(6)
    n_params = sum(p.numel() for p in layer.parameters())
    for T in (1, 7, 300):
        assert layer(torch.randn(T, 2, 6)).shape == (T, 2, 6)
    assert sum(p.numel() for p in layer.parameters()) == n_params == 6 * 3


@pytest.mark.parametrize("runaway", ["soft_reset", "refractory", "none"])
def test_gradients_match_the_sequential_reference(runaway):
    x, mask, _ = make(T=10)
    layer = BPSN(4, runaway=runaway, fusion="gate").double()
    with torch.no_grad():
        layer.decay_f_logit.uniform_(-1, 1)
        layer.decay_b_logit.uniform_(-1, 1)
        layer.gate_logit.uniform_(-1, 1)
        layer.v_threshold.uniform_(0.5, 1.0)
    xa = x.clone().requires_grad_(True)
    up = torch.rand(10, 3, 4, dtype=F64)
    ours = torch.autograd.grad((layer(xa, mask) * up).sum(), [xa, *layer.parameters()])
    xb = x.clone().requires_grad_(True)
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    df, db, gl, th = params
    s_ref, _ = bpsn_reference(
        xb,
        mask,
        lam_f=df.sigmoid(),
        lam_b=db.sigmoid(),
        gate=gl.sigmoid(),
        v_threshold=th,
        surrogate=ATan(),
        runaway=runaway,
    )
    ref = torch.autograd.grad((s_ref * up).sum(), [xb, *params])
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert all(g.abs().sum() > 0 for g in ours)
    if runaway == "refractory":  # silent steps still pass the surrogate gradient to the input
        silent = layer(x, mask).detach() == 0
        assert (ours[0][silent & mask[..., None]] != 0).any()


@pytest.mark.parametrize(
    "fusion,runaway", [("gate", "none"), ("sum", "none"), ("gate", "soft_reset"), ("avg", "none")]
)
def test_gradcheck_with_smooth_surrogate(fusion, runaway):
    """With the surrogate's smooth primitive in place of the step the op is differentiable, so
    the analytic gradients of input, decays, gate and threshold can be checked numerically."""
    x, mask, _ = make(T=6, N=2, C=3)
    C = 3
    params = [torch.rand(C, dtype=F64) * 0.6 + 0.2 for _ in range(3)] + [
        torch.full((C,), 0.8, dtype=F64)
    ]

    def f(x, lf, lb, g, th):
        return bpsn(
            x,
            mask,
            v_threshold=th,
            surrogate=ATan(spiking=False),
            decay_f=lf,
            decay_b=lb,
            gate=g,
            fusion=fusion,
            runaway=runaway,
        )[0]

    inputs = [x.requires_grad_(True)] + [p.requires_grad_(True) for p in params]
    assert torch.autograd.gradcheck(f, inputs)


def test_leaky_integration_methods_agree():
    x = torch.randn(70, 3, 5, dtype=F64)
    lam = torch.rand(5, dtype=F64) * 0.9 + 0.05
    ref = recurrence(x, lam)
    for method in ("fft", "matmul", "loop", "auto"):
        torch.testing.assert_close(
            leaky_integrate(x, lam, method=method), ref, rtol=1e-10, atol=1e-10
        )
        torch.testing.assert_close(
            leaky_integrate(x, lam, method=method, reverse=True),
            recurrence(x, lam, reverse=True),
            rtol=1e-10,
            atol=1e-10,
        )


def test_channel_dim_for_conv_layout_and_dtypes():
    layer = BPSN(3, channel_dim=2)
    x = torch.randn(9, 2, 3, 4, 4) + 0.8
    out = layer(x)
    assert out.shape == x.shape
    # per-channel parameters really act per channel: channel 1 with a huge threshold is silent
    with torch.no_grad():
        layer.v_threshold[1] = 1e9
    assert layer(x)[:, :, 1].sum() == 0 and layer(x)[:, :, 0].sum() > 0
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert BPSN(4)(torch.randn(5, 2, 4, dtype=dtype)).dtype == dtype
    # non-contiguous input gives the same result; the output does not alias the input
    base = torch.randn(4, 7, 2)
    nc = base.transpose(1, 2)
    layer = BPSN(7)
    out = layer(nc)
    assert torch.equal(out, layer(nc.contiguous()))
    assert out.data_ptr() != nc.data_ptr()


def test_bad_input_gives_clear_errors():
    layer = BPSN(4)
    x = torch.randn(5, 2, 4)
    with pytest.raises(ValueError, match=r"bool mask must have shape \[T, N\] = \[5, 2\]"):
        layer(x, torch.ones(5, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        layer(x, torch.ones(5, 2))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\]"):
        layer(x, torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="lengths must lie"):
        layer(x, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match=r"integer lengths must have shape \[N\] = \[2\]"):
        layer(x, torch.tensor([5, 2, 1]))
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        BPSN()(torch.randn(5))
    with pytest.raises(ValueError, match="T = 0"):
        layer(torch.randn(0, 2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(5, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expects 4 channels in dimension 2 .* x.shape\[2\] = 3"):
        layer(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="v_threshold must be finite"):
        BPSN(v_threshold=float("inf"))
    with pytest.raises(TypeError, match="v_threshold must be a Python float"):
        BPSN(v_threshold=1)
    with pytest.raises(ValueError, match=r"decay_init must lie in \(0, 1\)"):
        BPSN(decay_init=1.0)
    with pytest.raises(ValueError, match="fusion must be one of"):
        BPSN(fusion="max")
    with pytest.raises(ValueError, match="soft_reset' needs kernel='leak'"):
        BPSN(kernel="window", runaway="soft_reset")
    with pytest.raises(ValueError, match="refractory_steps must be an int >= 1"):
        BPSN(refractory_steps=0)
    with pytest.raises(ValueError, match="channel_dim=1 points at T or N"):
        BPSN(2, channel_dim=1)(torch.randn(3, 2, 2))
    with pytest.raises(ValueError, match=r"channel_dim=3 is outside the rank-3 input"):
        BPSN(2, channel_dim=3)(torch.randn(3, 2, 2))
    with pytest.raises(ValueError, match=r"channel_dim=-4 is outside the rank-3 input"):
        BPSN(channel_dim=-4)(torch.randn(3, 2, 2))
    with pytest.raises(TypeError, match="channel_dim must be an int or None"):
        BPSN(channel_dim="last")


def test_no_graph_breaks_under_dynamo_with_a_bool_mask():
    """torch.compile sees one graph (integer lengths are validated on the host: pass a bool
    mask under torch.compile)."""
    layer = BPSN(4)
    x = torch.randn(16, 2, 4)
    mask = torch.arange(16)[:, None] < torch.tensor([16, 9])[None]
    explanation = torch._dynamo.explain(layer)(x, mask)
    assert explanation.graph_break_count == 0


def test_split_fusion_is_forward_half_and_backward_half():
    x, mask, _ = make(C=6)
    split = BPSN(6, fusion="split").double()
    ref = BPSN(6, fusion="gate").double()
    with torch.no_grad():
        ref.decay_f_logit.copy_(split.decay_f_logit)
        ref.decay_b_logit.copy_(split.decay_b_logit)
    out = split(x, mask)
    with torch.no_grad():
        ref.gate_logit.fill_(float("inf"))
    fwd = ref(x, mask)
    with torch.no_grad():
        ref.gate_logit.fill_(float("-inf"))
    bwd = ref(x, mask)
    assert torch.equal(out[..., :3], fwd[..., :3]) and torch.equal(out[..., 3:], bwd[..., 3:])
    assert list(split.state_dict()) == ["decay_f_logit", "decay_b_logit", "v_threshold"]
    # shared parameters (channels=None) split the input's channels at call time
    shared = BPSN(fusion="split").double()
    assert shared(x, mask)[..., :3].sum() > 0 and shared(x, mask).shape == x.shape
    with pytest.raises(ValueError, match="fusion='split' needs channels >= 2"):
        BPSN(1, fusion="split")
    with pytest.raises(ValueError, match="needs at least 2 channels"):
        BPSN(fusion="split")(torch.randn(3, 2, 1))


@pytest.mark.parametrize("runaway", ["refractory", "none", "soft_reset"])
def test_split_fast_path_equals_the_gate_vector_form(runaway):
    """The default split fusion integrates only the half of the channels each direction needs;
    it must equal the general form with a gate of 1 on the first half and 0 on the rest."""
    x, mask, _ = make(C=5)
    a = core_args(C=5)
    gate = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=F64)
    xs, xg = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    s1, h1 = bpsn(xs, mask, fusion="split", runaway=runaway, **{**a, "gate": gate})
    s2, h2 = bpsn(xg, mask, fusion="gate", runaway=runaway, **{**a, "gate": gate})
    assert torch.equal(s1, s2)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)
    up = torch.rand_like(s1)
    (g1,) = torch.autograd.grad((s1 * up).sum(), xs)
    (g2,) = torch.autograd.grad((s2 * up).sum(), xg)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_block_scan_three_levels_and_tiny_decays_match_the_recurrence():
    """T > 64 * 64 needs three block levels; lam^64 underflows for small decays (no nan)."""
    x = torch.randn(64 * 64 + 170, 2, 3, dtype=F64)
    lam = torch.tensor([0.02, 0.5, 0.97], dtype=F64)
    ref = recurrence(x, lam)
    torch.testing.assert_close(leaky_integrate(x, lam, method="chunked"), ref, rtol=1e-9, atol=1e-9)
    scalar = torch.tensor(0.3, dtype=F64)
    torch.testing.assert_close(
        leaky_integrate(x, scalar, method="chunked"), recurrence(x, scalar), rtol=1e-9, atol=1e-9
    )
    xg = x[:300].clone().requires_grad_(True)
    lg = lam.clone().requires_grad_(True)
    grads = torch.autograd.grad(leaky_integrate(xg, lg).pow(2).sum(), [xg, lg])
    ref_grads = torch.autograd.grad(recurrence(xg, lg).pow(2).sum(), [xg, lg])
    for a, b in zip(grads, ref_grads):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


# -- the channel rule ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 2, 6), (7, 2, 6, 3, 3), (7, 2, 6, 2, 3, 2)])
def test_auto_channel_axis_is_dimension_2(shape):
    """[T, N, C], [T, N, C, H, W], [T, N, C, D, H, W]: the split acts on dimension 2."""
    x = torch.randn(*shape) + 0.6
    auto, explicit = BPSN(), BPSN(channel_dim=2)
    assert torch.equal(auto(x), explicit(x))
    gate = auto.fusion_gate(x)
    assert gate.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    # the first half of the channels reacts only to the past, the second only to the future
    x2 = x.clone()
    x2[-1] += 5.0  # change the last step: the forward half's earlier steps cannot see it
    diff = (auto(x2) != auto(x))[:-1]
    assert not diff.narrow(2, 0, 3).any() and diff.narrow(2, 3, 3).any()


def test_rank4_input_is_ambiguous_unless_channel_dim_says():
    x = torch.randn(5, 2, 4, 6) + 0.5
    expected = r"\[5, 2, 4, 6\] holds the channels: pass channel_dim=2 for a \[T, N, C, L\]"
    with pytest.raises(ValueError, match=expected):
        BPSN()(x)
    conv, tokens = BPSN(channel_dim=2), BPSN(channel_dim=-1)
    assert torch.equal(conv(x), BPSN(channel_dim=2)(x))
    assert conv.fusion_gate(x).numel() == 4 and tokens.fusion_gate(x).numel() == 6


def test_split_without_channel_axis_is_an_error_not_a_batch_split():
    x = torch.randn(9, 4)  # [T, N]: four samples, no channels
    with pytest.raises(ValueError, match=r"shape \[9, 4\] has no channel axis"):
        BPSN()(x)
    # other fusions treat the four samples alike: identical samples fire identically
    same = torch.randn(9, 1).expand(9, 4).contiguous() + 0.5
    out = BPSN(fusion="gate")(same)
    assert all(torch.equal(out[:, 0], out[:, i]) for i in range(4))


@pytest.mark.parametrize("method", ["auto", "chunked", "loop"])
def test_batch_and_spatial_permutations_commute_with_bpsn(method):
    torch.manual_seed(0)
    layer = BPSN(4, method=method)
    with torch.no_grad():
        layer.decay_f_logit.uniform_(-1, 1)
        layer.v_threshold.uniform_(0.5, 1.0)
    x = torch.randn(11, 3, 4, 5, 5) + 0.4
    lengths = torch.tensor([11, 6, 9])
    out = layer(x, lengths)
    pb = torch.tensor([2, 0, 1])
    assert torch.equal(layer(x[:, pb], lengths[pb]), out[:, pb])
    ph, pw = torch.randperm(5), torch.randperm(5)
    assert torch.equal(layer(x[:, :, :, ph][..., pw]), layer(x)[:, :, :, ph][..., pw])
    # permuting channels is NOT a symmetry: the split assigns directions by channel index
    pc = torch.tensor([3, 2, 1, 0])
    assert not torch.equal(layer(x[:, :, pc]), out[:, :, pc])
