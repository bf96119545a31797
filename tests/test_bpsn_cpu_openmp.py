"""The native BPSN CPU kernel on torch's OpenMP team (bpsn_ext/kernels/cpu_openmp.py): built
with OpenMP only where torch's own GNU runtime can be shared, never a second runtime in the
process, and a forked child (whose OpenMP team is gone) still gets the same spikes."""

import os
import select
import time

import numpy as np
import pytest
import torch

from bpsn_ext import BPSN
from bpsn_ext.kernels import cpu_native, cpu_openmp


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in (cpu_openmp.ENV_OPENMP, cpu_native.ENV_THREADS, cpu_native.ENV_SWITCH):
        monkeypatch.delenv(var, raising=False)


def _fake_process(monkeypatch, libraries, backend="OpenMP"):
    monkeypatch.setattr(cpu_openmp, "gomp_libraries", lambda: set(libraries))
    info = f"ATen parallel backend: {backend}\n"
    monkeypatch.setattr(cpu_openmp.torch.__config__, "parallel_info", lambda: info)
    monkeypatch.setattr(cpu_openmp.sys, "platform", "linux")


def test_flags_when_torch_runs_gnu_openmp(monkeypatch):
    _fake_process(monkeypatch, ["/site-packages/torch/lib/libgomp.so.1"])
    assert cpu_openmp.openmp_flags() == ("-fopenmp", "-DBPSN_OPENMP")


@pytest.mark.parametrize(
    "libraries, backend",
    [
        (["/site-packages/torch.libs/libgomp-a34b3233.so.1"], "OpenMP"),  # renamed copy
        (["/usr/lib/libgomp.so.1", "/site-packages/torch/lib/libgomp.so.1"], "OpenMP"),
        ([], "OpenMP"),  # Intel or LLVM OpenMP
        (["/usr/lib/libgomp.so.1"], "native thread pool"),
    ],
)
def test_no_flags_where_the_runtime_cannot_be_shared(monkeypatch, libraries, backend):
    _fake_process(monkeypatch, libraries, backend)
    assert cpu_openmp.openmp_flags() == ()


def test_switch_off_and_bad_value(monkeypatch):
    _fake_process(monkeypatch, ["/site-packages/torch/lib/libgomp.so.1"])
    monkeypatch.setenv(cpu_openmp.ENV_OPENMP, "0")
    assert cpu_openmp.openmp_flags() == ()
    assert "-fopenmp" not in cpu_native._flags()
    monkeypatch.setenv(cpu_openmp.ENV_OPENMP, "maybe")
    with pytest.raises(ValueError, match="BPSN_EXT_CPU_KERNEL_OPENMP must be 0 or 1"):
        cpu_openmp.openmp_flags()


@pytest.fixture
def native():
    reason = cpu_native.unavailable_reason()
    if reason is not None:
        pytest.skip(f"native BPSN CPU kernel unavailable: {reason}")


def test_one_openmp_runtime_after_loading(native):
    """Loading the kernel adds no OpenMP runtime beside torch's."""
    before = cpu_openmp.gomp_libraries()  # may hold other packages' renamed copies
    cpu_native.load()
    assert cpu_openmp.gomp_libraries() == before
    assert sum(os.path.basename(p) == cpu_openmp.LIBGOMP for p in before) <= 1


def _spikes(layer: BPSN, x: torch.Tensor) -> bytes:
    with torch.no_grad():
        return layer(x).numpy().tobytes()


def _child_result(read_fd: int, pid: int, timeout: float = 120.0) -> bytes:
    """What the child wrote before it exited; fails (and kills it) if it hangs."""
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([read_fd], [], [], max(left, 0))
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child hung in the kernel for {timeout:.0f} s")
        data = os.read(read_fd, 1 << 20)
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_after_parallel_calls(native, monkeypatch):
    """The parent's calls run on the OpenMP team where the kernel uses it; GNU OpenMP's team
    does not survive fork, so the child must start its own threads: same spikes, no hang."""
    monkeypatch.setenv(cpu_native.ENV_THREADS, "2")
    torch.manual_seed(0)
    layer, x = BPSN(256), torch.randn(256, 4, 256) + 0.5
    assert layer.implementation(x) == "native"
    expected = _spikes(layer, x)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no torch operator that would itself use the OpenMP team
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, _spikes(layer, x))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        got = _child_result(read_fd, pid)
    finally:
        os.close(read_fd)
    assert np.frombuffer(got, np.float32).size == x.numel()
    assert got == expected


def test_compiler_without_openmp_builds_with_its_own_threads(native, tmp_path, monkeypatch):
    """A compiler that refuses -fopenmp (clang without libomp) still gives a working kernel."""
    if not cpu_openmp.openmp_flags():
        pytest.skip(
            "no OpenMP build in this process (torch's runtime is not GNU OpenMP, or another "
            "libgomp is loaded too): nothing to refuse"
        )
    real = cpu_native._find_compiler()
    wrapper = tmp_path / "cc-without-openmp"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = -fopenmp ] && { echo "unsupported: -fopenmp" >&2; exit 1; }; '
        "done\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    cache = tmp_path / "cache"
    path = cpu_native.compile_library(compiler=str(wrapper), cache_dir=str(cache))
    lib = cpu_native._bind(__import__("ctypes").CDLL(path))
    assert lib.bpsn_cpu_abi_version() == cpu_native.ABI_VERSION
    assert os.listdir(cache) == [os.path.basename(path)]  # nothing half-written
    with open(path, "rb") as f:
        assert cpu_openmp.LIBGOMP.encode() not in f.read()  # built without OpenMP
