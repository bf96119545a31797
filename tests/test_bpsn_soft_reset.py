"""BPSN's soft-reset rule: the one-node form equals the step-by-step graph, in O(T·M) memory."""

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.core.masks import zero_padded
from bpsn_ext.core.soft_reset import soft_reset
from bpsn_ext.surrogate import ATan, Sigmoid

F64 = torch.float64


def graph_loop(h, lam, thr, valid, surrogate, detach_reset):
    """The rule recorded step by step by autograd (the form the one-node version replaces)."""
    R = torch.zeros_like(h[0])
    s_prev = torch.zeros_like(h[0])
    spikes, membranes = [], []
    for t, h_t in enumerate(h.unbind(0)):
        R = lam * (R + s_prev)
        ht = h_t - thr * R
        st = surrogate(ht - thr)
        if valid is not None:
            st = zero_padded(st, valid[t])
        s_prev = st.detach() if detach_reset else st
        spikes.append(st)
        membranes.append(ht)
    return torch.stack(spikes), torch.stack(membranes)


def case(shape, dtype, masked, seed=0):
    """``h`` ``[T, N, C, *]``, per-channel ``lam``/``thr`` shaped for ``h[0]``, a mask."""
    g = torch.Generator().manual_seed(seed)
    T, N, C = shape[:3]
    h = torch.randn(shape, generator=g, dtype=dtype) + 0.9
    pshape = (1, C) + (1,) * (len(shape) - 3)
    lam = (torch.rand(pshape, generator=g, dtype=dtype) * 0.8 + 0.1).requires_grad_(True)
    thr = (torch.rand(pshape, generator=g, dtype=dtype) * 0.5 + 0.6).requires_grad_(True)
    valid = None
    if masked:
        lengths = torch.tensor([T, T // 2, 1][:N])
        valid = (torch.arange(T)[:, None] < lengths[None, :]).reshape(
            T, N, *(1,) * (len(shape) - 2)
        )
    return h.requires_grad_(True), lam, thr, valid


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize(
    "shape,masked", [((17, 3, 4), True), ((9, 2, 3, 2, 2), True), ((12, 2, 5), False)]
)
def test_one_node_equals_the_step_by_step_graph_float64(shape, masked, detach_reset):
    h, lam, thr, valid = case(shape, F64, masked)
    ours = soft_reset(h, lam, thr, valid, ATan(), detach_reset)
    ref = graph_loop(h, lam, thr, valid, ATan(), detach_reset)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    assert ours[0].sum() > 0 and (ours[0] == 0).any()
    g = torch.Generator().manual_seed(3)
    ups = [torch.rand(ours[0].shape, generator=g, dtype=F64) for _ in range(2)]
    for upstream in (ups, [ups[0], None]):  # spikes and membranes, or spikes only

        def loss(out, upstream=upstream):
            return sum((o * u).sum() for o, u in zip(out, upstream) if u is not None)

        a = torch.autograd.grad(loss(ours), [h, lam, thr], retain_graph=True)
        b = torch.autograd.grad(loss(ref), [h, lam, thr], retain_graph=True)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
        assert all(x.abs().sum() > 0 for x in a)
        if valid is not None:  # a padded step passes only the membrane's own gradient
            pad = ~valid.expand(h.shape)
            mem_up = upstream[1] if upstream[1] is not None else torch.zeros_like(h)
            assert torch.equal(a[0][pad], mem_up[pad])


def test_float32_scalar_parameters_and_another_surrogate_match_the_graph():
    h, _, _, valid = case((20, 3, 4), torch.float32, True, seed=5)
    ours = soft_reset(h, 0.7, 0.8, valid, Sigmoid(), False)
    ref = graph_loop(h, 0.7, 0.8, valid, Sigmoid(), False)
    assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    (a,) = torch.autograd.grad(ours[0].sum(), h)
    (b,) = torch.autograd.grad(ref[0].sum(), h)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def saved_bytes_and_count(fn, *args):
    """Bytes and number of the tensors autograd saves while ``fn(*args)`` builds its graph."""
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(sizes), len(sizes)


def test_saved_memory_is_a_few_arrays_whatever_T():
    """The step-by-step graph saves several tensors per step (O(T) tensors and graph nodes,
    gigabytes at T = 1e6 for a handful of neurons); the one-node form saves a fixed number of
    [T, N, C] arrays."""
    N, C = 2, 4
    layer = BPSN(C, runaway="soft_reset", fusion="gate")
    counts = []
    for T in (256, 2048):
        x = torch.randn(T, N, C, requires_grad=True)
        mask = torch.ones(T, N, dtype=torch.bool)
        counts.append(saved_bytes_and_count(layer, x, mask)[1])
        h, lam, thr, valid = case((T, N, C), torch.float32, True)
        core_bytes, core_count = saved_bytes_and_count(soft_reset, h, lam, thr, valid, ATan())
        assert core_count == 3  # membranes, P and the mask
        assert core_bytes == 2 * h.numel() * h.element_size() + valid.numel()
    assert counts[0] == counts[1], counts  # not a multiple of T
