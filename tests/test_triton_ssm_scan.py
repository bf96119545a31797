"""The Triton SSM scan (`bpsn_ext.kernels.triton_ssm_scan`) against a torch reference.

They run under Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``) or on a CUDA
device; otherwise they skip, and ``triton`` is never imported.  The reference is the recurrence
written from its equations in complex torch (autograd gives its gradients):
``x_t = A_bar x_t-1 + B_bar u_t m_t``, ``y_t = m_t (2 Re(sum_p C_p x_t) + D u_t m_t)``;
``reverse`` is the same recurrence run on the time-flipped input.
"""

from __future__ import annotations

import math

import pytest
import torch

from bpsn_ext.core.diagonal_ssm import zoh
from bpsn_ext.layers import S4D
from tests.triton_device import DEVICE, needs_triton_device, triton_operator

pytestmark = needs_triton_device
T, N, H, P = 6, 2, 3, 2


@pytest.fixture(scope="module")
def scan():
    return triton_operator("bpsn_ext.kernels.triton_ssm_scan", "s4d_scan_triton")


def _inputs(mask: bool, x0: bool, seed: int = 0) -> dict:
    """Leaf tensors in the kernel layout (float32, view_as_real of complex)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.polar(0.5 + 0.45 * torch.rand(H, P, generator=g), 3 * torch.rand(H, P, generator=g))
    m = torch.ones(T, N, dtype=torch.bool)
    m[T - 2 :, 0] = False  # sample 0 padded at the end
    m[1, 1] = False  # and a hole in sample 1
    out = {
        "u": torch.randn(T, N, H, generator=g),
        "A_bar": torch.view_as_real(A),
        "B_bar": torch.randn(H, P, 2, generator=g),
        "C": torch.randn(H, P, 2, generator=g),
        "D": torch.randn(H, generator=g),
        "x0": torch.randn(N, H, P, 2, generator=g) if x0 else None,
    }
    out = {k: None if v is None else v.to(DEVICE).requires_grad_(True) for k, v in out.items()}
    out["mask"] = m.to(DEVICE) if mask else None
    return out


def reference(u, A_bar, B_bar, C, D, x0, mask, reverse):
    """``(y [T, N, H], state [N, H, P, 2])`` by a Python loop over the steps."""
    A, B, Cc = (torch.view_as_complex(t) for t in (A_bar, B_bar, C))
    m = torch.ones(u.shape[:2], device=u.device) if mask is None else mask.to(u.dtype)
    steps = range(u.shape[0] - 1, -1, -1) if reverse else range(u.shape[0])
    x = (
        torch.zeros(*u.shape[1:], P, dtype=A.dtype, device=u.device)
        if x0 is None
        else torch.view_as_complex(x0)
    )
    y = [None] * u.shape[0]
    for t in steps:
        uv = u[t] * m[t, :, None]
        x = A * x + B * uv[..., None]
        y[t] = (2 * (Cc * x).sum(-1).real + D * uv) * m[t, :, None]
    return torch.stack(y), torch.view_as_real(x)


def _run(scan, a: dict, reverse: bool):
    mask = a["mask"]
    m8 = torch.zeros(1, dtype=torch.uint8, device=DEVICE) if mask is None else mask.to(torch.uint8)
    args = (a["u"], m8, a["A_bar"], a["B_bar"], a["C"], a["D"], a["x0"])
    return scan(*args, mask is not None, reverse)


def _grads(outputs, a: dict, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    y, xT = outputs
    loss = (y * torch.randn(y.shape, generator=g).to(DEVICE)).sum()
    loss = loss + (xT * torch.randn(xT.shape, generator=g).to(DEVICE)).sum()
    leaves = {k: v for k, v in a.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


@pytest.mark.parametrize("reverse", [False, True], ids=["causal", "reverse"])
@pytest.mark.parametrize("x0", [False, True], ids=["zero_state", "x0"])
@pytest.mark.parametrize("mask", [False, True], ids=["dense", "masked"])
def test_triton_scan_equals_reference(scan, mask, x0, reverse):
    a = _inputs(mask, x0)
    y, xT = _run(scan, a, reverse)
    y_ref, xT_ref = reference(**{k: a[k] for k in ("u", "A_bar", "B_bar", "C", "D", "x0")},
                              mask=a["mask"], reverse=reverse)  # fmt: skip
    assert y.shape == (T, N, H) and xT.shape == (N, H, P, 2)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xT, xT_ref, atol=1e-5, rtol=1e-5)
    if mask:
        assert (y[~a["mask"]] == 0).all()  # padded steps output exact zeros
    got = _grads((y, xT), a)
    want = _grads((y_ref, xT_ref), a)
    assert set(got) == set(want) == {"u", "A_bar", "B_bar", "C", "D"} | ({"x0"} if x0 else set())
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4, msg=name)


def test_triton_scan_equals_s4d_forward_with_state(scan):
    """From the layer's parameters (ZOH in torch): the numbers and gradients of its FFT form."""
    torch.manual_seed(0)
    layer = S4D(3, 4).to(DEVICE)
    with torch.no_grad():
        layer.log_dt.uniform_(math.log(0.05), math.log(0.5))
    x = torch.randn(7, 2, 3, device=DEVICE, requires_grad=True)
    state = torch.randn(2, 3, 2, dtype=torch.cfloat, device=DEVICE)
    mask = torch.arange(7, device=DEVICE)[:, None] < torch.tensor([7, 4], device=DEVICE)
    _, A_bar, B_bar = zoh(layer.A, torch.exp(layer.log_dt)[:, None])
    A, B = torch.view_as_real(A_bar), torch.view_as_real(B_bar)
    m8 = mask.to(torch.uint8)
    y, xT = scan(x, m8, A, B, layer.C, layer.D, torch.view_as_real(state), True, False)
    y_ref, state_ref = layer.forward_with_state(x, state, mask)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.view_as_complex(xT), state_ref, atol=1e-5, rtol=1e-5)
    params = [x, layer.log_dt, layer.log_A_real, layer.A_imag, layer.C, layer.D]
    got = torch.autograd.grad(y.square().sum(), params)
    want = torch.autograd.grad(y_ref.square().sum(), params)
    for name, g, w in zip(("x", "log_dt", "log_A_real", "A_imag", "C", "D"), got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4, msg=name)


def test_triton_reverse_scan_is_the_anticausal_half_of_bidirectional_s4d(scan):
    """``S4D(bidirectional=True)`` (lag 0 in both kernels) = causal scan with ``C`` and ``D``
    plus reverse scan with ``C_backward`` and no skip term."""
    torch.manual_seed(1)
    layer = S4D(3, 4, bidirectional=True).to(DEVICE)
    x = torch.randn(9, 2, 3, device=DEVICE)
    _, A_bar, B_bar = zoh(layer.A, torch.exp(layer.log_dt)[:, None])
    A, B = torch.view_as_real(A_bar), torch.view_as_real(B_bar)
    dummy = torch.zeros(1, dtype=torch.uint8, device=DEVICE)
    with torch.no_grad():
        y_f, _ = scan(x, dummy, A, B, layer.C, layer.D, None, False, False)
        y_b, _ = scan(x, dummy, A, B, layer.C_backward, 0 * layer.D, None, False, True)
        torch.testing.assert_close(y_f + y_b, layer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("x0", [False, True], ids=["zero_state", "x0"])
def test_triton_scan_compiles_fullgraph(scan, x0):
    a = _inputs(True, x0, seed=2)
    compiled = torch.compile(_run, fullgraph=True, dynamic=False)
    y, xT = compiled(scan, a, True)
    y_ref, xT_ref = _run(scan, a, True)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(xT, xT_ref, atol=1e-6, rtol=1e-6)
    got, want = _grads((y, xT), a), _grads((y_ref, xT_ref), a)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-6, msg=name)


@pytest.mark.parametrize("x0", [False, True], ids=["zero_state", "x0"])
def test_triton_scan_passes_opcheck(scan, x0):
    a = _inputs(True, x0, seed=3)
    m8 = a["mask"].to(torch.uint8)
    args = (a["u"], m8, a["A_bar"], a["B_bar"], a["C"], a["D"], a["x0"], True, False)
    torch.library.opcheck(torch.ops.bpsn_ext.ssm_scan_triton.default, args)


def test_triton_scan_of_no_steps_passes_the_state_through(scan):
    a = _inputs(False, True)
    u = a["u"][:0]
    dummy = torch.zeros(1, dtype=torch.uint8, device=DEVICE)
    y, xT = scan(u, dummy, a["A_bar"], a["B_bar"], a["C"], a["D"], a["x0"], False, False)
    assert y.shape == (0, N, H)
    torch.testing.assert_close(xT, a["x0"], atol=0, rtol=0)
    g = torch.randn_like(xT)
    (grad_x0,) = torch.autograd.grad((xT * g).sum(), [a["x0"]])
    torch.testing.assert_close(grad_x0, g, atol=0, rtol=0)


def test_triton_scan_names_a_wrong_layout(scan):
    a = _inputs(False, False)
    dummy = torch.zeros(1, dtype=torch.uint8, device=DEVICE)
    with pytest.raises(ValueError, match=r"u must be a float32 tensor \[T, N, H\]"):
        scan(a["u"].double(), dummy, a["A_bar"], a["B_bar"], a["C"], a["D"], None, False, False)
    with pytest.raises(ValueError, match=r"x0 must be None or \[N=2, H=3, P=2, 2\]"):
        bad = torch.zeros(N, H, P, device=DEVICE)
        scan(a["u"], dummy, a["A_bar"], a["B_bar"], a["C"], a["D"], bad, False, False)
    with pytest.raises(ValueError, match=r"mask_u8 must be uint8 \[T=6, N=2\]"):
        scan(a["u"], dummy, a["A_bar"], a["B_bar"], a["C"], a["D"], None, True, False)


def test_triton_scan_rows_of_bench_gpu(scan):
    """`bench gpu` times the Triton scans (rows ``scan[triton]``, ``s5[triton]``) beside the
    FFT form and torch's associative scan."""
    from bpsn_ext.bench import gpu_bench

    report = gpu_bench.run(
        device=DEVICE, json_path=None, verbose=False, bpsn_methods=(), sj_implementations=(),
        scan_providers=("triton", "fft"), s5_providers=("triton", "torch"), lengths=(8,),
        batch=2, features=4, ssm_batch=2, d_model=4, d_state=4, repeats=1, warmup=0,
    )  # fmt: skip
    rows = report["results"]["8"]
    for key, ratio in (("scan[triton]", "over_fft"), ("s5[triton]", "over_torch")):
        assert "unavailable" not in rows[key], rows[key]
        assert rows[key]["median_ms"] > 0 and rows[key][ratio] > 0
