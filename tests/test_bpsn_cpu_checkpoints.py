"""The native BPSN CPU kernel keeps the membrane only once per time block (checkpoints) and
recomputes it where a sweep needs it: the recomputed membrane must be the first one bit for
bit, so spikes equal the step-by-step loop exactly and gradients to rounding at every way T
can meet the block length, under masks, conv shapes, both runaway rules and both dtypes, with
and without the membrane output."""

import pytest
import torch

from bpsn_ext.kernels import cpu_native
from tests.test_bpsn_cpu_kernel import F32, F64, assert_same, data, pair

if not cpu_native.available():
    pytest.skip(
        f"native kernel unavailable: {cpu_native.unavailable_reason()}", allow_module_level=True
    )

K = cpu_native.CHECKPOINT_STEPS
LENGTHS = [1, K - 1, K, K + 1, 2 * K + 5, 3 * K]
SHAPES = {  # name: (BPSN options, input shape after T)
    "tokens": (dict(channels=6), (3, 6)),
    "conv": (dict(channels=3, channel_dim=2), (2, 3, 2, 3)),
}


def masks(kind: str, T: int, N: int) -> torch.Tensor | None:
    """No mask, padding at the end (lengths), or holes in the middle of the sequences."""
    if kind == "none":
        return None
    if kind == "end":
        return torch.tensor([T, max(T // 2, 1), 1, T][:N])
    holes = torch.ones(T, N, dtype=torch.bool)
    holes[T // 3 : T // 3 + K // 2 + 2, 0] = False  # a gap across a block boundary
    holes[1::7, -1] = False
    return holes


def spikes_only(layer, x, mask, grad_s):
    """Spikes and the gradients of x and the parameters through ``layer(x)`` (no membrane)."""
    xr = x.detach().clone().requires_grad_(True)
    s = layer(xr, mask)
    return s.detach(), torch.autograd.grad((s * grad_s).sum(), [xr, *layer.parameters()])


@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("mask_kind", ["none", "end", "holes"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("runaway", ["refractory", "none"])
def test_recomputed_membrane_gives_the_loop(T, mask_kind, shape, runaway):
    """With the membrane output (and its gradient): spikes, membrane exact; gradients close."""
    options, rest = SHAPES[shape]
    nat, ref = pair(F64, runaway=runaway, refractory_steps=2, **options)
    x = data((T, *rest))
    assert nat.implementation(x) == "native"
    mask = masks(mask_kind, T, rest[0])
    if T >= 4:
        assert_same(nat, ref, x, mask)
        return
    s_n, g_n = spikes_only(nat, x, mask, torch.ones_like(x))
    s_r, g_r = spikes_only(ref, x, mask, torch.ones_like(x))
    assert torch.equal(s_n, s_r)
    for a, b in zip(g_n, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("mask_kind", ["none", "end", "holes"])
@pytest.mark.parametrize("runaway", ["refractory", "none"])
def test_spikes_only_path_equals_the_loop_and_the_membrane_path(dtype, T, mask_kind, runaway):
    """``layer(x)`` writes no membrane: the same spikes as the loop, its gradients to
    rounding, and bit for bit the gradients of the path that returns the membrane."""
    nat, ref = pair(dtype, channels=5, channel_dim=2, runaway=runaway, refractory_steps=1)
    x = data((T, 3, 5, 2, 2), dtype)
    mask = masks(mask_kind, T, 3)
    grad_s = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=dtype)
    s_n, g_n = spikes_only(nat, x, mask, grad_s)
    s_r, g_r = spikes_only(ref, x, mask, grad_s)
    assert torch.equal(s_n, s_r)
    if T > 1:
        assert s_r.sum() > 0 and (s_r == 0).any()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == F32 else dict(rtol=1e-9, atol=1e-10)
    for a, b in zip(g_n, g_r):
        torch.testing.assert_close(a, b, **tol)
    xr = x.clone().requires_grad_(True)
    s_m, _ = nat.forward_with_membrane(xr, mask)
    g_m = torch.autograd.grad((s_m * grad_s).sum(), [xr, *nat.parameters()])
    assert torch.equal(s_m, s_n)
    for a, b in zip(g_m, g_n):
        assert torch.equal(a, b)


def test_tiles_cut_a_chunk_and_equal_the_loop(monkeypatch):
    """One thread, more neurons than one pass over time holds at once (4096): the chunk runs
    in tiles, the cut inside a backward segment; still the loop's spikes and gradients."""
    monkeypatch.setenv(cpu_native.ENV_THREADS, "1")
    nat, ref = pair(F32, channels=4200)
    x = data((2 * K + 3, 1, 4200), F32)
    assert_same(nat, ref, x, torch.tensor([2 * K]), with_membrane_grad=False)
