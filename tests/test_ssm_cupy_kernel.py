"""The fused S4D scan kernel: its code compiled as host C++ equals the torch S4D (no GPU
needed), the CUDA source compiles for the GPU, and on a GPU the CuPy backend of the SpikingJelly
adapters equals the torch path."""

import ctypes
import importlib.util
import math
import shutil
import subprocess
from importlib.resources import files

import pytest
import torch

from bpsn_ext.kernels.ssm_launch_args import prepare_scan
from bpsn_ext.layers import S4D


def tensors(m: S4D) -> tuple:
    """``(A_bar, B_bar, C, D)`` of an S4D: what the fused scans take."""
    _, A_bar, B_bar = m._discrete()
    return A_bar, B_bar, m.C, m.D


def scan(host_scan, m, x, state=None, mask=None):
    return host_scan.s4d_scan(x, state, mask, tensors(m))


SOURCE = files("bpsn_ext.kernels") / "ssm_kernels.cu"


@pytest.fixture(scope="module")
def host_scan(tmp_path_factory):
    """`bpsn_ext.kernels.fused_scan_ops`, its operators launching the host build of the kernel
    code for CPU tensors (as CuPy launches the CUDA build for CUDA tensors)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel code for the host")
    out = tmp_path_factory.mktemp("ssm_kernel") / "ssm_host.so"
    subprocess.run(
        [
            cxx,
            "-O1",
            "-shared",
            "-fPIC",
            "-x",
            "c++",
            "-std=c++17",
            "-ffp-contract=off",
            "-DSSM_HOST_TEST",
            str(SOURCE),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(out))

    def launcher(fn):
        def launch(tensors, scalars):
            for t in tensors:
                assert t.is_contiguous() and t.device.type == "cpu"
            ptrs = [ctypes.c_void_p(t.data_ptr()) for t in tensors]
            T, N, H, P, *flags = scalars
            fn(
                *ptrs,
                *(ctypes.c_longlong(v) for v in (T, N, H, P)),
                *(ctypes.c_int(v) for v in flags),
            )

        return launch

    from bpsn_ext.kernels import fused_scan_ops

    fused_scan_ops.register_launchers(
        "cpu", launcher(lib.s4d_scan_forward_host), launcher(lib.s4d_scan_backward_host)
    )
    yield fused_scan_ops
    fused_scan_ops.LAUNCHERS.table.pop("cpu")


def randomised_s4d(H, d_state, seed):
    torch.manual_seed(seed)
    m = S4D(H, d_state)
    with torch.no_grad():
        m.log_A_real.add_(0.3 * torch.randn_like(m.log_A_real))
        m.A_imag.add_(0.5 * torch.randn_like(m.A_imag))
        m.log_dt.uniform_(math.log(0.01), math.log(0.5))
    return m


def step_reference(m, x, state, mask):
    """The recurrence through S4D.step_with_state (complex64 torch), one step at a time."""
    valid = None if mask is None else torch.arange(x.shape[0])[:, None] < mask[None, :]
    state = None if state is None else state.clone()
    ys = []
    for t in range(x.shape[0]):
        y, state = m.step_with_state(x[t], state, None if valid is None else valid[t])
        ys.append(y)
    return torch.stack(ys), state


def grads(out, state, params, g, g_state):
    loss = (out * g).sum()
    if g_state is not None:
        loss = loss + (torch.view_as_real(state) * g_state).sum()
    return torch.autograd.grad(loss, params)


def _random_size(seed):
    g = torch.Generator().manual_seed(seed)
    T, N, H, P = (
        int(torch.randint(lo, hi, (1,), generator=g))
        for lo, hi in ((50, 300), (1, 4), (1, 7), (1, 33))
    )
    return T, N, H, 2 * P


# T, N, H, d_state: small edge cases, then random sizes up to T = 300, d_state = 64
SIZES = [(1, 1, 1, 2), (7, 2, 3, 4), (23, 3, 5, 8), (40, 4, 2, 16)]
SIZES += [_random_size(seed) for seed in range(2)]


@pytest.mark.parametrize("T,N,H,d_state", SIZES)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "carried_state"])
def test_host_build_of_the_scan_equals_torch_s4d(host_scan, T, N, H, d_state, masked, with_state):
    m = randomised_s4d(H, d_state, seed=T + N + H)
    P = d_state // 2
    x = torch.randn(T, N, H)
    mask = torch.randint(0, T + 1, (N,)) if masked else None
    if masked:
        mask[0] = T  # one full-length sample
        x = x.masked_fill(~(torch.arange(T)[:, None] < mask[None, :])[..., None], 7.0)
    state = torch.randn(N, H, P, dtype=torch.cfloat) if with_state else None
    g = torch.randn(T, N, H)
    g_state = torch.randn(N, H, P, 2)
    params = list(m.parameters())

    def run(forward):
        xg = x.clone().requires_grad_(True)
        sg = state.clone().requires_grad_(True) if with_state else None
        y, st = forward(xg, sg)
        return y, st, grads(y, st, [xg, *params] + ([sg] if with_state else []), g, g_state)

    y_fft, st_fft, g_fft = run(lambda xg, sg: m.forward_with_state(xg, sg, mask))  # FFT form
    y_step, st_step, g_step = run(lambda xg, sg: step_reference(m, xg, sg, mask))  # recurrence
    y, st, g_ker = run(lambda xg, sg: scan(host_scan, m, xg, sg, mask))

    for ref in (y_fft, y_step):
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    for ref in (st_fft, st_step):
        torch.testing.assert_close(st, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    if masked:  # padded steps output exactly zero
        pad = ~(torch.arange(T)[:, None] < mask[None, :])
        assert (y[pad] == 0).all()
    names = ["x"] + [n for n, _ in m.named_parameters()] + (["state"] if with_state else [])
    # The kernel runs the recurrence, so its float32 rounding is that of the step form: the
    # gradients match it to 1e-4.  Against the FFT form (powers A_bar^l computed directly, not
    # by repeated products) the chained log_dt gradient of long sequences differs by ~2e-4
    # relative in float32: a float64 run puts that error in the float32 recurrence itself (the
    # torch step form has it too), not in the kernel.  Hence 1e-3 there.
    for name, a, b, c in zip(names, g_step, g_fft, g_ker):
        torch.testing.assert_close(
            c,
            a,
            rtol=1e-4,
            atol=1e-4 * a.abs().max().item(),
            msg=lambda s, name=name: f"{name} vs step: {s}",
        )
        torch.testing.assert_close(
            c,
            b,
            rtol=1e-3,
            atol=1e-4 * b.abs().max().item(),
            msg=lambda s, name=name: f"{name} vs FFT: {s}",
        )


def test_host_scan_chunks_continue_from_the_final_state(host_scan):
    m = randomised_s4d(4, 6, seed=3)
    x = torch.randn(30, 2, 4)
    with torch.no_grad():
        y_all, st_all = scan(host_scan, m, x)
        y1, st1 = scan(host_scan, m, x[:11])
        y2, st2 = scan(host_scan, m, x[11:], st1)
    torch.testing.assert_close(torch.cat([y1, y2]), y_all, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(st2, st_all, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_state", [False, True])
def test_the_scan_operator_passes_opcheck(host_scan, with_state):
    m = randomised_s4d(3, 4, seed=1)
    x = torch.randn(7, 2, 3, requires_grad=True)
    state = torch.randn(2, 3, 2, dtype=torch.cfloat) if with_state else None
    a = prepare_scan(x, state, torch.tensor([7, 4]), tensors(m))
    x0 = None if a.x0 is None else a.x0.detach().requires_grad_()
    args = (a.u, a.mask_u8, [a.A_bar, a.B_bar, a.C, a.D], x0, True)
    torch.library.opcheck(host_scan.s4d_scan_fused_forward, args)


def test_prepare_refuses_what_the_scan_does_not_cover():
    from bpsn_ext.kernels.dispatch import choose_scan

    x = torch.randn(5, 2, 3)
    with pytest.raises(RuntimeError, match="backend='cupy' runs on CUDA tensors only"):
        choose_scan(x, bidirectional=False, dtype=torch.float32, backend="cupy")
    assert choose_scan(x, bidirectional=False, dtype=torch.float32, backend="auto") == "torch"
    with pytest.raises(ValueError, match="reset_state"):
        prepare_scan(x, torch.zeros(1, 3, 2, dtype=torch.cfloat), None, tensors(S4D(3, 4)))


def test_cuda_source_compiles_for_the_gpu(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    inst = tmp_path / "inst.cu"
    inst.write_text(f'#include "{SOURCE}"\n')
    ptx = tmp_path / "inst.ptx"
    result = subprocess.run(
        [nvcc, "-ptx", "-arch=compute_80", "--fmad=false", "-std=c++17", str(inst), "-o", str(ptx)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    text = ptx.read_text()
    assert ".entry s4d_scan_forward" in text and ".entry s4d_scan_backward" in text


# -- the SpikingJelly adapters' dispatch, run on CPU with the host build in place of CuPy -----

BLOCK_OPTIONS = {"S4DLayer": {}, "BinaryS4DLayer": {"activation": "gelu"}, "GSULayer": {}}


@pytest.fixture
def fake_cupy_backend(host_scan, monkeypatch):
    """Make the dispatch believe CuPy runs on these CPU tensors: ``bpsn_ext.kernels.cupy_ssm``
    is a stand-in running the host build."""
    pytest.importorskip("spikingjelly.activation_based")
    import sys
    import types

    from bpsn_ext.spikingjelly import ssm_layers as sj_layers

    calls = []

    def fake_scan(x, state, mask, ssm, what):
        calls.append(x.shape)
        return host_scan.s4d_scan(x, state, mask, ssm, what)

    fake = types.ModuleType("bpsn_ext.kernels.cupy_ssm")
    fake.s4d_scan_cupy = fake_scan
    monkeypatch.setitem(sys.modules, "bpsn_ext.kernels.cupy_ssm", fake)
    from bpsn_ext.kernels import dispatch
    from bpsn_ext.spikingjelly import _compat

    monkeypatch.setattr(dispatch, "_is_cuda", lambda x: True)
    monkeypatch.setattr(dispatch, "cupy_available", lambda: True)
    monkeypatch.setattr(_compat, "check_backend", lambda name: name)  # no CuPy here
    return sj_layers, calls


@pytest.mark.parametrize("name", list(BLOCK_OPTIONS))
@pytest.mark.parametrize("carry_state", [False, True])
def test_adapters_route_m_mode_through_the_scan(fake_cupy_backend, name, carry_state):
    sj_layers, calls = fake_cupy_backend
    from spikingjelly.activation_based import functional

    cls = getattr(sj_layers, name)
    torch.manual_seed(0)
    ref = cls(5, 6, step_mode="m", backend="torch", carry_state=carry_state, **BLOCK_OPTIONS[name])
    fast = cls(5, 6, step_mode="m", backend="cupy", carry_state=carry_state, **BLOCK_OPTIONS[name])
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(13, 3, 5)
    lengths = torch.tensor([13, 9, 2])
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa, lengths), fast(xb, lengths)
    if carry_state:  # a second chunk continues from the memory
        ya, yb = torch.cat([ya, ref(xa[:4])]), torch.cat([yb, fast(xb[:4])])
        torch.testing.assert_close(fast.ssm_state, ref.ssm_state, rtol=1e-5, atol=1e-5)
    else:
        assert fast.ssm_state is None
    assert len(calls) == (2 if carry_state else 1)
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    ga = torch.autograd.grad((ya * g).sum(), [xa, *ref.parameters()])
    gb = torch.autograd.grad((yb * g).sum(), [xb, *fast.parameters()])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    # 's' mode stays on the torch step
    functional.reset_net(fast)
    fast.step_mode = "s"
    fast(x[0])
    assert len(calls) == (2 if carry_state else 1)


def test_adapters_fall_back_or_refuse_where_the_scan_does_not_apply(fake_cupy_backend):
    sj_layers, calls = fake_cupy_backend
    x = torch.randn(6, 2, 4)
    # auto: bidirectional and float64 layers run the torch code
    bi = sj_layers.S4DLayer(4, 4, step_mode="m", backend="auto", bidirectional=True)
    torch.testing.assert_close(bi(x), S4D.forward(bi, x))
    f64 = sj_layers.S4DLayer(4, 4, step_mode="m", backend="auto").double()
    f64(x.double())
    s5 = sj_layers.SpikingS5Layer(4, 4, step_mode="m", backend="auto")
    s5(x)
    assert calls == []
    # explicit cupy: clear errors
    with pytest.raises(ValueError, match="bidirectional=True.*no fused CuPy kernel"):
        sj_layers.S4DLayer(4, 4, step_mode="m", backend="cupy", bidirectional=True)
    with pytest.raises(ValueError, match="no fused CuPy kernel"):
        bi.backend = "cupy"
    f64.backend = "cupy"
    with pytest.raises(TypeError, match="float32"):
        f64(x.double())


# -- every face reaches the fused scan through the dispatch (the host build stands in for the
#    Triton scan; it runs a reverse scan as the causal one on the flipped sequence) -----------


@pytest.fixture
def stand_in_triton_scan(host_scan, monkeypatch):
    import sys
    import types

    from bpsn_ext.kernels import dispatch

    calls = []

    def s4d_scan_triton(u, mask_u8, A_bar, B_bar, C, D, x0, has_mask, reverse):
        calls.append(reverse)
        ssm = [A_bar, B_bar, C, D]
        if not reverse:
            return host_scan.s4d_scan_fused_forward(u, mask_u8, ssm, x0, has_mask)
        m = mask_u8.flip(0) if has_mask else mask_u8
        y, xT = host_scan.s4d_scan_fused_forward(u.flip(0), m, ssm, x0, has_mask)
        return y.flip(0), xT

    fake = types.ModuleType("bpsn_ext.kernels.triton_ssm_scan")
    fake.s4d_scan_triton = s4d_scan_triton
    monkeypatch.setitem(sys.modules, "bpsn_ext.kernels.triton_ssm_scan", fake)
    monkeypatch.setattr(dispatch, "triton_available", lambda device: None)

    def use(value):
        monkeypatch.setenv("BPSN_EXT_SSM_IMPLEMENTATION", value)
        dispatch.read_environment()

    yield use, calls
    monkeypatch.delenv("BPSN_EXT_SSM_IMPLEMENTATION", raising=False)
    dispatch.read_environment()


def _faces():
    from bpsn_ext.layers import GSU, BinaryS4D

    faces = {
        "S4D": lambda: S4D(5, 6),
        "S4D-bidirectional-lag0": lambda: S4D(5, 6, bidirectional=True),
        "S4D-bidirectional-s4": lambda: S4D(
            5, 6, bidirectional=True, bidirectional_convention="s4"
        ),
        "GSU": lambda: GSU(5, 6),
        "BinaryS4D": lambda: BinaryS4D(5, 6, activation="gelu"),
    }
    if importlib.util.find_spec("spikingjelly") is not None:
        faces["spikingjelly.S4DLayer"] = lambda: _sj().S4DLayer(5, 6, step_mode="m")
        faces["spikingjelly.GSULayer"] = lambda: _sj().GSULayer(5, 6, step_mode="m")
    if importlib.util.find_spec("snntorch") is not None:
        faces["snntorch.S4DLeaky"] = lambda: _snn().S4DLeaky(5, 6)
    return faces


def _sj():
    from bpsn_ext.spikingjelly import ssm_layers

    return ssm_layers


def _snn():
    from bpsn_ext import snntorch

    return snntorch


@pytest.mark.parametrize("face", list(_faces()))
def test_every_face_reaches_the_fused_scan(stand_in_triton_scan, face):
    use, calls = stand_in_triton_scan
    torch.manual_seed(0)
    layer = _faces()[face]()
    x = torch.randn(11, 3, 5)
    lengths = torch.tensor([11, 7, 2])

    def run():
        xg = x.clone().requires_grad_(True)
        y = layer(xg, mask=lengths)
        g = torch.autograd.grad((y * torch.cos(y)).sum(), [xg, *layer.parameters()])
        return y, g

    use("torch")
    y_ref, g_ref = run()
    assert calls == []
    use("triton")
    y, g = run()
    assert len(calls) == (2 if "bidirectional" in face else 1)
    assert calls[-1] is ("bidirectional" in face)  # the backward half runs in reverse
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


def test_a_layer_asks_for_the_triton_scan_by_name(stand_in_triton_scan):
    from bpsn_ext.layers import GSU

    _, calls = stand_in_triton_scan
    torch.manual_seed(0)
    layer = GSU(5, 6)
    x = torch.randn(9, 2, 5)
    ref = layer(x)
    layer.ssm.scan_backend = "triton"  # no environment variable: the layer's own request
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    assert calls == [False]


# -- on a GPU: the CuPy backend equals the torch path ------------------------------------------

gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("cupy") is None,
    reason="needs a CUDA GPU and CuPy",
)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", list(BLOCK_OPTIONS))
@pytest.mark.parametrize("carry_state", [False, True])
def test_cupy_equals_torch_on_gpu(name, carry_state):
    pytest.importorskip("spikingjelly.activation_based")
    from bpsn_ext.spikingjelly import ssm_layers as sj_layers

    cls = getattr(sj_layers, name)
    torch.manual_seed(0)
    ref = cls(
        7, 16, step_mode="m", backend="torch", carry_state=carry_state, **BLOCK_OPTIONS[name]
    ).cuda()
    fast = cls(
        7, 16, step_mode="m", backend="cupy", carry_state=carry_state, **BLOCK_OPTIONS[name]
    ).cuda()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(37, 5, 7, device="cuda")  # odd sizes on purpose
    lengths = torch.tensor([37, 30, 1, 12, 37], device="cuda")
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa, lengths), fast(xb, lengths)
    if carry_state:
        ya, yb = torch.cat([ya, ref(xa[:5])]), torch.cat([yb, fast(xb[:5])])
    if name == "GSULayer":  # ternary thresholds: allow rare rounding flips, compare the rest
        close = torch.isclose(yb, ya, rtol=1e-3, atol=1e-4)
        assert close.float().mean() > 0.99
        return
    torch.testing.assert_close(yb, ya, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ya)
    ga = torch.autograd.grad((ya * g).sum(), [xa, *ref.parameters()])
    gb = torch.autograd.grad((yb * g).sum(), [xb, *fast.parameters()])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3 * a.abs().max().item())


@gpu
@pytest.mark.gpu
def test_cupy_scan_equals_forward_with_state_on_gpu():
    from bpsn_ext.kernels.cupy_ssm import s4d_scan_cupy

    m = randomised_s4d(9, 32, seed=5).cuda()
    x = torch.randn(300, 4, 9, device="cuda")
    state = torch.randn(4, 9, 16, dtype=torch.cfloat, device="cuda")
    lengths = torch.tensor([300, 17, 0, 250], device="cuda")
    with torch.no_grad():
        y_ref, st_ref = m.forward_with_state(x, state, lengths)
        y, st = s4d_scan_cupy(x, state, lengths, tensors(m))
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4 * y_ref.abs().max().item())
    torch.testing.assert_close(st, st_ref, rtol=1e-4, atol=1e-4 * st_ref.abs().max().item())


def test_s5_scan_choice_on_cpu(monkeypatch):
    from bpsn_ext.kernels import dispatch
    from bpsn_ext.layers import SpikingS5

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.randn(5, 2, 3)
    assert dispatch.choose_diagonal_scan(x, dtype=torch.float32) == "torch"
    with pytest.raises(TypeError, match="SpikingS5: the triton scan was requested but .*float32"):
        dispatch.choose_diagonal_scan(x, dtype=torch.float64, backend="triton")
    layer = SpikingS5(3, 4)
    layer.scan_backend = "triton"
    with pytest.raises(ValueError, match="SpikingS5: the triton scan was requested"):
        layer(x)
