"""Native CPU provider of the default BPSN: ``bpsn_cpu.cpp`` compiled on first use, via ctypes.

The kernel covers leak kernels with ``fusion="split"``, the refractory rule (any period) or no
rule, and the ATan / Sigmoid / S2NN / FastSigmoid surrogates (ours or SpikingJelly's, either
tie rule), for float32 and float64 CPU tensors: forward and backward, with the gradients of the
input, of both decays and of the threshold (and of the membrane output, as the torch path).

Build: the system C++ compiler (``$BPSN_EXT_CXX``, ``$CXX``, else ``c++``, ``g++``, ``clang++``)
compiles the source once, without torch headers (about 2 s), into a cache folder
(``$BPSN_EXT_CACHE`` or ``~/.cache/bpsn_ext``, subfolder ``cpu_kernels``, created mode 0700).  The
file name carries a hash of the source, the compiler, its version, the flags and the machine (CPU
model and instruction-set flags, since ``-march=native`` is used).  The library is written to a
temporary file and renamed into place, so concurrent processes (pytest-xdist, DDP ranks) never
see a half-written file; a failed or interrupted build removes its temporary file, and those of
processes killed midway (older than 15 minutes) are removed by the next process that loads the
kernel.  ``BPSN_EXT_CPU_KERNEL_MARCH=0`` builds without ``-march=native`` (and without
``-mprefer-vector-width=512``, which x86-64 builds add to it).

Trust: loading a library runs its code, so the cache is per user.  A cached library is loaded
only when it is a regular file owned by this user, not writable by group or others, in a cache
folder with the same properties whose parent folders belong to this user or root and are not
writable by others (sticky folders such as /tmp excepted).  Otherwise (a shared or loose cache
folder, a file planted by someone else, a symbolic link on the way that belongs to another user)
a warning is logged and the kernel is built in the per-user fallback
``<tmp>/bpsn_ext-<uid>/cpu_kernels``, under the same rules; only if that is unusable too does a
process build in a temporary folder of its own, removed at exit.  No content
hash is recorded: whoever could replace the library could replace a recorded hash as well.

Threads: ``torch.get_num_threads()`` (or ``$BPSN_EXT_CPU_KERNEL_THREADS``), one for small
problems: torch's own OpenMP team where the kernel can share it (`bpsn_ext.kernels.cpu_openmp`),
else pthreads started per call.  Every thread takes chunks of contiguous neurons (about 4 per
thread) from a shared counter and runs all T steps for them, time outer and neurons inner;
per-neuron results do not depend on the chunking and the per-channel sums are taken in a fixed
order, so the output is bit-identical for any thread count.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
from importlib.resources import files

import torch

from bpsn_ext.kernels.cpu_openmp import OPENMP_FLAGS, gomp_libraries, openmp_flags
from bpsn_ext.util.env import env_on

__all__ = [
    "NativeKernelUnavailable",
    "ENV_SWITCH",
    "enabled",
    "available",
    "unavailable_reason",
    "load_problem",
    "load",
    "compile_library",
]

ENV_SWITCH = "BPSN_EXT_CPU_KERNEL"  # 0/off/false: never use the native kernel
ENV_CACHE = "BPSN_EXT_CACHE"
ENV_CXX = "BPSN_EXT_CXX"
ENV_MARCH = "BPSN_EXT_CPU_KERNEL_MARCH"
ENV_THREADS = "BPSN_EXT_CPU_KERNEL_THREADS"
SOURCE_NAME = "bpsn_cpu.cpp"
COMPILERS = ("c++", "g++", "clang++")
BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-ffp-contract=off")
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
ABI_VERSION = 3  # the entry points' signatures (bpsn_cpu_abi_version in the source)
CHECKPOINT_STEPS = 32  # the membrane is kept once per this many steps (bpsn_cpu.cpp)
_log = logging.getLogger("bpsn_ext")


class NativeKernelUnavailable(RuntimeError):
    """The native CPU kernel cannot be built or loaded here (message says why)."""


def _constant_under_compile(fn):
    """``torch.compiler.assume_constant_result(fn)``: ``torch.compile`` calls ``fn`` once and
    uses its result as a constant.  The same marker, set without importing ``torch._dynamo``
    (which imports Triton where it is installed, as the decorator would at import)."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_under_compile
def enabled() -> bool:
    """False when ``BPSN_EXT_CPU_KERNEL`` is 0 / off / false / no (default: enabled)."""
    return env_on(ENV_SWITCH)


def _find_compiler() -> str:
    for var in (ENV_CXX, "CXX"):
        value = os.environ.get(var)
        if value:
            path = shutil.which(value)
            if path is None:
                raise NativeKernelUnavailable(
                    f"no C++ compiler: ${var}={value!r} is not an executable; the native BPSN "
                    "CPU kernel needs one (the torch path still works)"
                )
            return path
    for name in COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    raise NativeKernelUnavailable(
        f"no C++ compiler found (looked for ${ENV_CXX}, $CXX, {', '.join(COMPILERS)} on PATH); "
        "the native BPSN CPU kernel needs one (the torch path still works)"
    )


def _cpu_signature() -> str:
    """CPU model and instruction-set flags (what ``-march=native`` depends on)."""
    lines = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part", "CPU implementer"):
                    lines.append(line.strip())
                if len(lines) >= 3:
                    break
    except OSError:
        pass
    return "|".join([platform.machine(), platform.processor(), *lines])


def _flags() -> tuple[str, ...]:
    """The build flags: `BASE_FLAGS`, plus ``-march=native`` unless ``BPSN_EXT_CPU_KERNEL_MARCH=0``
    and then, on x86-64, 512-bit vectors where the CPU has them (compilers default to 256 bits
    there; measured at [T, 8, 256] float32, one thread: forward and backward 0.88x-0.92x the
    time); ``-fopenmp`` where torch's OpenMP team can be shared (`cpu_openmp`)."""
    march = env_on(ENV_MARCH)
    base = BASE_FLAGS + openmp_flags()
    if not march:
        return base
    wide = platform.machine().lower() in ("x86_64", "amd64")
    return base + ("-march=native",) + (("-mprefer-vector-width=512",) if wide else ())


def _cache_dir() -> str:
    root = os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "bpsn_ext")
    return os.path.join(root, "cpu_kernels")


def _private_dir() -> str:
    """The per-user fallback folder under the system temporary folder."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return os.path.join(tempfile.gettempdir(), f"bpsn_ext-{uid}", "cpu_kernels")


def _untrusted(path: str, *, leaf_is_dir: bool) -> str | None:
    """Why another user could plant or swap a file at ``path`` (None: they cannot).

    ``path`` must be owned by this user and not writable by group or others; every folder above
    it must be owned by this user or root and not writable by others (unless sticky, as /tmp).
    """
    if not hasattr(os, "geteuid"):
        return None  # no POSIX owners here
    uid, real = os.geteuid(), os.path.realpath(path)
    link = _foreign_link(path, uid)
    if link is not None:
        return link
    st = os.stat(real)
    if not (stat.S_ISDIR if leaf_is_dir else stat.S_ISREG)(st.st_mode):
        return f"{real} is not a {'folder' if leaf_is_dir else 'regular file'}"
    if st.st_uid != uid:
        return f"{real} is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & 0o022:
        return f"{real} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    parent = os.path.dirname(real)
    while True:
        st = os.stat(parent)
        loose = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if st.st_uid not in (uid, 0) or loose:
            return f"{parent} (above {real}) can be changed by other users"
        if os.path.dirname(parent) == parent:
            return None
        parent = os.path.dirname(parent)


def _foreign_link(path: str, uid: int) -> str | None:
    """Why a symbolic link on the way to ``path`` is not ours (None: every link on it belongs to
    this user or root): its owner could point it elsewhere between our check and our use."""
    prefix = os.sep
    for part in os.path.abspath(path).split(os.sep):
        prefix = os.path.join(prefix, part)
        st = os.lstat(prefix)
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (uid, 0):
            return f"{prefix} is a symbolic link of uid {st.st_uid}, not of this user (uid {uid})"
    return None


def _make_private_dirs(folder: str) -> None:
    """Create the missing folders of ``folder``, each readable and writable by this user only."""
    missing = []
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # a concurrent process made it


def _writable(folder: str) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError:
        return False
    return True


def _remove_stale_builds(folder: str, older_than: float = 900.0) -> None:
    """Delete ``.tmp-bpsn_cpu-*`` and ``.probe-*`` files of processes killed midway (a live
    build takes < 300 s)."""
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith((".tmp-bpsn_cpu-", ".probe-")):
            continue
        path = os.path.join(folder, name)
        try:
            if now - os.stat(path).st_mtime > older_than:
                os.unlink(path)
        except OSError:
            pass  # a concurrent process removed or renamed it


def _scratch_dir() -> str:
    """Last resort: a private temporary folder, removed when the process exits."""
    folder = tempfile.mkdtemp(prefix="bpsn_ext-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _pick_folder(configured: str, name: str) -> tuple[str, bool]:
    """``(folder, cached)``: where ``name`` is (cached) or should be built.

    The configured folder first, then the per-user folder under the temporary folder, each
    only when no other user can write into it; else a temporary folder removed at exit.
    """
    for folder in dict.fromkeys((configured, _private_dir())):
        try:
            _make_private_dirs(folder)
            reason = _untrusted(folder, leaf_is_dir=True)
            target = os.path.join(folder, name)
            if reason is None and os.path.lexists(target):
                reason = _untrusted(target, leaf_is_dir=False)
                if reason is None:
                    return folder, True
        except OSError as exc:
            reason = f"{folder} cannot be used ({exc})"
        if reason is not None:
            _log.warning("bpsn_ext: not using the kernel cache %s: %s", folder, reason)
        elif _writable(folder):
            return folder, False
    return _scratch_dir(), False


def compile_library(compiler: str | None = None, cache_dir: str | None = None) -> str:
    """Build (or find in the cache) the shared library; returns its path.

    Only a library in a folder no other user can write to, owned by this user, is loaded;
    otherwise the build goes to a private folder (see the module docstring).
    Raises `NativeKernelUnavailable` when there is no compiler or the build fails.
    """
    cxx = compiler if compiler is not None else _find_compiler()
    if shutil.which(cxx) is None:
        raise NativeKernelUnavailable(
            f"no C++ compiler: {cxx!r} is not an executable; the native BPSN CPU kernel needs "
            "one (the torch path still works)"
        )
    source = (files("bpsn_ext.kernels") / SOURCE_NAME).read_text(encoding="utf-8")
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeKernelUnavailable(f"the C++ compiler {cxx!r} does not run: {exc}") from exc
    flags = _flags()
    try:
        return _library(cxx, version, flags, source, cache_dir)
    except NativeKernelUnavailable as exc:
        plain = tuple(f for f in flags if f not in OPENMP_FLAGS)
        if plain == flags:
            raise
        # a compiler without OpenMP support (clang without libomp): threads of its own
        _log.info("bpsn_ext: the OpenMP build of the CPU kernel failed, building without: %s", exc)
        return _library(cxx, version, plain, source, cache_dir)


def _library(
    cxx: str, version: str, flags: tuple[str, ...], source: str, cache_dir: str | None
) -> str:
    """The cached library for these flags, built when missing (see `compile_library`)."""
    key = hashlib.sha256(
        "\0".join(
            [
                source,
                os.path.realpath(shutil.which(cxx)),
                version,
                " ".join(flags),
                _cpu_signature() if "-march=native" in flags else platform.machine(),
            ]
        ).encode()
    ).hexdigest()[:20]
    name = f"bpsn_cpu-{key}.so"
    folder, cached = _pick_folder(cache_dir or _cache_dir(), name)
    _remove_stale_builds(folder)  # also when cached: a killed build's file is removed by the next
    target = os.path.join(folder, name)
    return target if cached else _build(cxx, flags, source, folder, target)


def _build(cxx: str, flags: tuple[str, ...], source: str, folder: str, target: str) -> str:
    """Compile into a temporary file of ``folder`` and rename it to ``target``; the temporary
    file is removed whatever stops the build (an error, KeyboardInterrupt)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-bpsn_cpu-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        _compile(cxx, flags, source, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same bytes
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target


def _compile(cxx: str, flags: tuple[str, ...], source: str, out: str) -> None:
    with tempfile.TemporaryDirectory() as work:
        src = os.path.join(work, SOURCE_NAME)
        with open(src, "w", encoding="utf-8") as f:
            f.write(source)
        cmd = [cxx, *flags, src, "-o", out]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NativeKernelUnavailable(f"compiling the BPSN CPU kernel failed: {exc}") from exc
    if done.returncode != 0:
        raise NativeKernelUnavailable(
            f"compiling the BPSN CPU kernel failed ({' '.join(cmd)}):\n{done.stderr.strip()}"
        )


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    abi, steps = lib.bpsn_cpu_abi_version(), lib.bpsn_cpu_checkpoint_steps()
    if (abi, steps) != (ABI_VERSION, CHECKPOINT_STEPS):
        raise NativeKernelUnavailable(
            f"the native BPSN CPU kernel library has ABI {abi} with checkpoints every {steps} "
            f"steps; this package expects ABI {ABI_VERSION} and {CHECKPOINT_STEPS} steps"
        )
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_double
    lib.bpsn_cpu_disable_openmp.argtypes, lib.bpsn_cpu_disable_openmp.restype = [], None
    for suffix in ("f32", "f64"):
        fwd = getattr(lib, f"bpsn_cpu_forward_{suffix}")
        fwd.argtypes = [p] * 9 + [i64] * 5 + [i32] * 3
        fwd.restype = i32
        bwd = getattr(lib, f"bpsn_cpu_backward_{suffix}")
        bwd.argtypes = [p, i32] + [p] * 12 + [i64] * 5 + [i32] * 3 + [f64, f64, i32]
        bwd.restype = i32
    return lib


_FORKED = False  # set in a forked child: the OpenMP team of the parent is not usable there


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True
    if _load_default.cache_info().currsize:
        _load_default().bpsn_cpu_disable_openmp()


os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.cache
def _load_default() -> ctypes.CDLL:
    before = gomp_libraries()
    lib = _bind(ctypes.CDLL(compile_library()))
    if _FORKED:
        lib.bpsn_cpu_disable_openmp()
    added = gomp_libraries() - before
    if added:  # openmp_flags() rules this out; say so if it ever happens
        _log.warning("bpsn_ext: loading the CPU kernel added an OpenMP runtime: %s", sorted(added))
    return lib


def load(compiler: str | None = None) -> ctypes.CDLL:
    """The loaded library (built on first use).  ``compiler`` overrides the search (tests).

    Raises `NativeKernelUnavailable` with the reason when it cannot be built.
    """
    if compiler is not None:
        return _bind(ctypes.CDLL(compile_library(compiler)))
    return _load_default()


@functools.cache
def unavailable_reason() -> str | None:
    """None when the kernel builds and loads here, else why not (computed once)."""
    try:
        _load_default()
    except (NativeKernelUnavailable, OSError) as exc:
        return str(exc)
    return None


@_constant_under_compile
def load_problem() -> str | None:
    """``unavailable_reason()`` in a form ``torch.compile`` does not trace into."""
    return unavailable_reason()


def available() -> bool:
    """Whether the native kernel builds and loads here (ignores ``BPSN_EXT_CPU_KERNEL``)."""
    return unavailable_reason() is None


def _threads() -> int:
    """Threads for one kernel call: ``$BPSN_EXT_CPU_KERNEL_THREADS`` or torch's intra-op count."""
    value = os.environ.get(ENV_THREADS, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{ENV_THREADS} must be a positive int, got {value!r}")
        return int(value)
    return torch.get_num_threads()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(status: int, what: str) -> None:
    if status == 1:
        raise MemoryError(f"the native BPSN CPU kernel ran out of memory in the {what} pass")
    if status:
        raise RuntimeError(f"the native BPSN CPU kernel failed in the {what} pass (code {status})")
