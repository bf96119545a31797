"""The native BPSN CPU kernel as torch.library operators: opcheck, and compiled == eager."""

import contextlib

import pytest
import torch

import bpsn_ext
from bpsn_ext.kernels import cpu_native

if not cpu_native.available():
    pytest.skip(
        f"native kernel unavailable: {cpu_native.unavailable_reason()}", allow_module_level=True
    )

from bpsn_ext.kernels.bpsn_cpu_ops import (  # noqa: E402
    bpsn_cpu_backward,
    bpsn_cpu_forward,
    checkpoint_rows,
)


def op_inputs(masked: bool, C=4, inner=3, dtype=torch.float64, T=9, membrane=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, 2, C, inner, generator=g, dtype=dtype) + 0.5
    lam = torch.rand(C, generator=g, dtype=dtype) * 0.8 + 0.1
    thr = torch.rand(C, generator=g, dtype=dtype) + 0.5
    mask = (torch.arange(T)[:, None] < torch.tensor([T, 5])[None]).to(torch.uint8)
    return (
        x.requires_grad_(True),
        lam.clone().requires_grad_(True),
        lam.flip(0).clone().requires_grad_(True),
        thr.requires_grad_(True),
        mask if masked else None,
        C,
        inner,
        1,
        1,
        0,
        2.0,
        0.0,
        membrane,
    )


@pytest.mark.parametrize("membrane", [True, False], ids=["membrane", "spikes_only"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("T", [9, 70])  # one time block, and three (the last one short)
def test_opcheck_forward_and_backward_operators(masked, T, membrane):
    args = op_inputs(masked, T=T, membrane=membrane)
    torch.library.opcheck(bpsn_cpu_forward, args)
    spikes, mem, ckpt, since = bpsn_cpu_forward(*args)
    rows = checkpoint_rows(T)
    assert ckpt.shape == (rows, 24) and since.shape == (rows, 24)
    assert mem.shape == (spikes.shape if membrane else (0,))
    assert not ckpt.requires_grad and not since.requires_grad
    x, lam_f, lam_b, thr, mask = args[:5]
    g = torch.randn_like(spikes)
    back = (
        g,
        torch.randn_like(spikes) if membrane else None,
        mask,
        lam_f.detach(),
        lam_b.detach(),
        thr.detach(),
        x.detach(),
        ckpt,
        since,
        4,
        3,
        1,
        1,
        0,
        2.0,
        0.0,
    )
    torch.library.opcheck(bpsn_cpu_backward, back)


def randomised(**options):
    torch.manual_seed(1)
    layer = bpsn_ext.BPSN(**options)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.rand_like(p) * 0.4 - 0.2)
    return layer


@pytest.mark.parametrize("case", ["tokens", "conv_masked"])
def test_compiled_equals_eager_with_the_native_operator_in_the_graph(case):
    """fullgraph torch.compile runs the same kernel: identical spikes and gradients."""
    if case == "tokens":
        layer, x, mask = randomised(channels=6), torch.randn(33, 3, 6), None
    else:
        layer, x = randomised(channels=4), torch.randn(17, 2, 4, 3, 3)
        mask = torch.arange(17)[:, None] < torch.tensor([17, 8])[None]
    x = x + 0.5
    assert layer.implementation(x) == "native"
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager_out, comp_out = layer(xe, mask), compiled(xc, mask)
    assert torch.equal(comp_out, eager_out) and eager_out.sum() > 0
    g = torch.randn_like(eager_out)
    params = [layer.decay_f_logit, layer.decay_b_logit, layer.v_threshold]
    ge = torch.autograd.grad(eager_out, [xe, *params], g)
    gc = torch.autograd.grad(comp_out, [xc, *params], g)
    for a, b in zip(ge, gc):
        assert torch.equal(a, b)
    graph = torch._dynamo.explain(layer)(x, mask)
    assert graph.graph_break_count == 0
    targets = {str(n.target) for gm in graph.graphs for n in gm.graph.nodes}
    assert "bpsn_ext.bpsn_cpu_forward.default" in targets


def test_export_keeps_the_operator():
    layer = randomised(channels=4)
    x = torch.randn(8, 2, 4) + 0.5
    ep = torch.export.export(layer, (x,))
    assert "bpsn_ext.bpsn_cpu_forward" in str(ep.graph)
    assert torch.equal(ep.module()(x), layer(x))


class _SeeOps(torch.utils._python_dispatch.TorchDispatchMode):
    """A dispatch mode that records the operators it sees."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("membrane", [False, True], ids=["spikes", "with_membrane"])
@pytest.mark.parametrize("case", ["tokens", "conv_masked"])
def test_eager_lane_equals_the_operators(case, membrane):
    """Plain eager calls skip the operators' dispatch (an autograd Function calls the same
    kernels); under a dispatch mode the operators run.  Bitwise the same results."""
    if case == "tokens":
        layer, x, mask = randomised(channels=6, runaway="refractory"), torch.randn(70, 3, 6), None
    else:
        layer, x = randomised(channels=4), torch.randn(40, 2, 4, 3, 3)
        mask = torch.arange(40)[:, None] < torch.tensor([40, 21])[None]
    x = x + 0.5
    params = [layer.decay_f_logit, layer.decay_b_logit, layer.v_threshold]

    def run(mode):
        xr = x.clone().requires_grad_(True)
        with mode:
            spikes, mem = layer._compute(xr, mask, None, membrane=membrane)
            outs = [spikes] + ([mem] if membrane else [])
            grads = torch.autograd.grad(outs, [xr, *params], [torch.ones_like(o) for o in outs])
        return spikes, mem, grads, spikes.grad_fn.name()

    eager = run(contextlib.nullcontext())
    seen = _SeeOps()
    ops = run(seen)
    assert "_EagerNative" in eager[3] and "_EagerNative" not in ops[3]
    assert "bpsn_ext.bpsn_cpu_forward.default" in seen.seen
    assert "bpsn_ext.bpsn_cpu_backward.default" in seen.seen
    assert eager[0].sum() > 0 and torch.equal(eager[0], ops[0])
    assert (eager[1] is None) == (not membrane) and (ops[1] is None) == (not membrane)
    if membrane:
        assert torch.equal(eager[1], ops[1])
    for a, b in zip(eager[2], ops[2]):
        assert torch.equal(a, b)


def test_eager_lane_only_for_plain_tensors():
    from bpsn_ext.kernels.bpsn_cpu_ops import _plain_eager

    x = torch.randn(3, 2, 4)
    assert _plain_eager((x, torch.nn.Parameter(torch.ones(4)), None))
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = mode.from_tensor(x)
    assert not _plain_eager((fake,))
    with _SeeOps():
        assert not _plain_eager((x,))
    inside = []
    torch.func.grad(lambda t: inside.append(_plain_eager((t,))) or t.sum())(x)
    assert inside == [False]


def test_torch_func_transforms_take_the_torch_path_and_refuse_an_explicit_native():
    """The kernel's operators have no functorch rule: under ``torch.func`` the automatic
    choice runs the torch path (same gradient), and ``method="native"`` says why it cannot."""
    layer = randomised(channels=4).double()
    x = torch.randn(20, 3, 4, dtype=torch.float64) + 0.5
    w = torch.arange(4.0, dtype=x.dtype)
    assert layer.implementation(x) == "native"
    g_func = torch.func.grad(lambda t: (layer(t) * w).sum())(x)
    xr = x.clone().requires_grad_(True)
    (layer(xr) * w).sum().backward()
    torch.testing.assert_close(g_func, xr.grad, rtol=1e-10, atol=1e-12)
    native = bpsn_ext.BPSN(channels=4, method="native").double()
    with pytest.raises(RuntimeError, match="inside a torch.func transform"):
        torch.func.grad(lambda t: native(t).sum())(x)


def test_the_operators_are_registered_with_the_dispatcher_directly():
    """Not through ``torch.library.custom_op``: a compiled graph calls the kernel through
    fewer Python layers; the autograd kernel still differentiates (opcheck above)."""
    schema = str(torch.ops.bpsn_ext.bpsn_cpu_forward.default._schema)
    assert "Tensor? mask" in schema and "bool membrane" in schema
    assert torch._C._dispatch_has_kernel_for_dispatch_key("bpsn_ext::bpsn_cpu_forward", "Autograd")
    args = op_inputs(masked=True)
    with torch.no_grad():
        spikes, *_ = bpsn_cpu_forward(*args)
    assert not spikes.requires_grad
    spikes, *_ = bpsn_cpu_forward(*args)
    assert spikes.grad_fn is not None
