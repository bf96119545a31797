"""The agreement docs/ssm.md states between S4D's recurrent form (`step`) and its FFT form.

The bounds and the sequence lengths are read from the sentence in docs/ssm.md, so the page
cannot promise more than this test checks.  They are relative to the output's largest
magnitude."""

import re
from pathlib import Path

import pytest
import torch

from bpsn_ext.layers import S4D

SSM_PAGE = Path(__file__).resolve().parents[1] / "docs" / "ssm.md"
CLAIM = re.compile(
    r"better than (?P<f64>\d(?:\.\d+)?e-\d+) in float64 and (?P<f32>\d(?:\.\d+)?e-\d+) in"
    r"\s+float32 at L = (?P<L1>\d+) and (?P<L2>\d+)"
)


def documented_claim() -> tuple[dict[torch.dtype, float], list[int]]:
    """The bounds per dtype and the lengths that docs/ssm.md's recurrent-form sentence names."""
    text = " ".join(SSM_PAGE.read_text(encoding="utf-8").split())
    found = CLAIM.search(text)
    assert found, f"{SSM_PAGE}: the recurrent-vs-FFT agreement sentence is gone or reworded"
    bounds = {torch.float64: float(found["f64"]), torch.float32: float(found["f32"])}
    return bounds, [int(found["L1"]), int(found["L2"])]


BOUND, LENGTHS = documented_claim()


def recurrent_vs_fft(dtype: torch.dtype, L: int, seed: int) -> float:
    """max |stream - parallel| / max |parallel| for a default S4D(16, 64) on [L, 4, 16]."""
    torch.manual_seed(seed)
    m = S4D(16, 64).to(dtype)
    x = torch.randn(L, 4, 16, dtype=dtype)
    with torch.no_grad():
        y, ys = m(x), m.stream(x)
    return ((ys - y).abs().max() / y.abs().max()).item()


def test_the_page_states_tight_bounds():
    assert BOUND[torch.float64] <= 1e-12 and BOUND[torch.float32] <= 1e-4, BOUND


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("L", LENGTHS)
def test_recurrent_and_fft_forms_agree_to_the_documented_bound(dtype, L):
    errors = [recurrent_vs_fft(dtype, L, seed) for seed in range(3)]
    assert max(errors) < BOUND[dtype], errors
    assert max(errors) > 0.0  # two different computations: rounding differs somewhere
