"""Surrogate spike functions: forward tie rules, backward formulas, host-framework parity."""

import io
import math
import pickle

import pytest
import torch

from bpsn_ext import surrogate as sg

GRID = torch.linspace(-3.0, 3.0, 20001, dtype=torch.float32)
ALL = [sg.ATan(), sg.Sigmoid(), sg.FastSigmoid(), sg.S2NN()]


def grad_of(fn, x, upstream=None):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    upstream = torch.ones_like(y) if upstream is None else upstream
    (g,) = torch.autograd.grad(y, x, upstream)
    return y.detach(), g


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_forward_is_heaviside_with_tie_rule(fn):
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 2.0])
    assert fn(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    strict = type(fn)(fire_ge=False)
    assert strict(x).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_spikes_follow_input_dtype(dtype):
    x = torch.randn(5, dtype=dtype)
    assert sg.S2NN()(x).dtype == dtype


def analytic(name, x):
    if name == "atan":
        return 1.0 / (1 + (math.pi * x) ** 2)  # alpha = 2
    if name == "sigmoid":
        s = torch.sigmoid(4 * x)
        return 4 * s * (1 - s)
    if name == "fast_sigmoid":
        return 1 / (25 * x.abs() + 1) ** 2
    s = torch.sigmoid(4 * x)
    return torch.where(x < 0, 4 * s * (1 - s), 1 / (x.clamp_min(0) + 1))


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_backward_matches_analytic_formula(fn):
    x = GRID.double()
    _, g = grad_of(fn, x)
    torch.testing.assert_close(g, analytic(fn.name, x), rtol=1e-12, atol=1e-12)


def test_s2nn_reference_values_and_continuity():
    fn = sg.S2NN()
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    g = fn.derivative(x)
    expected = [0.0707, 0.4200, 1.0, 0.6667, 0.5, 0.25]
    assert g.tolist() == pytest.approx(expected, abs=1e-4)
    left = fn.derivative(torch.tensor([-1e-9], dtype=torch.float64))
    assert left.item() == pytest.approx(1.0, abs=1e-8)  # g'(0-) = alpha/4 = beta = g'(0+)
    p = sg.S2NN(spiking=False)
    assert p(torch.tensor([0.0])).item() == pytest.approx(0.5)
    assert p(torch.tensor([-1e-7])).item() == pytest.approx(0.5, abs=1e-6)  # continuous primitive


def test_s2nn_has_no_pole_at_minus_one():
    _, g = grad_of(sg.S2NN(), torch.tensor([-1.0, -1.0 - 1e-6, -2.0]))
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_primitive_derivative_equals_surrogate(fn):
    smooth = type(fn)(spiking=False)
    x = torch.linspace(-2.5, 2.5, 1001, dtype=torch.float64)
    _, g = grad_of(smooth, x)
    torch.testing.assert_close(g, fn.derivative(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_primitive_gradcheck_fp64(fn):
    smooth = type(fn)(spiking=False)
    x = (torch.randn(16, dtype=torch.float64) + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(smooth, (x,))


def test_set_spiking_mode_switches_forward():
    fn = sg.ATan()
    fn.set_spiking_mode(False)
    assert fn(torch.tensor([0.0])).item() == pytest.approx(0.5)
    fn.set_spiking_mode(True)
    assert fn(torch.tensor([0.0])).item() == 1.0


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.name)
def test_picklable_and_savable(fn):
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.params == fn.params and clone.fire_ge == fn.fire_ge
    buf = io.BytesIO()
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2), fn), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(3, 2)
    assert torch.equal(loaded(x), torch.nn.Sequential(loaded[0], fn)(x))


def test_bad_hyper_parameters_are_rejected_clearly():
    with pytest.raises(TypeError, match=r"alpha must be a Python float, got int 2; write 2.0"):
        sg.ATan(alpha=2)
    with pytest.raises(ValueError, match="alpha must be finite"):
        sg.S2NN(alpha=float("nan"))
    with pytest.raises(ValueError, match="slope must be > 0"):
        sg.FastSigmoid(slope=-1.0)
    with pytest.raises(TypeError, match="floating-point tensor"):
        sg.S2NN()(torch.tensor([1, 2]))


def test_resolve_names_objects_and_errors():
    assert isinstance(sg.resolve(None), sg.S2NN)
    made = sg.resolve("ATan", fire_ge=False)
    assert isinstance(made, sg.ATan) and made.fire_ge is False
    assert isinstance(sg.resolve("fast-sigmoid"), sg.FastSigmoid)
    mine = sg.Sigmoid()
    assert sg.resolve(mine) is mine
    assert sg.resolve(torch.sigmoid) is torch.sigmoid
    with pytest.raises(ValueError, match=r"unknown surrogate name 'tanh'.*atan, fast_sigmoid"):
        sg.resolve("tanh")
    with pytest.raises(TypeError, match=r"write ATan\(\) instead"):
        sg.resolve(sg.ATan)
    with pytest.raises(TypeError, match="got int"):
        sg.resolve(3)


# --------------------------------------------------------------------------- host parity
def test_parity_with_spikingjelly_surrogates():
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    x = torch.cat([GRID, torch.tensor([-1.0, 0.0])])
    up = torch.rand_like(x)
    pairs = [(sg.S2NN(), sj.S2NN()), (sg.ATan(), sj.ATan()), (sg.Sigmoid(), sj.Sigmoid())]
    for ours, theirs in pairs:
        y1, g1 = grad_of(ours, x, up)
        y2, g2 = grad_of(theirs, x, up)
        assert torch.equal(y1, y2), type(ours).__name__
        assert torch.equal(g1, g2), type(ours).__name__  # bit for bit
        # the smooth primitives agree up to SJ's 1e-5 guard inside the S2NN log
        ours_p, theirs_p = type(ours)(spiking=False), type(theirs)(spiking=False)
        torch.testing.assert_close(ours_p(x), theirs_p(x), rtol=0, atol=2e-5)


def test_parity_with_snntorch_surrogates():
    snn_sg = pytest.importorskip("snntorch.surrogate")
    x = GRID[GRID != 0]  # snnTorch fires at x > 0, ours here too
    up = torch.rand_like(x)
    for ours, theirs in [
        (sg.ATan(fire_ge=False), snn_sg.atan()),
        (sg.FastSigmoid(fire_ge=False), snn_sg.fast_sigmoid()),
    ]:
        y1, g1 = grad_of(ours, x, up)
        y2, g2 = grad_of(theirs, x, up)
        assert torch.equal(y1, y2)
        torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-7)
