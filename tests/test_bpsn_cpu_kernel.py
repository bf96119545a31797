"""The native CPU kernel of the default BPSN (bpsn_ext/kernels/bpsn_cpu.cpp via ctypes) equals
the torch path and the sequential reference: spikes exactly, membranes and every gradient to
rounding; masks, odd shapes, threads, the no-grad path, and how ``method="auto"`` picks it."""

import os
import warnings

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.kernels import cpu_native
from bpsn_ext.surrogate import S2NN, ATan, FastSigmoid, Sigmoid
from tests.bpsn_reference import bpsn_reference

F32, F64 = torch.float32, torch.float64


@pytest.fixture(scope="module")
def native():
    reason = cpu_native.unavailable_reason()
    if reason is not None:
        pytest.skip(f"native BPSN CPU kernel unavailable: {reason}")
    return cpu_native


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in (cpu_native.ENV_SWITCH, cpu_native.ENV_THREADS):
        monkeypatch.delenv(var, raising=False)


def randomise(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if "logit" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
            else:
                p.copy_(torch.rand(p.shape, generator=g) * 0.6 + 0.4)
    return layer


def pair(dtype=F64, **options):
    """The same randomised layer twice: native and the torch recurrence (same arithmetic)."""
    ref = randomise(BPSN(method="loop", **options)).to(dtype)
    nat = BPSN(method="native", **options).to(dtype)
    nat.load_state_dict(ref.state_dict())
    return nat, ref


def run(layer, x, mask, grad_s, grad_m):
    """Spikes, membrane and the gradients of x and every parameter of ``layer``."""
    xr = x.detach().clone().requires_grad_(True)
    s, h = layer.forward_with_membrane(xr, mask)
    params = [p for p in layer.parameters() if p.requires_grad]
    loss = (s * grad_s).sum() + (0 if grad_m is None else (h * grad_m).sum())
    grads = torch.autograd.grad(loss, [xr, *params])
    return s.detach(), h.detach(), grads


def assert_same(nat, ref, x, mask, *, with_membrane_grad=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    grad_s = torch.randn(x.shape, generator=g, dtype=x.dtype)
    grad_m = torch.randn(x.shape, generator=g, dtype=x.dtype) if with_membrane_grad else None
    s_n, h_n, g_n = run(nat, x, mask, grad_s, grad_m)
    s_r, h_r, g_r = run(ref, x, mask, grad_s, grad_m)
    assert s_r.sum() > 0 and (s_r == 0).any()
    assert torch.equal(s_n, s_r)  # same recurrence, same rounding: identical spikes
    torch.testing.assert_close(h_n, h_r, rtol=0, atol=0)
    tol = dict(rtol=1e-4, atol=1e-5) if x.dtype == F32 else dict(rtol=1e-9, atol=1e-10)
    assert len(g_n) == len(g_r)
    for a, b in zip(g_n, g_r):
        torch.testing.assert_close(a, b, **tol)
    return s_n, h_n, g_n


def data(shape, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype) * 1.2 + 0.5


LAYOUTS = {  # name: (BPSN options, input shape)
    "channels_last": (dict(channels=6), (23, 3, 6)),
    "odd_channels": (dict(channels=5), (17, 3, 5)),
    "conv": (dict(channels=3, channel_dim=2), (11, 2, 3, 2, 3)),
    "inner_last": (dict(channels=4, channel_dim=-1), (9, 2, 3, 4)),
    "conv1d": (dict(channels=3, channel_dim=2), (9, 2, 3, 4)),
    "shared": (dict(channels=None), (15, 3, 7)),
}


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("mask_kind", ["none", "lengths", "holes"])
def test_native_equals_torch_path(native, dtype, layout, mask_kind):
    options, shape = LAYOUTS[layout]
    nat, ref = pair(dtype, **options)
    x = data(shape, dtype)
    T, N = shape[:2]
    mask = {
        "none": None,
        "lengths": torch.tensor([T, max(T - 5, 1), 1][:N]),
        "holes": torch.rand(T, N, generator=torch.Generator().manual_seed(3)) > 0.3,
    }[mask_kind]
    assert nat.implementation(x) == "native"
    s, h, _ = assert_same(nat, ref, x, mask)
    if mask is not None:
        from bpsn_ext.core.masks import as_mask

        pad = ~as_mask(mask, T, N, x.device)
        assert (s[pad] == 0).all() and (h[pad] == 0).all()


CONFIGS = [
    dict(refractory_steps=2),
    dict(refractory_steps=3, surrogate=Sigmoid()),
    dict(runaway="none", surrogate=S2NN()),
    dict(surrogate=FastSigmoid(fire_ge=False)),
    dict(surrogate=ATan(alpha=3.0), fire_ge=False),
    dict(learn_decay=False),
    dict(learn_threshold=False, v_threshold=0.7),
]


@pytest.mark.parametrize("options", CONFIGS, ids=lambda o: "-".join(map(str, o.items())))
def test_native_covers_the_split_family(native, options):
    nat, ref = pair(F64, channels=6, **options)
    x = data((29, 3, 6))
    assert_same(nat, ref, x, torch.tensor([29, 20, 3]))


def test_spikingjelly_surrogates_and_adapter(native):
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    nat, ref = pair(F64, channels=4, surrogate=sj.ATan())
    x = data((19, 2, 4))
    assert_same(nat, ref, x, None)
    from bpsn_ext.spikingjelly import BPSNNode

    node = BPSNNode(4, step_mode="m").double()  # backend 'torch' (the default): native on CPU
    assert node.implementation(x) == "native"
    torch.testing.assert_close(node(x), BPSN(4, method="loop").double()(x), rtol=0, atol=0)


@pytest.mark.parametrize("mask_kind", ["lengths", "holes"])
def test_native_equals_sequential_reference(native, mask_kind):
    """Split fusion = a gate fixed at 1 on the first half of the channels, 0 on the rest."""
    C, T, N = 5, 21, 3
    layer = randomise(BPSN(C, method="native", refractory_steps=2)).double()
    x = data((T, N, C))
    if mask_kind == "lengths":
        mask = torch.arange(T)[:, None] < torch.tensor([T, 12, 1])[None]
    else:
        mask = torch.rand(T, N, generator=torch.Generator().manual_seed(5)) > 0.25
    gate = (torch.arange(C) < (C + 1) // 2).double()
    grad_s = torch.randn(T, N, C, generator=torch.Generator().manual_seed(2), dtype=F64)

    xr = x.clone().requires_grad_(True)
    s, h = layer.forward_with_membrane(xr, mask)
    grads = torch.autograd.grad((s * grad_s).sum(), [xr, *layer.parameters()])

    xq = x.clone().requires_grad_(True)
    leaves = [
        layer.decay_f_logit.detach().clone().requires_grad_(True),
        layer.decay_b_logit.detach().clone().requires_grad_(True),
        layer.v_threshold.detach().clone().requires_grad_(True),
    ]
    s_ref, h_ref = bpsn_reference(
        xq,
        mask,
        lam_f=torch.sigmoid(leaves[0]),
        lam_b=torch.sigmoid(leaves[1]),
        gate=gate,
        v_threshold=leaves[2],
        surrogate=ATan(),
        fusion="gate",
        runaway="refractory",
        period=2,
    )
    ref_grads = torch.autograd.grad((s_ref * grad_s).sum(), [xq, *leaves])
    assert s_ref.sum() > 0
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_gradcheck_of_the_membrane_through_native(native):
    """The membrane is smooth in x and the decays: its gradients (the kernel's adjoint
    recurrences and decay sums, shared with the spike path) are checked numerically."""
    T, N, C = 7, 2, 4
    layer = randomise(BPSN(C, method="native")).double()
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1], [1, 0], [1, 1], [1, 0]], dtype=torch.bool)

    class Membrane(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer.forward_with_membrane(x, mask)[1]

    wrapper = Membrane()

    def f(x, lf, lb):
        params = {
            "layer.decay_f_logit": lf,
            "layer.decay_b_logit": lb,
            "layer.v_threshold": layer.v_threshold,
        }
        return torch.func.functional_call(wrapper, params, (x,))

    x = data((T, N, C)).requires_grad_(True)
    lf = layer.decay_f_logit.detach().clone().requires_grad_(True)
    lb = layer.decay_b_logit.detach().clone().requires_grad_(True)
    assert layer.implementation(x) == "native"
    assert torch.autograd.gradcheck(f, (x, lf, lb))


def test_padding_content_and_padded_length_invariance(native):
    layer = randomise(BPSN(6, method="native")).double()
    T, N = 16, 3
    lengths = torch.tensor([16, 9, 4])
    x = data((T, N, 6))
    x2 = x.clone()
    pad = torch.arange(T)[:, None] >= lengths[None]
    x2[pad] = 1e3  # garbage in the padding
    x3 = torch.cat([x, data((5, N, 6), seed=9)])  # five more padded steps
    g = torch.randn(T + 5, N, 6, generator=torch.Generator().manual_seed(4), dtype=F64)
    outs = []
    for inp in (x, x2, x3):
        xr = inp.clone().requires_grad_(True)
        s = layer(xr, lengths)
        grads = torch.autograd.grad((s * g[: inp.shape[0]]).sum(), [xr, *layer.parameters()])
        outs.append((s[:T], grads[0][:T], grads[1:]))
        assert (s[T:] == 0).all() and (grads[0][T:] == 0).all()
    for s, gx, gp in outs[1:]:
        assert torch.equal(s, outs[0][0])
        torch.testing.assert_close(gx, outs[0][1], rtol=1e-12, atol=1e-12)
        for a, b in zip(gp, outs[0][2]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 2, 4), (1, 1, 2), (3, 1, 2), (5, 3, 3), (40, 1, 37)])
def test_odd_shapes(native, shape):
    nat, ref = pair(F32, channels=shape[-1])
    x = data(shape, F32) + 0.5
    g = torch.Generator().manual_seed(1)
    grad_s = torch.randn(shape, generator=g)
    s_n, h_n, g_n = run(nat, x, None, grad_s, None)
    s_r, h_r, g_r = run(ref, x, None, grad_s, None)
    assert torch.equal(s_n, s_r) and torch.equal(h_n, h_r)
    for a, b in zip(g_n, g_r):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_threads_and_chunks_give_identical_bits(native, monkeypatch):
    """Big enough for several threads and chunks that cut through channel blocks."""
    layer = randomise(BPSN(37, method="native"))
    x = data((300, 4, 37), F32)  # T * M = 44400 neurons x steps; M = 148
    mask = torch.tensor([300, 211, 1, 57])
    results = []
    for threads in ("1", "3", "7"):
        monkeypatch.setenv(cpu_native.ENV_THREADS, threads)
        xr = x.clone().requires_grad_(True)
        s, h = layer.forward_with_membrane(xr, mask)
        grads = torch.autograd.grad(s.sum() + h.sum(), [xr, *layer.parameters()])
        results.append((s, h, *grads))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("runaway", ["refractory", "none"])
def test_wide_chunks_cut_through_blocks_and_equal_the_loop(native, monkeypatch, runaway):
    """Conv-shaped, masked, float64, three threads: chunks of >= 1024 neurons that start
    inside a channel block (forward neurons' gate bytes indexed across segments) still give
    the loop's spikes bit for bit and its gradients."""
    monkeypatch.setenv(cpu_native.ENV_THREADS, "3")
    nat, ref = pair(F64, channels=5, channel_dim=2, runaway=runaway, refractory_steps=2)
    x = data((40, 3, 5, 16, 15))  # M = 3600 neurons: chunks of 1200 (blocks of 1200 too)
    assert_same(nat, ref, x, torch.tensor([40, 23, 1]))
    nat, ref = pair(F64, channels=7, channel_dim=2, runaway=runaway)
    x = data((30, 3, 7, 11, 13))  # M = 3003: chunks of 1008 cut blocks of 1001 neurons
    assert_same(nat, ref, x, torch.tensor([30, 30, 9]))


def test_non_contiguous_input(native):
    nat, ref = pair(F64, channels=6)
    base = data((3, 6, 20))
    x = base.permute(2, 0, 1)  # [20, 3, 6], not contiguous
    assert not x.is_contiguous()
    assert_same(nat, ref, x, torch.tensor([20, 7, 13]))
    xr = base.clone().requires_grad_(True)
    nat(xr.permute(2, 0, 1)).sum().backward()  # the gradient lands in the original layout
    xq = base.clone().requires_grad_(True)
    ref(xq.permute(2, 0, 1)).sum().backward()
    torch.testing.assert_close(xr.grad, xq.grad, rtol=1e-9, atol=1e-10)


def test_only_membrane_or_only_spikes_need_gradients(native):
    nat, ref = pair(F64, channels=4)
    x = data((12, 2, 4))
    for pick in (0, 1):
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        outs = [m.forward_with_membrane(xi)[pick].sum() for m, xi in zip((nat, ref), xs)]
        ga = torch.autograd.grad(outs[0], [xs[0], *nat.parameters()], allow_unused=True)
        gb = torch.autograd.grad(outs[1], [xs[1], *ref.parameters()], allow_unused=True)
        for a, b in zip(ga, gb):
            if b is None or a is None:
                assert a is None or (a == 0).all()
                continue
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_no_grad_path(native):
    layer = randomise(BPSN(6))  # method="auto"
    x = data((25, 3, 6), F32)
    lengths = torch.tensor([25, 10, 3])
    with torch.no_grad():
        assert layer.implementation(x) == "native"
        s, h = layer.forward_with_membrane(x, lengths)
    s2, h2 = layer.forward_with_membrane(x.clone().requires_grad_(True), lengths)
    assert torch.equal(s, s2) and torch.equal(h, h2.detach())
    pad = torch.arange(25)[:, None] >= lengths[None]
    assert (h[pad] == 0).all() and (s[pad] == 0).all() and (h[~pad] != 0).any()
    ref = BPSN(6, method="chunked")
    ref.load_state_dict(layer.state_dict())
    with torch.no_grad():
        s_ref, h_ref = ref.forward_with_membrane(x, lengths)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    assert (s != s_ref).float().mean() < 1e-2  # block-scan rounding may flip a tie


def test_auto_picks_native_only_where_it_applies(native, monkeypatch):
    x = data((10, 2, 4), F32)
    assert BPSN(4)(x).shape == x.shape and BPSN(4).implementation(x) == "native"
    assert BPSN(4).implementation(x.double()) == "native"
    assert BPSN(4).implementation(x.half()) != "native"
    assert BPSN(4, fusion="gate").implementation(x) != "native"
    assert BPSN(4, runaway="soft_reset").implementation(x) != "native"
    assert BPSN(4, kernel="window").implementation(x) != "native"
    assert BPSN(4, method="chunked").implementation(x) != "native"
    assert BPSN(4, surrogate=ATan(spiking=False)).implementation(x) != "native"
    monkeypatch.setenv(cpu_native.ENV_SWITCH, "0")
    assert BPSN(4).implementation(x) != "native"
    from bpsn_ext.kernels import bpsn_cpu_ops

    calls = []
    monkeypatch.setattr(
        bpsn_cpu_ops, "bpsn_native", lambda xx, mask, *options: calls.append(xx) or (xx, xx)
    )
    BPSN(4)(x)
    assert calls == []
    monkeypatch.setenv(cpu_native.ENV_SWITCH, "1")
    BPSN(4)(x)
    assert len(calls) == 1
    monkeypatch.setenv(cpu_native.ENV_SWITCH, "maybe")
    with pytest.raises(ValueError, match="BPSN_EXT_CPU_KERNEL must be 0 or 1"):
        BPSN(4)(x)


def test_env_switch_gives_the_torch_path(native, monkeypatch):
    layer = randomise(BPSN(5))
    x = data((30, 2, 5), F32)
    s_native = layer(x)
    monkeypatch.setenv(cpu_native.ENV_SWITCH, "0")
    s_torch = layer(x)
    assert (s_native != s_torch).float().mean() < 1e-2 and s_torch.sum() > 0


def test_explicit_request_errors(monkeypatch):
    x = data((8, 2, 4), F32)
    with pytest.raises(ValueError, match="not fusion='gate'"):
        BPSN(4, fusion="gate", method="native")(x)
    with pytest.raises(ValueError, match="dtype torch.float16"):
        BPSN(4, method="native")(x.half())
    monkeypatch.setenv(cpu_native.ENV_SWITCH, "0")
    with pytest.raises(RuntimeError, match="BPSN_EXT_CPU_KERNEL=0 disables"):
        BPSN(4, method="native")(x)
    monkeypatch.delenv(cpu_native.ENV_SWITCH)
    monkeypatch.setattr(cpu_native, "unavailable_reason", lambda: "no C++ compiler found")
    with pytest.raises(
        cpu_native.NativeKernelUnavailable,
        match="method='native' was requested .* no C\\+\\+ compiler found",
    ):
        BPSN(4, method="native")(x)


def test_auto_falls_back_to_torch_when_unavailable(monkeypatch):
    from bpsn_ext.kernels import dispatch

    monkeypatch.setattr(cpu_native, "unavailable_reason", lambda: "no C++ compiler found")
    monkeypatch.setattr(dispatch, "_warned", set())
    x = data((9, 2, 4), F32)
    layer = BPSN(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert layer.implementation(x) != "native"
        out = layer(x)
        layer(x)
    assert out.shape == x.shape
    messages = [str(w.message) for w in caught if "native kernel" in str(w.message)]
    assert len(messages) == 1 and "no C++ compiler found" in messages[0]
    assert "Install a C++ compiler" in messages[0] and "BPSN_EXT_CPU_KERNEL=0" in messages[0]
    assert caught[0].category is RuntimeWarning


def test_loader_reports_a_missing_compiler(tmp_path, monkeypatch):
    bogus = str(tmp_path / "no-such-cc")
    with pytest.raises(cpu_native.NativeKernelUnavailable, match="no C\\+\\+ compiler"):
        cpu_native.compile_library(compiler=bogus, cache_dir=str(tmp_path))
    monkeypatch.setenv(cpu_native.ENV_CXX, bogus)
    with pytest.raises(
        cpu_native.NativeKernelUnavailable, match="BPSN_EXT_CXX=.*is not an executable"
    ):
        cpu_native.compile_library(cache_dir=str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(cpu_native.ENV_CXX)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(cpu_native.NativeKernelUnavailable, match="no C\\+\\+ compiler found"):
        cpu_native.compile_library(cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cache_is_keyed_and_written_atomically(native, tmp_path, monkeypatch):
    first = cpu_native.compile_library(cache_dir=str(tmp_path))
    assert cpu_native.compile_library(cache_dir=str(tmp_path)) == first  # cached
    monkeypatch.setenv(cpu_native.ENV_MARCH, "0")
    portable = cpu_native.compile_library(cache_dir=str(tmp_path))
    assert portable != first  # the flags are part of the key
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(os.path.basename(p) for p in (first, portable))  # no temp files
    lib = cpu_native.load(compiler=None)
    assert lib.bpsn_cpu_abi_version() == cpu_native.ABI_VERSION
