"""The agreement docs/ssm.md states between S4D's recurrent form (`step`) and its FFT form, at
the sequence lengths it names.  The bounds are relative to the output's largest magnitude."""

import pytest
import torch

from bpsn_ext.layers import S4D

# the bounds docs/ssm.md states, per dtype
BOUND = {torch.float64: 1e-13, torch.float32: 2e-5}


def recurrent_vs_fft(dtype: torch.dtype, L: int, seed: int) -> float:
    """max |stream - parallel| / max |parallel| for a default S4D(16, 64) on [L, 4, 16]."""
    torch.manual_seed(seed)
    m = S4D(16, 64).to(dtype)
    x = torch.randn(L, 4, 16, dtype=dtype)
    with torch.no_grad():
        y, ys = m(x), m.stream(x)
    return ((ys - y).abs().max() / y.abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("L", [200, 1000])
def test_recurrent_and_fft_forms_agree_to_the_documented_bound(dtype, L):
    errors = [recurrent_vs_fft(dtype, L, seed) for seed in range(3)]
    assert max(errors) < BOUND[dtype], errors
    assert max(errors) > 0.0  # two different computations: rounding differs somewhere
