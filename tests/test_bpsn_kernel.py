"""The fused BPSN kernels: their code compiled as host C++ equals the torch op (no GPU needed),
the CUDA source compiles for the GPU, and on a GPU the CuPy backend equals the torch path."""

import ctypes
import importlib.util
import shutil
import subprocess
from importlib.resources import files

import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.kernels.dispatch import covers, surrogate_args  # noqa: E402
from bpsn_ext.kernels.launch_args import channel_sums, prepare
from bpsn_ext.surrogate import S2NN, ATan, FastSigmoid, Sigmoid

SOURCE = files("bpsn_ext.kernels") / "bpsn_kernels.cu"


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernel code for the host")
    out = tmp_path_factory.mktemp("kernel") / "bpsn_host.so"
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
            "-DBPSN_HOST_TEST",
            str(SOURCE),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(out))


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr())


def _scalars(a):
    T, M, N, C, inner = a.shape
    c = a.cfg
    return [ctypes.c_longlong(v) for v in (T, M, N, C, inner)] + [
        ctypes.c_int(int(a.has_mask)),
        ctypes.c_int(c["fire_ge"]),
        ctypes.c_int(c["refractory"]),
        ctypes.c_float(c["k0"]),
        ctypes.c_int(c["sg_kind"]),
        ctypes.c_float(c["sg_a"]),
        ctypes.c_float(c["sg_b"]),
    ]


def _prepare(module, x, mask):
    """The CUDA kernel's arguments for `module` on `x`, as the dispatch lays them out."""
    sg = surrogate_args(module.surrogate_function)
    dim = module.resolve_channel_dim(x)
    return prepare(x, mask, module.params(x), module.options, sg, dim)


def run_host(lib, module, x, mask, grad_s):
    """Forward and backward through the host build; returns spikes, membrane and gradients."""
    with torch.no_grad():
        a = _prepare(module, x, mask)
    T, M, _, C, inner = a.shape
    spikes, membrane = torch.empty(T, M), torch.empty(T, M)
    hf, hb = torch.empty(T, M), torch.empty(T, M)
    params = (a.decay_f, a.decay_b, a.w_f, a.w_b, a.thr)
    lib.bpsn_forward_host(
        _ptr(a.x2),
        _ptr(a.mask_u8),
        *map(_ptr, params),
        _ptr(spikes),
        _ptr(membrane),
        _ptr(hf),
        _ptr(hb),
        *_scalars(a),
    )
    g = grad_s.reshape(T, M).contiguous()
    delta, acc, grad_x = torch.empty(T, M), torch.empty(T, M), torch.empty(T, M)
    partial = [torch.empty(M) for _ in range(5)]
    lib.bpsn_backward_host(
        _ptr(g),
        _ptr(a.x2),
        _ptr(a.mask_u8),
        *map(_ptr, params),
        _ptr(membrane),
        _ptr(hf),
        _ptr(hb),
        _ptr(delta),
        _ptr(acc),
        _ptr(grad_x),
        *map(_ptr, partial),
        *_scalars(a),
    )
    sums = [channel_sums(p, C, inner) for p in partial]
    return spikes.reshape(x.shape), membrane.reshape(x.shape), grad_x.reshape(x.shape), sums


def randomise(layer):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.uniform_(-1.0, 1.0) if "logit" in name else p.uniform_(0.4, 1.0)
    return layer


CASES = [
    dict(fusion="gate", runaway="refractory", surrogate=ATan()),
    dict(fusion="gate", runaway="none", surrogate=Sigmoid()),
    dict(fusion="avg", runaway="refractory", refractory_steps=2, surrogate=S2NN()),
    dict(fusion="sum", runaway="none", surrogate=FastSigmoid(fire_ge=False)),
    dict(fusion="split", runaway="refractory", surrogate=ATan()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['fusion']}-{c['runaway']}")
@pytest.mark.parametrize("layout", ["channels_last", "conv", "shared"])
def test_host_build_of_the_kernel_equals_torch(host_lib, case, layout):
    torch.manual_seed(0)
    if layout == "channels_last":
        layer, x = BPSN(5, method="loop", **case), torch.randn(23, 3, 5)
    elif layout == "conv":
        layer, x = BPSN(3, channel_dim=2, method="loop", **case), torch.randn(11, 2, 3, 2, 2)
    elif case["fusion"] == "split":
        pytest.skip("split fusion needs per-channel parameters")
    else:
        layer, x = BPSN(None, method="loop", **case), torch.randn(17, 3, 4)
    randomise(layer)
    x = x * 1.2 + 0.5
    T, N = x.shape[:2]
    lengths = torch.tensor([T, max(T - 6, 1), 2][:N])
    grad_s = torch.randn_like(x)

    xr = x.clone().requires_grad_(True)
    s_ref, h_ref = layer.forward_with_membrane(xr, lengths)
    params = [p for p in layer.parameters()]
    grads = torch.autograd.grad((s_ref * grad_s).sum(), [xr, *params])

    spikes, membrane, grad_x, (g_lf, g_lb, g_wf, g_wb, g_th) = run_host(
        host_lib, layer, x, lengths, grad_s
    )
    assert s_ref.sum() > 0
    assert torch.equal(spikes, s_ref)  # same arithmetic, same rounding
    torch.testing.assert_close(membrane, h_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad_x, grads[0], rtol=1e-4, atol=1e-5)

    # chain the kernel's raw parameter gradients to the module's parameters, as autograd does
    named = dict(zip([n for n, _ in layer.named_parameters()], grads[1:]))
    lam_f, lam_b = layer.decay_f.detach(), layer.decay_b.detach()

    def like(g, p):  # shared (scalar) parameters receive the sum over the kernel's [1] vector
        return g.sum() if p.dim() == 0 else g

    expect = {
        "decay_f_logit": like(g_lf, lam_f) * lam_f * (1 - lam_f),
        "decay_b_logit": like(g_lb, lam_b) * lam_b * (1 - lam_b),
        "v_threshold": like(g_th, layer.v_threshold),
    }
    if case["fusion"] == "gate":
        gate = layer.gate.detach()
        expect["gate_logit"] = like(g_wf - g_wb, gate) * gate * (1 - gate)
    for name, value in expect.items():
        torch.testing.assert_close(value, named[name], rtol=1e-4, atol=1e-5, msg=name)


def _host_launcher(fn):
    """Run an entry point of the host build with the operators' (tensors, scalars)."""

    def launch(tensors, scalars):
        T, M, N, C, inner, has_mask, fire_ge, refractory, k0, sg_kind, sg_a, sg_b = scalars
        fn(
            *(ctypes.c_void_p(t.data_ptr()) for t in tensors),
            *(ctypes.c_longlong(v) for v in (T, M, N, C, inner)),
            *(ctypes.c_int(v) for v in (has_mask, fire_ge, refractory)),
            ctypes.c_float(k0),
            ctypes.c_int(sg_kind),
            ctypes.c_float(sg_a),
            ctypes.c_float(sg_b),
        )

    return launch


@pytest.fixture
def host_operators(host_lib, monkeypatch):
    """The torch operators that CuPy launches on a GPU, launched by the host build on CPU."""
    from bpsn_ext.kernels import fused_bpsn_ops

    launchers = (
        _host_launcher(host_lib.bpsn_forward_host),
        _host_launcher(host_lib.bpsn_backward_host),
    )
    monkeypatch.setitem(fused_bpsn_ops.LAUNCHERS.table, "cpu", launchers)
    return fused_bpsn_ops


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['fusion']}-{c['runaway']}")
def test_the_cupy_operator_equals_torch(host_operators, case):
    torch.manual_seed(0)
    layer = randomise(BPSN(3, channel_dim=2, method="loop", **case))
    x = torch.randn(11, 2, 3, 2, 2)
    lengths = torch.tensor([11, 6])
    xr, xk = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ref, h_ref = layer.forward_with_membrane(xr, lengths)
    spikes, membrane = host_operators.bpsn_fused(_prepare(layer, xk, lengths))
    assert s_ref.sum() > 0 and torch.equal(spikes.reshape(x.shape), s_ref)
    torch.testing.assert_close(membrane.reshape(x.shape), h_ref, rtol=1e-6, atol=1e-6)
    assert not membrane.requires_grad  # the kernel differentiates the spikes only
    g = torch.randn_like(s_ref)
    ref = torch.autograd.grad((s_ref * g).sum(), [xr, *layer.parameters()])
    got = torch.autograd.grad((spikes.reshape(x.shape) * g).sum(), [xk, *layer.parameters()])
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_cupy_operator_passes_opcheck(host_operators):
    torch.manual_seed(0)
    layer = randomise(BPSN(4, fusion="gate", method="loop"))
    x = torch.randn(9, 2, 4, requires_grad=True)
    a = _prepare(layer, x, torch.tensor([9, 5]))
    c = a.cfg
    args = (
        a.x2,
        a.mask_u8,
        [a.decay_f, a.decay_b, a.w_f, a.w_b, a.thr],
        list(a.shape),
        [1, c["fire_ge"], c["refractory"], c["sg_kind"]],
        [float(c["k0"]), c["sg_a"], c["sg_b"]],
    )
    torch.library.opcheck(host_operators.bpsn_fused_forward, args)


def test_kernel_config_rejects_what_it_does_not_cover():
    x = torch.randn(3, 2, 4)

    def check(layer):
        covers("cupy", layer.options, x, layer.surrogate_function)

    with pytest.raises(ValueError, match="fused BPSN kernel covers .*not fusion='concat'"):
        check(BPSN(fusion="concat"))
    with pytest.raises(ValueError, match="runaway='soft_reset'"):
        check(BPSN(runaway="soft_reset"))
    with pytest.raises(ValueError, match="surrogate"):
        check(BPSN(surrogate=torch.sigmoid))
    a = _prepare(BPSN(), x, None)
    assert a.cfg["sg_kind"] == 0 and a.cfg["refractory"] == 1
    torch.testing.assert_close(a.w_f, torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_cuda_source_compiles_for_the_gpu(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    inst = tmp_path / "inst.cu"
    types = ["float", "__half", "__nv_bfloat16"]
    lines = [f'#include "{SOURCE}"']
    fwd = (
        "template __global__ void bpsn_forward<{x}>(const {x}*, const unsigned char*, "
        "const float*, const float*, const float*, const float*, const float*, {x}*, {x}*, "
        "float*, float*, BPSN_SCALARS);"
    )
    bwd = (
        "template __global__ void bpsn_backward<{x}, {g}>(const {g}*, const {x}*, "
        "const unsigned char*, const float*, const float*, const float*, const float*, "
        "const float*, const {x}*, const float*, const float*, float*, float*, {x}*, float*, "
        "float*, float*, float*, float*, BPSN_SCALARS);"
    )
    lines += [fwd.format(x=x) for x in types]
    lines += [bwd.format(x=x, g=g) for x in types for g in types]
    inst.write_text("\n".join(lines))
    result = subprocess.run(
        [
            nvcc,
            "-ptx",
            "-arch=compute_80",
            "--fmad=false",
            "-std=c++17",
            str(inst),
            "-o",
            str(tmp_path / "inst.ptx"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("cupy") is None,
    reason="needs a CUDA GPU and CuPy",
)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['fusion']}-{c['runaway']}")
def test_cupy_equals_torch_on_gpu(case, dtype):
    pytest.importorskip("spikingjelly")
    from bpsn_ext.spikingjelly import BPSNNode

    torch.manual_seed(0)
    ref = randomise(BPSNNode(7, backend="torch", **case)).cuda()
    fast = BPSNNode(7, backend="cupy", **case).cuda()
    fast.load_state_dict(ref.state_dict())
    x = (torch.randn(37, 5, 7, device="cuda") * 1.2 + 0.5).to(dtype)  # odd sizes on purpose
    lengths = torch.tensor([37, 30, 1, 12, 37], device="cuda")
    g = torch.randn_like(x)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa, sb = ref(xa, lengths), fast(xb, lengths)
    mismatch = (sa != sb).float().mean().item()
    assert mismatch < (1e-3 if dtype == torch.float32 else 2e-2)  # rounding at the threshold
    ga = torch.autograd.grad((sa * g).sum(), [xa, *ref.parameters()])
    gb = torch.autograd.grad((sb * g).sum(), [xb, *fast.parameters()])
    tol = dict(rtol=2e-3, atol=2e-4) if dtype == torch.float32 else dict(rtol=5e-2, atol=5e-3)
    if mismatch == 0:
        for a, b in zip(ga, gb):
            torch.testing.assert_close(b.float(), a.float(), **tol)
