"""Energy counts of the SSM layers (recurrent form), checked against hand counts.

Per real token (H channels): S4D ``8P + 1`` MAC per channel (P = d_state/2); SpikingS5
``4P + 4PH + H`` MAC + readout; GSU routes ``(1 - z_W) H^2`` and ``nnz(Tern(y)) H`` AC.
Conventions: ``docs/energy.md`` ("SSM layers") and `bpsn_ext.energy.ssm_counters`.
"""

import pytest
import torch

from bpsn_ext.energy import estimate
from bpsn_ext.energy.ssm_counters import mixer_ops
from bpsn_ext.layers import GSU, S4D, BinaryS4D, GSUMixer, SpikingS5

FIELDS = ("mac", "ac", "mul", "add", "nonlin")


def _counts(report):
    t = report.totals()
    return {f: t[f] for f in FIELDS}


def _expect(**kw):
    return {f: float(kw.get(f, 0)) for f in FIELDS}


def _run(model, x, **kw):
    r = estimate(model, x, coding="individual", **kw)
    assert r.notes == []  # nothing left uncounted
    return r


# -- S4D ----------------------------------------------------------------------------------
def test_s4d_hand_count_real_input():
    torch.manual_seed(0)
    H, d_state, T, N = 2, 4, 3, 1
    P = d_state // 2
    r = _run(S4D(H, d_state), torch.randn(T, N, H))
    # per token and channel: A_bar x 4P + B_bar u 2P + 2Re(C x) 2P + D u 1 = 17 MAC
    assert 8 * P + 1 == 17
    assert _counts(r) == _expect(mac=T * N * H * 17)
    assert r.totals()["dense"] == T * N * H * 17
    assert [row.name for row in r.layers] == ["<model>"]  # the FFT kernel is not captured


def test_s4d_bidirectional_runs_two_recurrences():
    torch.manual_seed(0)
    H, P, T, N = 2, 2, 3, 1
    r = _run(S4D(H, 2 * P, bidirectional=True), torch.randn(T, N, H))
    assert _counts(r) == _expect(mac=T * N * H * (16 * P + 1))


def test_s4d_spike_input_makes_the_input_projections_ac():
    H, P, T, N = 2, 2, 3, 1
    u = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, 0.0]]])  # 3 spikes
    r = _run(S4D(H, 2 * P), u)
    # state A_bar x and readout stay MAC (6P per channel); B_bar u (2P) and D u (1) per spike
    assert _counts(r) == _expect(mac=T * N * H * 6 * P, ac=3 * (2 * P + 1))
    assert r.totals()["dense"] == T * N * H * (8 * P + 1)


# -- SpikingS5 ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "activation, add, nonlin", [("spike", 1, 0), ("gelu", 0, 1), ("none", 0, 0)]
)
def test_spiking_s5_hand_count(activation, add, nonlin):
    torch.manual_seed(0)
    H, P, T, N = 2, 3, 3, 1
    r = _run(SpikingS5(H, P, activation=activation), torch.randn(T, N, H))
    # A_bar x 4P + B_bar u 2PH + 2Re(C x) 2PH + D u H = 12 + 12 + 12 + 2 = 38 MAC per token
    assert 4 * P + 4 * P * H + H == 38
    steps = T * N
    assert _counts(r) == _expect(mac=steps * 38, add=steps * H * add, nonlin=steps * H * nonlin)


def test_spiking_s5_spike_input():
    H, P = 2, 3
    u = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]]])  # 3 spikes, T=3, N=1
    r = _run(SpikingS5(H, P), u)
    # per spike: B_bar u 2P + D u 1 accumulates
    assert _counts(r) == _expect(mac=3 * (4 * P + 2 * P * H), ac=3 * (2 * P + 1), add=3 * H)


# -- masks --------------------------------------------------------------------------------
def test_masks_count_only_real_steps():
    torch.manual_seed(0)
    H, P, T, N = 2, 2, 3, 2
    x = torch.randn(T, N, H)
    lengths = torch.tensor([3, 1])  # 4 real steps out of 6
    bool_mask = torch.tensor([[True, True], [True, False], [True, False]])
    for mask in (lengths, bool_mask):
        r = estimate(S4D(H, 2 * P), x, coding="individual", forward_kwargs={"mask": mask})
        assert _counts(r) == _expect(mac=4 * H * (8 * P + 1))
        r = estimate(SpikingS5(H, 3), x, coding="individual", forward_kwargs={"mask": mask})
        assert _counts(r) == _expect(mac=4 * (12 + 12 * H + H), add=4 * H)
    full = estimate(S4D(H, 2 * P), x, coding="individual")
    assert full.totals()["mac"] == 6 * H * (8 * P + 1)


def _binary_hand(block, x, mask=None):
    """Hand count of a BinaryS4D block (spike or GELU), norm="layer", glu, residual."""
    H, P = block.d_model, block.ssm.d_state // 2
    valid = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask
    M = int(valid.sum())
    n = M * H
    with torch.no_grad():
        _, act = block.forward_with_activation(x, mask)
    exp = dict(mac=n * (8 * P + 1), ac=0, mul=0, add=0, nonlin=0)
    if block.activation_kind == "spike":
        exp["add"] += n  # compare
        exp["ac"] += float((act[valid] != 0).sum()) * 2 * H  # linear H -> 2H on spikes
    else:
        exp["nonlin"] += n  # GELU
        exp["mac"] += n * 2 * H  # linear H -> 2H on real values
    exp["add"] += 2 * n  # linear bias (2H outputs)
    exp["mul"] += n
    exp["nonlin"] += n  # GLU: product + sigmoid
    exp["add"] += n  # residual
    exp["mul"] += 3 * n
    exp["add"] += 4 * n
    exp["nonlin"] += M  # LayerNorm
    return _expect(**exp)


def test_binary_s4d_hand_count_and_mask():
    torch.manual_seed(1)
    block = BinaryS4D(4, 2)
    x = torch.randn(3, 2, 4)
    r = _run(block, x)
    assert [row.name for row in r.layers] == ["<model>"]  # exclusive: no child rows
    assert _counts(r) == _binary_hand(block, x)
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    r = estimate(block, x, coding="individual", forward_kwargs={"mask": mask})
    assert _counts(r) == _binary_hand(block, x, mask)
    # padded steps spike (y = 0 >= threshold 0) but are not counted
    assert r.totals()["mac"] == 3 * 4 * 9


def test_binary_s4d_vs_gelu_variant_glu_becomes_mac():
    torch.manual_seed(2)
    spike = BinaryS4D(4, 2)
    gelu = BinaryS4D(4, 2, activation="gelu")
    gelu.load_state_dict(spike.state_dict())
    x = torch.randn(3, 2, 4)
    rs, rg = _run(spike, x), _run(gelu, x)
    assert _counts(rs) == _binary_hand(spike, x)
    assert _counts(rg) == _binary_hand(gelu, x)
    M, H = 6, 4
    assert rs.totals()["ac"] > 0 and rg.totals()["ac"] == 0
    assert rg.totals()["mac"] - rs.totals()["mac"] == M * H * 2 * H
    assert rs.totals()["dense"] == rg.totals()["dense"]  # same ANN counterpart


# -- GSU ----------------------------------------------------------------------------------
def _gsu_known(norm="none"):
    """H=4, P=1; y = x exactly (C = 0, D = 1); Tern(W) with 5 zeros out of 16."""
    gsu = GSU(4, 2, norm=norm)
    with torch.no_grad():
        gsu.ssm.C.zero_()
        gsu.ssm.D.fill_(1.0)
        W = torch.tensor(
            [
                [1.0, -1.0, 0.01, 1.0],
                [-0.02, 1.0, 1.0, -1.0],
                [1.0, 0.05, -1.0, 1.0],
                [0.1, -1.0, 1.0, -0.03],
            ]
        )  # |w| < 0.15: 5 zeros
        gsu.mixer.weight1.copy_(W)
    return gsu


# two tokens; Tern(y) per token (delta = 0.15 max|y|): [1, 0, -1, 0] and [0, -1, 0, 1]
X_GSU = torch.tensor([[[1.0, 0.1, -0.5, 0.0]], [[0.05, -2.0, 0.2, 1.0]]])


def test_gsu_known_ternary_pattern():
    gsu = _gsu_known()
    M, H, P = 2, 4, 1
    n = M * H
    with torch.no_grad():
        _, ty = gsu.forward_with_activation(X_GSU)
    assert int((ty != 0).sum()) == 4
    r = _run(gsu, X_GSU)
    route_w = (1 - 5 / 16) * H * H * M  # Tern(W) y: 11 nonzero weights per token
    route_a = 4 * H  # W' Tern(y): each nonzero Tern(y) entry meets H weights
    assert route_w == 22 and route_a == 16
    expected = _expect(
        mac=n * (8 * P + 1),  # S4D on real input
        ac=route_w + route_a,
        add=(2 * n + (n - M)) + 2 * n + n,  # Tern(y) compares + max; biases; residual
        mul=M + n,  # delta per token; product n * m
        nonlin=n,  # GELU
    )
    assert _counts(r) == expected
    assert r.totals()["dense"] == n * (8 * P + 1) + 2 * M * H * H
    # route by route
    ops = {o.label: o for o in mixer_ops(gsu.mixer, X_GSU.reshape(-1, H), None, gelu=True)}
    assert ops["Tern(W) y"].ac == 22 and ops["W' Tern(y)"].ac == 16
    assert ops["Tern(W) y"].mac == 0 and ops["W' Tern(y)"].mac == 0


def test_gsu_all_zero_input_costs_no_ac():
    gsu = _gsu_known()
    M, H, P = 2, 4, 1
    r = _run(gsu, torch.zeros(2, 1, 4))
    t = r.totals()
    assert t["ac"] == 0
    assert t["mac"] == M * H * 6 * P  # only the S4D state update and readout
    # the ternary-activation route alone: all-zero Tern(y) costs no AC, the W route still does
    y = X_GSU.reshape(-1, H)
    ops = {o.label: o for o in mixer_ops(gsu.mixer, y, torch.zeros_like(y), gelu=True)}
    assert ops["W' Tern(y)"].ac == 0 and ops["W' Tern(y)"].mac == 0
    assert ops["Tern(W) y"].ac == 22


def test_gsu_mask_counts_only_real_tokens():
    gsu = _gsu_known()
    x = torch.cat([X_GSU, torch.randn(2, 1, 4)], dim=1)  # N = 2, the second sample padded
    mask = torch.tensor([2, 0])
    r = estimate(gsu, x, coding="individual", forward_kwargs={"mask": mask})
    alone = _run(gsu, X_GSU)
    assert _counts(r) == _counts(alone)


def test_gsu_mixer_standalone_and_non_ternary():
    gsu = _gsu_known()
    mixer = gsu.mixer
    y = X_GSU.reshape(-1, 4)
    r = _run(mixer, y)
    n = 8
    assert _counts(r) == _expect(ac=38, add=3 * n - 2 + 2 * n, mul=2 + n, nonlin=n)
    plain = GSUMixer(4, ternary=False)
    r = _run(plain, y)
    assert _counts(r) == _expect(mac=2 * 2 * 16, add=2 * n, mul=n, nonlin=n)


def test_ssm_layers_inside_a_model_are_not_counted_twice():
    torch.manual_seed(3)
    model = torch.nn.Sequential(S4D(4, 2), BinaryS4D(4, 2), SpikingS5(4, 3))
    x = torch.randn(3, 2, 4)
    r = _run(model, x)
    assert sorted(row.name for row in r.layers) == ["0", "1", "2"]
    parts = [_run(model[0], x)]
    with torch.no_grad():
        h = model[0](x)
        parts.append(_run(model[1], h))
        parts.append(_run(model[2], model[1](h)))
    for f in FIELDS:
        assert r.totals()[f] == pytest.approx(sum(p.totals()[f] for p in parts))


# -- SpikingJelly adapters: the step-by-step form costs what the parallel form costs ---------
@pytest.mark.parametrize("name", ["S4DLayer", "BinaryS4DLayer", "GSULayer", "SpikingS5Layer"])
def test_spikingjelly_single_step_mode_counts_like_multi_step(name):
    pytest.importorskip("spikingjelly")
    from bpsn_ext.spikingjelly import ssm_layers as sj_layers

    torch.manual_seed(4)
    multi = getattr(sj_layers, name)(4, 2, step_mode="m")
    single = getattr(sj_layers, name)(4, 2, step_mode="s")
    single.load_state_dict(multi.state_dict())
    x = torch.randn(3, 2, 4)
    rm = _run(multi, x)
    rs = estimate(single, x, coding="individual", step_mode="s")
    assert rs.notes == []
    for f in FIELDS:
        assert rs.totals()[f] == pytest.approx(rm.totals()[f])
    assert rm.totals()["mac"] > 0
