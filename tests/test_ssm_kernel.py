"""S4D kernel and the diagonal-recurrence primitives (`bpsn_ext.core.diagonal_ssm`, `layers.S4D`).

The references here are written from the equations (S4D, Gu et al. 2022), not from
the library code: a ZOH recurrence from the raw parameters and a direct Vandermonde sum.
"""

import math

import pytest
import torch

from bpsn_ext.core import diagonal_ssm as core_ssm
from bpsn_ext.core.diagonal_ssm import (
    bidirectional_conv,
    causal_conv,
    diagonal_scan,
    sequential_scan,
    vandermonde,
    vandermonde_transpose,
)
from bpsn_ext.layers import S4D

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def randomised_s4d(H=3, N=8, dtype=torch.float64, seed=0, **kw) -> S4D:
    """An S4D whose parameters are moved off the init (so the test is not init-specific)."""
    torch.manual_seed(seed)
    m = S4D(H, N, **kw)
    with torch.no_grad():
        m.log_A_real.add_(0.3 * torch.randn_like(m.log_A_real))
        m.A_imag.add_(0.5 * torch.randn_like(m.A_imag))
        m.log_dt.uniform_(math.log(0.01), math.log(0.5))
    return m.to(dtype)


def zoh_recurrence(m: S4D, u: torch.Tensor, backward_c: bool = False) -> torch.Tensor:
    """x_k = exp(dt A) x_{k-1} + (exp(dt A) - 1)/A u_k ; y_k = 2 Re(C x_k) (no D)."""
    A = -torch.exp(m.log_A_real.detach()) + 1j * m.A_imag.detach()
    dt = torch.exp(m.log_dt.detach())[:, None]
    C = torch.view_as_complex((m.C_backward if backward_c else m.C).detach().contiguous())
    Ab, Bb = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A
    x = torch.zeros(u.shape[1], *A.shape, dtype=Ab.dtype)
    ys = []
    for k in range(u.shape[0]):
        x = Ab * x + Bb * u[k][..., None]
        ys.append(2 * (C * x).sum(-1).real)
    return torch.stack(ys)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("L", [1, 2, 37, 64])
def test_fft_kernel_equals_recurrent_scan(dtype, L):
    m = randomised_s4d(dtype=dtype)
    u = torch.randn(L, 2, 3, dtype=dtype)
    ref = zoh_recurrence(m.double(), u.double()) + m.D.detach() * u.double()
    m.to(dtype)
    y = m(u)
    assert y.dtype == dtype and y.shape == u.shape
    assert (y.double() - ref).abs().max() < TOL[dtype]


@pytest.mark.parametrize("L", [1, 5, 16, 17, 100])
def test_kernel_equals_direct_vandermonde_sum(L):
    m = randomised_s4d()
    A = -torch.exp(m.log_A_real.detach()) + 1j * m.A_imag.detach()
    dt = torch.exp(m.log_dt.detach())[:, None, None]
    C = torch.view_as_complex(m.C.detach())
    ell = torch.arange(L, dtype=torch.float64)
    direct = (
        2
        * (
            C[..., None]
            * (torch.exp(dt[..., 0] * A) - 1)[..., None]
            / A[..., None]
            * torch.exp(dt * A[..., None] * ell)
        )
        .sum(1)
        .real
    )
    assert (m.kernel(L) - direct).abs().max() < 1e-12


def test_vandermonde_transpose_is_the_final_state_and_the_adjoint():
    torch.manual_seed(1)
    log_z = torch.complex(-torch.rand(3, 4), torch.randn(3, 4))
    v = torch.randn(2, 3, 23, dtype=torch.float64)
    log_z = log_z.to(torch.complex128)
    # final state of x_l = z x_{l-1} + v_l
    x = sequential_scan(torch.exp(log_z)[None, None], v.permute(2, 0, 1)[..., None].to(log_z.dtype))
    assert (vandermonde_transpose(v, log_z) - x[-1]).abs().max() < 1e-12
    # adjoint: <V c, w> = <c, V^T w> for the bilinear (non-conjugated) pairing
    c = torch.randn(3, 4, dtype=torch.complex128)
    w = torch.randn(3, 23, dtype=torch.complex128)
    lhs = (vandermonde(c, log_z, 23) * w.flip(-1)).sum()
    rhs = (c * vandermonde_transpose(w, log_z)).sum()
    assert abs(lhs - rhs) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bidirectional_equals_two_scans(dtype):
    m = randomised_s4d(bidirectional=True, dtype=torch.float64)
    u = torch.randn(40, 2, 3, dtype=torch.float64)
    ref = zoh_recurrence(m, u) + zoh_recurrence(m, u.flip(0), backward_c=True).flip(0)
    ref = ref + m.D.detach() * u
    y = m.to(dtype)(u.to(dtype))
    assert (y.double() - ref).abs().max() < TOL[dtype]
    assert not torch.allclose(y.double(), zoh_recurrence(m.double(), u) + m.D.detach() * u)


def test_fft_convolutions_against_direct_sums_and_gradcheck():
    torch.manual_seed(2)
    T, N, H = 9, 2, 3
    u = torch.randn(T, N, H, dtype=torch.float64)
    K_f = torch.randn(H, T, dtype=torch.float64)
    K_b = torch.randn(H, T, dtype=torch.float64)
    direct_f = torch.stack([sum(K_f[:, t - s] * u[s] for s in range(t + 1)) for t in range(T)])
    direct_b = torch.stack([sum(K_b[:, s - t] * u[s] for s in range(t, T)) for t in range(T)])
    assert torch.allclose(causal_conv(u, K_f), direct_f, atol=1e-12)
    assert torch.allclose(bidirectional_conv(u, K_f, K_b), direct_f + direct_b, atol=1e-12)
    u_s, kf_s, kb_s = (
        torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for shape in ((5, 1, 2), (2, 5), (2, 5))
    )  # small: gradcheck is O(n^2)
    assert torch.autograd.gradcheck(causal_conv, (u_s, kf_s), fast_mode=True)
    assert torch.autograd.gradcheck(bidirectional_conv, (u_s, kf_s, kb_s), fast_mode=True)


def test_s4d_gradients_match_the_recurrence():
    m = randomised_s4d()
    u = torch.randn(30, 2, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(30, 2, 3, dtype=torch.float64)
    (m(u) * g).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    gu = u.grad.clone()
    m.zero_grad()
    u.grad = None
    (m.stream(u) * g).sum().backward()
    for n, p in m.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-10), n
    assert torch.allclose(u.grad, gu, atol=1e-10)


def test_chunked_parallel_form_equals_whole_sequence_and_streaming_state():
    m = randomised_s4d()
    u = torch.randn(50, 2, 3, dtype=torch.float64)
    y1, s1 = m.forward_with_state(u[:17])
    y2, s2 = m.forward_with_state(u[17:], s1)
    assert (torch.cat([y1, y2]) - m(u)).abs().max() < 1e-12
    m.stream(u)
    assert (m.ssm_state - s2).abs().max() < 1e-12


def test_s4d_lin_init():
    torch.manual_seed(3)
    m = S4D(64, 64)
    assert m.log_A_real.shape == m.A_imag.shape == (64, 32)
    assert torch.allclose(m.A.real, torch.full((64, 32), -0.5))
    assert torch.allclose(m.A_imag[5], math.pi * torch.arange(32.0))
    dt = m.log_dt.exp()
    assert dt.min() >= 0.001 and dt.max() <= 0.1 and dt.max() / dt.min() > 10
    C = torch.view_as_complex(m.C)
    assert C.shape == (64, 32) and 0.4 < C.real.var() < 0.6 and 0.4 < C.imag.var() < 0.6
    assert 0.6 < m.D.var() < 1.6 and m.D.shape == (64,)
    assert not hasattr(m, "C_backward")
    assert S4D(4, 8, bidirectional=True).C_backward.shape == (4, 4, 2)


def test_diagonal_scan_recursion_depth_is_log2_T(monkeypatch):
    calls = []
    original = core_ssm.diagonal_scan

    def counting(a, b):
        calls.append(b.shape[0])
        return original(a, b)

    monkeypatch.setattr(core_ssm, "diagonal_scan", counting)
    a = torch.full((1, 1), 0.9)
    b = torch.randn(1000, 1)
    x = counting(a, b)
    assert torch.allclose(x, sequential_scan(a, b), atol=1e-5)
    assert calls == [1000, 500, 250, 125, 63, 32, 16, 8, 4, 2, 1]  # ceil(log2 1000) + 1 levels


@pytest.mark.parametrize("T", [1, 2, 3, 7, 64, 101])
@pytest.mark.parametrize("invariant", [True, False])
def test_diagonal_scan_equals_sequential_recurrence(T, invariant):
    torch.manual_seed(T)
    mag = torch.rand(1 if invariant else T, 2, 3, dtype=torch.float64) * 0.98
    a = torch.polar(mag, torch.randn_like(mag) * 3)
    b = torch.randn(T, 2, 3, dtype=torch.complex128)
    assert (diagonal_scan(a, b) - sequential_scan(a, b)).abs().max() < 1e-12


def test_diagonal_scan_gradients():
    torch.manual_seed(4)
    a = (torch.rand(11, 2, dtype=torch.float64) * 0.9).requires_grad_(True)
    b = torch.randn(11, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(diagonal_scan, (a, b))
    a1 = (torch.rand(1, 2, dtype=torch.float64) * 0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(diagonal_scan, (a1, b))


def _saved_bytes(T: int, N: int = 4, P: int = 8) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of one scan."""
    a = (torch.rand(1, 1, P, dtype=torch.complex64) * 0.9).requires_grad_(True)
    b = torch.randn(T, N, P, dtype=torch.complex64, requires_grad=True)
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        diagonal_scan(a, b)
    return sum(storages.values())


def test_diagonal_scan_memory_is_linear_in_T():
    unit = 4 * 8 * 8  # N * P * bytes(complex64) per step
    small, large = _saved_bytes(1024), _saved_bytes(8192)
    # log-depth doubling would keep log2(T) full-length copies (10 and 13 here)
    assert large < 6 * 8192 * unit
    assert large / small < 8 * 1.1
