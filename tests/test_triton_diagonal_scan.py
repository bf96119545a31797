"""The Triton diagonal scan of S5 (`bpsn_ext.kernels.triton_diagonal_scan`) against
`bpsn_ext.core.diagonal_ssm.sequential_scan` (a Python loop in complex torch; autograd gives its
gradients); ``reverse`` against the same loop over the time-flipped input.

Like `tests/test_triton_ssm_scan.py`: under ``TRITON_INTERPRET=1`` on CPU tensors or on a CUDA
device, else skipped without importing ``triton``.
"""

from __future__ import annotations

import pytest
import torch

from bpsn_ext.core.diagonal_ssm import diagonal_scan, sequential_scan
from tests.triton_device import DEVICE, needs_triton_device, triton_operator

pytestmark = needs_triton_device
T, N, P = 7, 2, 3


@pytest.fixture(scope="module")
def scan():
    return triton_operator("bpsn_ext.kernels.triton_diagonal_scan", "diagonal_scan_triton")


def _leaves(x0: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    A = torch.polar(0.5 + 0.45 * torch.rand(P, generator=g), 3 * torch.rand(P, generator=g))
    out = {
        "b": torch.randn(T, N, P, 2, generator=g),
        "A_bar": torch.view_as_real(A),
        "x0": torch.randn(N, P, 2, generator=g) if x0 else None,
    }
    return {k: None if v is None else v.to(DEVICE).requires_grad_(True) for k, v in out.items()}


def reference(b, A_bar, x0, reverse):
    bc, A = torch.view_as_complex(b), torch.view_as_complex(A_bar)
    x0c = None if x0 is None else torch.view_as_complex(x0)
    if reverse:
        return torch.view_as_real(sequential_scan(A[None, None], bc.flip(0), x0c).flip(0))
    return torch.view_as_real(sequential_scan(A[None, None], bc, x0c))


@pytest.mark.parametrize("reverse", [False, True], ids=["causal", "reverse"])
@pytest.mark.parametrize("x0", [False, True], ids=["zero_state", "x0"])
def test_triton_diagonal_scan_equals_reference(scan, x0, reverse):
    a = _leaves(x0)
    xs = scan(a["b"], a["A_bar"], a["x0"], reverse)
    ref = reference(a["b"], a["A_bar"], a["x0"], reverse)
    torch.testing.assert_close(xs, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn(xs.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    leaves = {k: v for k, v in a.items() if v is not None}
    got = torch.autograd.grad((xs * g).sum(), list(leaves.values()))
    want = torch.autograd.grad((ref * g).sum(), list(leaves.values()))
    for name, gv, wv in zip(leaves, got, want):
        torch.testing.assert_close(gv, wv, atol=1e-4, rtol=1e-4, msg=name)


def test_triton_diagonal_scan_equals_the_parallel_scan_of_s5(scan):
    """The torch form S5 uses (`diagonal_scan`, an associative scan) gives the same states."""
    a = _leaves(False, seed=4)
    with torch.no_grad():
        xs = scan(a["b"], a["A_bar"], None, False)
        A = torch.view_as_complex(a["A_bar"])
        ref = diagonal_scan(A[None, None, :], torch.view_as_complex(a["b"]))
        torch.testing.assert_close(torch.view_as_complex(xs), ref, atol=1e-5, rtol=1e-5)


def test_triton_diagonal_scan_compiles_and_passes_opcheck(scan):
    a = _leaves(True, seed=2)
    compiled = torch.compile(scan, fullgraph=True, dynamic=False)
    xs = compiled(a["b"], a["A_bar"], a["x0"], True)
    torch.testing.assert_close(xs, scan(a["b"], a["A_bar"], a["x0"], True), atol=0, rtol=0)
    (gb,) = torch.autograd.grad(xs.sum(), [a["b"]])
    assert gb.shape == a["b"].shape
    for x0 in (None, a["x0"]):
        args = (a["b"], a["A_bar"], x0, False)
        torch.library.opcheck(torch.ops.bpsn_ext.diagonal_scan_triton.default, args)


def test_triton_diagonal_scan_names_a_wrong_layout(scan):
    a = _leaves(False)
    with pytest.raises(ValueError, match=r"b must be a float32 tensor \[T, N, P, 2\]"):
        scan(a["b"][..., 0], a["A_bar"], None, False)
    with pytest.raises(ValueError, match=r"A_bar must be \[P=3, 2\]"):
        scan(a["b"], a["A_bar"][:2], None, False)
    with pytest.raises(ValueError, match=r"x0 must be None or \[N=2, P=3, 2\]"):
        scan(a["b"], a["A_bar"], torch.zeros(N, P, device=DEVICE), False)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidirectional"])
def test_triton_scan_backend_of_spiking_s5_equals_its_torch_path(scan, bidirectional):
    from bpsn_ext.layers import SpikingS5

    torch.manual_seed(0)
    layer = SpikingS5(6, 4, bidirectional=bidirectional, activation="none").to(DEVICE)
    x = torch.randn(9, 3, 6, device=DEVICE, requires_grad=True)
    mask = torch.ones(9, 3, dtype=torch.bool, device=DEVICE)
    mask[6:, 1] = False
    want = layer(x, mask)
    want_grads = torch.autograd.grad(want.square().sum(), [x, *layer.parameters()])
    layer.scan_backend = "triton"
    got = layer(x, mask)
    got_grads = torch.autograd.grad(got.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
