"""Spiking S5 initialised as S5's reference code does it, and TiedDropout tied as s4's
``DropoutNd(tie=True)`` on every rank.  The references are written here from the definitions
(HiPPO-LegS and its normal part; DropoutNd's mask shape), independently of the layer code."""

import math

import numpy as np
import pytest
import torch

from bpsn_ext.layers import SpikingS5, TiedDropout

H, P = 256, 64


def hippo_n_eigenvalues(N: int) -> np.ndarray:
    """Eigenvalues of S = A + p p^T, A = -HiPPO-LegS, p_n = sqrt(n + 1/2), straight from the
    matrices (a general eigensolver, not the Hermitian one the layer uses)."""
    n = np.arange(N)
    r = np.sqrt(2 * n + 1)
    A = -(np.tril(np.outer(r, r)) - np.diag(n))
    p = np.sqrt(n + 0.5)
    return np.linalg.eigvals(A + np.outer(p, p))


def test_default_eigenvalues_are_hippo_n():
    s5 = SpikingS5(8, 16)
    ref = hippo_n_eigenvalues(32)
    assert np.allclose(ref.real, -0.5)
    kept = np.sort(s5.A_imag.detach().numpy())
    assert np.allclose(kept, np.sort(ref.imag)[:16], atol=1e-4)  # one of each conjugate pair
    assert torch.allclose(s5.A.real, torch.full((16,), -0.5))
    free = SpikingS5(8, 16, real_part="free")
    assert torch.allclose(free.A_real, torch.full((16,), -0.5))


def test_block_initialisation_repeats_a_smaller_hippo_n():
    s5 = SpikingS5(8, 16, init_blocks=4)
    ref = np.sort(hippo_n_eigenvalues(8).imag)[:4]
    assert np.allclose(s5.A_imag.detach().numpy().reshape(4, 4), ref, atol=1e-4)
    with pytest.raises(ValueError, match="init_blocks must be an int >= 1 dividing d_state=16"):
        SpikingS5(8, 16, init_blocks=3)


@pytest.mark.parametrize(
    "C_init, expected",
    [
        ("trunc_standard_normal", 1.0 / P),  # S5's default
        ("lecun_normal", 1.0 / (P * H)),
        ("complex_normal", 1.0),
    ],
)
def test_B_and_C_have_s5_scales(C_init, expected):
    torch.manual_seed(0)
    s5 = SpikingS5(H, P, C_init=C_init)
    B, C = torch.view_as_complex(s5.B.detach()), torch.view_as_complex(s5.C.detach())
    assert (B.abs() ** 2).mean().item() == pytest.approx(1.0 / (2 * P), rel=0.05)
    assert (C.abs() ** 2).mean().item() == pytest.approx(expected, rel=0.05)


def test_earlier_draws_are_options():
    torch.manual_seed(0)
    s5 = SpikingS5(H, P, A_init="s4d_lin", B_init="complex_normal", C_init="complex_normal")
    assert torch.allclose(s5.A_imag, math.pi * torch.arange(P, dtype=torch.float32))
    B = torch.view_as_complex(s5.B.detach())
    assert (B.abs() ** 2).mean().item() == pytest.approx(1.0 / H, rel=0.05)
    with pytest.raises(ValueError, match="A_init='hippo_n'"):
        SpikingS5(8, 4, A_init="s4d_lin")  # S5's B needs HiPPO-N's eigenvectors
    with pytest.raises(ValueError, match="C_init must be one of"):
        SpikingS5(8, 4, C_init="normal")


def dropout_nd_tied(x_time_first: torch.Tensor, p: float) -> torch.Tensor:
    """s4's DropoutNd(tie=True, transposed=True) on [B, D, L...]: mask X.shape[:2] + 1s,
    applied to the time-first input moved to that layout and back."""
    x = x_time_first.movedim(0, -1)  # [N, C, *rest, T]
    mask = torch.rand(*x.shape[:2], *(1,) * (x.dim() - 2), dtype=x.dtype) < 1.0 - p
    return (x * mask * (1.0 / (1 - p))).movedim(-1, 0)


@pytest.mark.parametrize("shape", [(6, 3, 8), (6, 3, 8, 5), (6, 3, 8, 4, 5)])
def test_tied_dropout_ties_like_dropout_nd_on_every_rank(shape):
    drop = TiedDropout(0.5).train()
    x = torch.randn(*shape, dtype=torch.float64)
    out = drop(x)
    kept = out != 0
    # one decision per (sample, channel): the same over time and every trailing axis
    per_channel = kept.movedim(0, -1).flatten(2)
    assert torch.equal(per_channel.all(-1), per_channel.any(-1))
    assert 0 < kept.float().mean() < 1
    assert torch.allclose(out[kept], 2 * x[kept])
    # the same mask law as the reference: both tie the same axes, so equal shapes of masks
    ref = dropout_nd_tied(x, 0.5) != 0
    ref_per_channel = ref.movedim(0, -1).flatten(2)
    assert torch.equal(ref_per_channel.all(-1), ref_per_channel.any(-1))
