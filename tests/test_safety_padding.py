"""NaN/Inf in padded steps never reach real steps (every torch path, the sequence layers and
the LRA model); NaN/Inf in real steps give the recurrence's answer on every BPSN path."""

from __future__ import annotations

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.core.leaky_integrate import leaky_integrate
from bpsn_ext.kernels import cpu_native
from bpsn_ext.layers import GSU, S4D, BinaryS4D
from bpsn_ext.models.lra_classifier import LAYERS, LRAClassifier

TORCH_PATHS = ("chunked", "fft", "matmul", "loop")
T, N, C = 150, 3, 6
LENGTHS = torch.tensor([T, 120, 37])


def poisoned(shape=(T, N, C), value=float("nan")):
    torch.manual_seed(0)
    x = torch.randn(shape)
    for n, length in enumerate(LENGTHS.tolist()):
        x[length:, n] = value
    return x


def real(y):
    return torch.cat([y[:length, n] for n, length in enumerate(LENGTHS.tolist())])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("method", TORCH_PATHS)
@pytest.mark.parametrize("fusion", ["split", "gate", "concat", "avg"])
def test_bpsn_padding_cannot_reach_real_steps(method, fusion, value):
    torch.manual_seed(1)
    layer = BPSN(C, method=method, fusion=fusion, surrogate="Sigmoid")
    x = poisoned(value=value)
    s, h = layer.forward_with_membrane(x, LENGTHS)
    s0, h0 = layer.forward_with_membrane(torch.where(x.isfinite(), x, 0.0), LENGTHS)
    assert torch.isfinite(h).all() and torch.isfinite(s).all()
    torch.testing.assert_close(real(s), real(s0))
    torch.testing.assert_close(h, h0)
    x.requires_grad_(True)
    layer(x, LENGTHS).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_soft_reset_padding_cannot_reach_real_steps():
    layer = BPSN(C, runaway="soft_reset", fusion="gate")
    s, h = layer.forward_with_membrane(poisoned(), LENGTHS)
    assert torch.isfinite(h).all() and torch.isfinite(s).all()


def recurrence(x, lam):
    out, h = [], torch.zeros_like(x[0])
    for x_t in x.unbind(0):
        h = lam * h + x_t
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("method", ["chunked", "fft", "matmul"])
def test_non_finite_real_steps_follow_the_recurrence(method):
    torch.manual_seed(2)
    x = torch.randn(200, 2, 4, dtype=torch.float64)
    x[40, 0, 0], x[70, 1, 1], x[90, 1, 2], x[95, 1, 2] = (
        float("nan"),
        float("inf"),
        float("inf"),
        -float("inf"),
    )
    x[150, 0, 3] = -float("inf")
    lam = torch.tensor([0.9, 0.5, 0.99, 0.3], dtype=torch.float64)
    for reverse in (False, True):
        got = leaky_integrate(x, lam, reverse=reverse, method=method)
        want = recurrence(x.flip(0), lam).flip(0) if reverse else recurrence(x, lam)
        torch.testing.assert_close(got, want, equal_nan=True)


@pytest.mark.skipif(not cpu_native.available(), reason="no native kernel here")
@pytest.mark.parametrize("method", TORCH_PATHS)
def test_native_and_torch_paths_agree_on_non_finite_real_steps(method):
    torch.manual_seed(3)
    layer = BPSN(C, surrogate="Sigmoid")
    x = poisoned(value=float("nan"))
    x[40, 0, :2], x[100, 1, 4] = float("nan"), float("inf")
    s_nat, h_nat = layer.forward_with_membrane(x, LENGTHS)
    layer.method = method
    s, h = layer.forward_with_membrane(x, LENGTHS)
    assert torch.equal(h.isnan(), h_nat.isnan()) and h_nat.isnan().any()
    torch.testing.assert_close(h, h_nat, equal_nan=True, rtol=1e-4, atol=1e-4)
    assert (s != s_nat).float().mean() < 1e-2


@pytest.mark.parametrize(
    "make",
    [
        lambda: S4D(C),
        lambda: S4D(C, bidirectional=True),
        lambda: BinaryS4D(C),
        lambda: GSU(C),
        lambda: GSU(C, norm="batch"),
    ],
)
def test_sequence_layers_ignore_non_finite_padding(make):
    layer = make()
    x = poisoned()
    y = layer(x, LENGTHS)
    y0 = layer(torch.where(x.isfinite(), x, 0.0), LENGTHS)
    assert torch.isfinite(y).all()
    assert torch.equal(y, y0)  # docs/ssm.md: identical whatever the padding contains


def test_s4d_streaming_ignores_non_finite_padding():
    layer = S4D(C)
    x = poisoned()
    valid = torch.arange(T)[:, None] < LENGTHS
    y = layer.stream(x, valid)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_lra_classifier_ignores_non_finite_padding(layer, norm):
    torch.manual_seed(4)
    model = LRAClassifier(C, 5, layer=layer, d_model=8, n_layers=2, d_state=4, norm=norm)
    x = poisoned()
    logits = model(x, LENGTHS)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model(torch.where(x.isfinite(), x, 0.0), LENGTHS))
