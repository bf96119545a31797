"""The one place that chooses who computes each op family: native CPU, Triton, CuPy or torch.

Two op families: ``"bpsn"`` (BPSN forward and backward) and ``"ssm_scan"`` (the diagonal SSM
scan: the recurrent form of S4D, hence of Binary S4D and GSU, on every face: `bpsn_ext.layers`,
SpikingJelly, snnTorch).  Callers describe the op (options, tensors, the framework's backend
request); the choice adds the device, the dtype, what is installed and one environment
variable per family, read once (`read_environment` reads them again):

* ``BPSN_EXT_BPSN_IMPLEMENTATION`` = ``auto`` | ``native`` | ``triton`` | ``cupy`` | ``torch``
* ``BPSN_EXT_SSM_IMPLEMENTATION`` = ``auto`` | ``triton`` | ``cupy`` | ``torch``

A value other than ``auto`` applies where the module itself says ``auto`` and is then an
explicit request (it raises where it cannot run); ``torch`` forces the reference.

Under ``auto``: CPU tensors run the native kernel where it covers the BPSN (see
`bpsn_ext.kernels.cpu_native`) and builds, else torch; CUDA tensors run Triton first (under
``torch.compile``, and for the neurons that return a differentiable membrane) or CuPy first
(SpikingJelly's eager ``backend='auto'``, and the SSM scan in eager mode), the other one
where the first is missing, else torch.  CPU tensors run Triton only on request: under
``TRITON_INTERPRET=1`` (Triton's interpreter) that is how the tests check the GPU kernels.

Nothing here imports Triton or CuPy: a provider module is imported when it is chosen.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import torch

from bpsn_ext.core.bpsn_functional import RUNAWAY, bpsn, check_input
from bpsn_ext.core.bpsn_options import BPSNOptions, BPSNParams, SurrogateArgs
from bpsn_ext.kernels import cpu_native

__all__ = [
    "FAMILIES",
    "ENV",
    "BACKENDS",
    "read_environment",
    "requested",
    "check_backend",
    "cupy_available",
    "triton_available",
    "surrogate_args",
    "covers",
    "choose_bpsn",
    "bpsn_forward",
    "choose_scan",
    "s4d_scan",
    "choose_diagonal_scan",
    "diagonal_states",
]

FAMILIES = {
    "bpsn": ("auto", "native", "triton", "cupy", "torch"),
    "ssm_scan": ("auto", "triton", "cupy", "torch"),
}
ENV = {"bpsn": "BPSN_EXT_BPSN_IMPLEMENTATION", "ssm_scan": "BPSN_EXT_SSM_IMPLEMENTATION"}
BACKENDS = ("auto", "torch", "cupy")  # SpikingJelly's `backend` values
SURROGATE_IDS = {"ATan": 0, "Sigmoid": 1, "S2NN": 2, "FastSigmoid": 3}
_SURROGATE_MODULES = ("bpsn_ext.surrogate", "spikingjelly.activation_based.surrogate")
_warned: set[str] = set()


# -- the environment and what is installed -------------------------------------------------
_ENVIRONMENT: dict[str, str] = {}  # a plain dict: torch.compile reads it without tracing


def read_environment() -> dict[str, str]:
    """Read the environment variables (again): ``{family: value}``.  Done once, at the
    first choice; call it again after changing them.  A bad value raises ValueError."""
    values = {}
    for family, env in ENV.items():
        value = os.environ.get(env, "auto").strip().lower() or "auto"
        if value not in FAMILIES[family]:
            raise ValueError(f"{env} must be one of {FAMILIES[family]}, got {value!r}")
        values[family] = value
    _ENVIRONMENT.clear()
    _ENVIRONMENT.update(values)
    return dict(values)


def requested(family: str) -> str:
    """The environment's request for ``family`` (``"auto"`` when unset)."""
    if not _ENVIRONMENT:
        read_environment()
    return _ENVIRONMENT[family]


def cupy_available() -> bool:
    return importlib.util.find_spec("cupy") is not None


_found: dict[str, bool] = {}  # a plain dict (not functools.cache): torch.compile reads it


def _has_triton() -> bool:
    if "triton" not in _found:
        _found["triton"] = importlib.util.find_spec("triton") is not None
    return _found["triton"]


def triton_available(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on ``device`` (None when they can)."""
    if not _has_triton():
        return "Triton is not installed: pip install 'bpsn-ext[triton]'"
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return (
        f"the Triton kernels run on CUDA tensors, or on CPU tensors under Triton's "
        f"interpreter (TRITON_INTERPRET=1), got a tensor on {device}"
    )


def check_backend(name: str) -> str:
    """Validate a SpikingJelly ``backend`` given by the user (before any tensor is seen)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "cupy" and not cupy_available():
        raise ImportError(
            "backend='cupy' needs CuPy: pip install 'bpsn-ext[cupy]' (cupy-cuda12x) or "
            "'bpsn-ext[cupy13]' (cupy-cuda13x), on a machine with an NVIDIA GPU"
        )
    return name


def surrogate_args(sg) -> SurrogateArgs | None:
    """The constants of a surrogate the kernels compute (ours or SpikingJelly's), else None."""
    name, where = type(sg).__name__, type(sg).__module__
    if where not in _SURROGATE_MODULES or name not in SURROGATE_IDS:
        return None
    if not getattr(sg, "spiking", True):
        return None
    return SurrogateArgs(
        SURROGATE_IDS[name],
        float(getattr(sg, "alpha", getattr(sg, "slope", 0.0))),
        float(getattr(sg, "beta", 0.0)),
        bool(getattr(sg, "fire_ge", True)),
    )


# -- BPSN ----------------------------------------------------------------------------------
_F32_64 = (torch.float32, torch.float64)
_COVERS = {  # fusions, runaway rules, dtypes, devices ("cuda*": CPU under the interpreter)
    "native": (("split",), ("refractory", "none"), _F32_64, ("cpu",)),
    "triton": (
        ("split", "gate", "avg", "sum"),
        RUNAWAY,
        _F32_64 + (torch.float16, torch.bfloat16),
        ("cuda", "cpu"),
    ),
    "cupy": (
        ("split", "gate", "avg", "sum"),
        ("refractory", "none"),
        (torch.float32, torch.float16, torch.bfloat16),
        ("cuda",),
    ),
}
_NAMES = {"native": "native BPSN CPU kernel", "triton": "Triton BPSN kernel"}


def _problems(impl: str, options: BPSNOptions, x: torch.Tensor, surrogate) -> list[str]:
    fusions, rules, dtypes, devices = _COVERS[impl]
    problems = [] if options.kernel == "leak" else [f"kernel={options.kernel!r}"]
    if options.fusion not in fusions:
        problems.append(f"fusion={options.fusion!r}")
    if options.runaway not in rules:
        problems.append(f"runaway={options.runaway!r}")
    if surrogate_args(surrogate) is None:
        problems.append(f"surrogate {type(surrogate).__module__}.{type(surrogate).__name__}")
    if x.device.type not in devices:
        problems.append(f"a tensor on {x.device}")
    if x.dtype not in dtypes:
        problems.append(f"dtype {x.dtype}")
    return problems


def covers(impl: str, options: BPSNOptions, x: torch.Tensor, surrogate) -> None:
    """ValueError naming what the ``impl`` kernel does not cover."""
    problems = _problems(impl, options, x, surrogate)
    if problems:
        fusions, rules, dtypes, devices = _COVERS[impl]
        raise ValueError(
            f"the {_NAMES.get(impl, 'fused BPSN kernel')} covers "
            f"{'/'.join(str(d).removeprefix('torch.') for d in dtypes)} tensors on "
            f"{'/'.join(devices)}, kernel='leak', fusion {'/'.join(fusions)}, runaway "
            f"{'/'.join(rules)} and the ATan/Sigmoid/S2NN/FastSigmoid surrogates; not "
            + ", ".join(problems)
        )


def _explicit(impl: str, options: BPSNOptions, x: torch.Tensor, surrogate) -> str:
    """An explicit request: ``impl``, or an error saying why it cannot run."""
    if impl == "cupy":
        if x.device.type != "cuda":
            raise RuntimeError(
                f"backend='cupy' runs on CUDA tensors only, got a tensor on {x.device}; use "
                "backend='torch' (or 'auto') for CPU tensors"
            )
        check_backend("cupy")
    covers(impl, options, x, surrogate)
    if impl == "triton":
        reason = triton_available(x.device)
        if reason is not None:
            raise RuntimeError(f"method='triton' was requested but {reason}")
    if impl == "native":
        if torch._C._are_functorch_transforms_active():
            raise RuntimeError(
                "method='native' was requested inside a torch.func transform (grad, vmap, "
                "jacrev, ...), which the native BPSN CPU kernel does not support; use "
                "method='auto' there (it runs the torch path)"
            )
        if not cpu_native.enabled():
            raise RuntimeError(
                f"method='native' was requested but {cpu_native.ENV_SWITCH}=0 disables the "
                "native BPSN CPU kernel; unset it or use method='auto'"
            )
        reason = cpu_native.load_problem()
        if reason is not None:
            raise cpu_native.NativeKernelUnavailable(
                f"method='native' was requested but the BPSN CPU kernel is unavailable: {reason}"
            )
    return impl


def _native_auto(options: BPSNOptions, x: torch.Tensor, surrogate) -> bool:
    """Under ``auto`` on CPU: the native kernel where it covers the input and builds here."""
    if x.dim() < 3 or 0 in x.shape[:2] or not cpu_native.enabled():
        return False  # odd shapes: the torch path gives its own errors
    if torch._C._are_functorch_transforms_active():
        return False  # torch.func transforms: the torch path (the kernel has no functorch rule)
    if _problems("native", options, x, surrogate):
        return False
    reason = cpu_native.load_problem()
    if reason is not None:
        if "native" not in _warned:
            _warned.add("native")
            warnings.warn(
                f"bpsn_ext: BPSN runs the slower torch path on CPU because the native kernel "
                f"is unavailable: {reason}. Install a C++ compiler (e.g. g++) or point "
                f"${cpu_native.ENV_CXX} at one; set {cpu_native.ENV_SWITCH}=0 to choose the "
                f"torch path without this warning",
                RuntimeWarning,
                stacklevel=5,
            )
        return False
    return True


def _cuda_auto(options: BPSNOptions, x: torch.Tensor, surrogate, backend: str | None) -> str:
    """Under ``auto`` on CUDA: Triton first under ``torch.compile`` and outside SpikingJelly
    (the CuPy kernel differentiates the spikes only, and plain and snnTorch neurons return
    the membrane); CuPy first for SpikingJelly's eager ``backend='auto'``."""
    triton_first = torch.compiler.is_compiling() or backend is None
    order = ["triton", "cupy"] if triton_first else ["cupy", "triton"]
    for impl in order:
        if impl == "cupy" and (not cupy_available() or backend not in (None, "auto")):
            continue
        if impl == "triton" and triton_available(x.device) is not None:
            continue
        if not _problems(impl, options, x, surrogate):
            return impl
    return "torch"


def choose_bpsn(
    options: BPSNOptions, x: torch.Tensor, surrogate, backend: str | None = None
) -> str:
    """``"native"``, ``"triton"``, ``"cupy"`` or ``"torch"`` for a BPSN on input ``x``.

    Args:
        options: the neuron's options (``method`` is its request).
        x: the input ``[T, N, *]``.
        surrogate: the neuron's surrogate (the kernels know four).
        backend: SpikingJelly's ``backend`` (``"torch"``, ``"cupy"``, ``"auto"``), None
            outside SpikingJelly.

    Raises where an explicit request cannot be met (``method="native"`` / ``"triton"``,
    ``backend="cupy"``, or the environment variable): the error says why.
    """
    method = options.method
    if method in ("native", "triton"):
        return _explicit(method, options, x, surrogate)
    if backend == "cupy":
        return _explicit("cupy", options, x, surrogate)
    if method != "auto":
        return "torch"  # a torch integration was asked for by name
    env = requested("bpsn")
    if env != "auto":
        return "torch" if env == "torch" else _explicit(env, options, x, surrogate)
    if x.device.type == "cpu":
        return "native" if _native_auto(options, x, surrogate) else "torch"
    if x.device.type == "cuda" and backend != "torch":
        return _cuda_auto(options, x, surrogate, backend)
    return "torch"


def bpsn_forward(
    x: torch.Tensor,
    mask: torch.Tensor | None,
    params: BPSNParams,
    options: BPSNOptions,
    surrogate,
    channel_dim: int | None,
    backend: str | None = None,
    membrane: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(spikes, membrane)`` ``[T, N, *]`` of a BPSN from the implementation `choose_bpsn`
    picks; ``channel_dim`` is the input's resolved channel dimension (None for ``[T, N]``).
    ``membrane=False`` says the caller does not need the membrane: the native kernel then
    neither writes it nor returns it (None), the other paths return it all the same."""
    impl = choose_bpsn(options, x, surrogate, backend)
    if impl == "torch":
        return bpsn(
            x,
            mask,
            v_threshold=params.v_threshold,
            surrogate=surrogate,
            kernel=options.kernel,
            decay_f=params.decay_f,
            decay_b=params.decay_b,
            taps_f=params.taps_f,
            taps_b=params.taps_b,
            fusion=options.fusion,
            gate=params.gate,
            runaway=options.runaway,
            refractory_steps=options.refractory_steps,
            channel_dim=-1 if channel_dim is None else channel_dim,
            detach_reset=options.detach_reset,
            method=options.method if options.method in ("chunked", "fft", "matmul", "loop")
            else "auto",
        )  # fmt: skip
    check_input(x)  # the kernels' one check of the input (the torch path checks its own)
    sg = surrogate_args(surrogate)
    if impl == "native":
        from bpsn_ext.kernels.bpsn_cpu_ops import bpsn_native

        return bpsn_native(x, mask, params, options, sg, channel_dim, membrane)
    if impl == "triton":
        from bpsn_ext.kernels.triton_bpsn import bpsn_triton as run
    else:
        from bpsn_ext.kernels.cupy_bpsn import bpsn_cupy as run  # imported only on CUDA
    return run(x, mask, params, options, sg, channel_dim)


# -- the diagonal SSM scan -----------------------------------------------------------------
def _is_cuda(x: torch.Tensor) -> bool:
    return x.device.type == "cuda"


def _scan_problem(impl: str, x: torch.Tensor, bidirectional: bool, dtype: torch.dtype):
    if impl == "cupy" and bidirectional:
        return "the fused CuPy S4D scan runs causal layers only"
    if dtype != torch.float32:
        return f"the fused S4D scan takes float32 parameters, got {dtype}"
    if impl == "cupy":
        return None if _is_cuda(x) else f"CuPy runs on CUDA tensors, got {x.device}"
    return triton_available(x.device) or _triton_scan_problem()


def _triton_scan_problem() -> str | None:
    """None where the Triton SSM scan (`bpsn_ext.kernels.triton_ssm_scan`) is there."""
    if "triton_ssm_scan" not in _found:
        name = "bpsn_ext.kernels.triton_ssm_scan"
        _found["triton_ssm_scan"] = (
            name in sys.modules or importlib.util.find_spec(name) is not None
        )
    if _found["triton_ssm_scan"]:
        return None
    return "this build has no Triton SSM scan (bpsn_ext.kernels.triton_ssm_scan)"


def choose_scan(
    x: torch.Tensor,
    *,
    bidirectional: bool,
    dtype: torch.dtype,
    backend: str | None = None,
    what: str = "S4D",
) -> str:
    """``"triton"``, ``"cupy"`` or ``"torch"`` for the diagonal SSM scan of an S4D.

    Args:
        x: the input ``[T, N, H]``.
        bidirectional: the layer's direction (CuPy's scan runs causal layers only; Triton's
            runs the backward half as a reverse scan).
        dtype: the layer's parameter dtype (the fused scans take float32).
        backend: the layer's request: SpikingJelly's ``backend`` (``"torch"``, ``"cupy"``,
            ``"auto"``), ``"triton"``, or None (no request).
        what: the layer's name, for error messages.

    An explicit ``"cupy"`` / ``"triton"`` or environment request raises where it cannot run.
    """
    env = requested("ssm_scan")
    if backend in ("cupy", "triton"):
        explicit = backend
    else:
        explicit = env if env not in ("auto", "torch") else None
    if explicit is not None:
        if explicit == "cupy" and not _is_cuda(x):
            raise RuntimeError(
                f"backend='cupy' runs on CUDA tensors only, got a tensor on {x.device}; use "
                "backend='torch' (or 'auto') for CPU tensors"
            )
        reason = _scan_problem(explicit, x, bidirectional, dtype)
        if reason is not None:
            kind = TypeError if "float32" in reason else ValueError
            raise kind(f"{what}: the {explicit} scan was requested but {reason}")
        return explicit
    if env == "torch" or backend == "torch" or not _is_cuda(x):
        return "torch"
    order = ["triton", "cupy"] if torch.compiler.is_compiling() else ["cupy", "triton"]
    for impl in order:
        if impl == "cupy" and (not cupy_available() or backend not in (None, "auto")):
            continue
        if _scan_problem(impl, x, bidirectional, dtype) is None:
            return impl
    return "torch"


def s4d_scan(
    impl: str,
    x: torch.Tensor,
    state: torch.Tensor | None,
    mask: torch.Tensor | None,
    ssm: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    what: str = "S4D",
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y [T, N, H], new_state complex [N, H, P])`` of the diagonal SSM scan ``impl``
    (``"triton"`` or ``"cupy"``, as `choose_scan` answered); ``ssm`` is ``(A_bar, B_bar, C,
    D)`` (see `bpsn_ext.kernels.ssm_launch_args.prepare_scan`).  ``reverse`` (Triton only)
    runs the recurrence from the last step to the first: the anti-causal half of a
    bidirectional S4D."""
    if impl == "cupy":
        from bpsn_ext.kernels.cupy_ssm import s4d_scan_cupy  # imported only on CUDA

        return s4d_scan_cupy(x, state, mask, ssm, what)
    from bpsn_ext.kernels.ssm_launch_args import prepare_scan
    from bpsn_ext.kernels.triton_ssm_scan import s4d_scan_triton

    a = prepare_scan(x, state, mask, ssm, what)
    y, xT = s4d_scan_triton(
        a.u, a.mask_u8, a.A_bar, a.B_bar, a.C, a.D, a.x0, a.mask is not None, reverse
    )
    return y, (xT if xT.is_complex() else torch.view_as_complex(xT.contiguous()))


# -- the plain complex diagonal scan of S5 --------------------------------------------------
def choose_diagonal_scan(
    x: torch.Tensor, *, dtype: torch.dtype, backend: str | None = None, what: str = "SpikingS5"
) -> str:
    """``"triton"`` or ``"torch"`` for the complex diagonal scan of a `SpikingS5` on ``x``.

    ``backend`` is the layer's request (``"triton"``: explicit, raise where it cannot run;
    ``"torch"``; None or ``"auto"``: no request); ``BPSN_EXT_SSM_IMPLEMENTATION`` is the
    environment's.  There is no CuPy kernel of this scan: a ``"cupy"`` request runs torch.
    """
    env = requested("ssm_scan")
    explicit = backend == "triton" or (backend in (None, "auto") and env == "triton")
    if explicit:
        reason = _diagonal_problem(x, dtype)
        if reason is not None:
            kind = TypeError if "float32" in reason else ValueError
            raise kind(f"{what}: the triton scan was requested but {reason}")
        return "triton"
    if backend in ("torch", "cupy") or env in ("torch", "cupy") or not _is_cuda(x):
        return "torch"
    return "triton" if _diagonal_problem(x, dtype) is None else "torch"


def _diagonal_problem(x: torch.Tensor, dtype: torch.dtype) -> str | None:
    if dtype != torch.float32:
        return f"the Triton diagonal scan takes float32 parameters, got {dtype}"
    return triton_available(x.device)


def diagonal_states(
    impl: str, A_bar: torch.Tensor, b: torch.Tensor, reverse: bool = False
) -> torch.Tensor:
    """All states of ``x_t = A_bar x_{t-1} + b_t`` from ``x_{-1} = 0`` (``reverse``: from the
    last step to the first), by ``impl`` as `choose_diagonal_scan` answered.

    Shape:
        ``A_bar`` complex ``[P]``; ``b`` complex ``[T, N, P]``; returns ``[T, N, P]``.
    """
    if impl == "triton":
        from bpsn_ext.kernels.triton_diagonal_scan import diagonal_scan_triton

        xs = diagonal_scan_triton(
            torch.view_as_real(b.contiguous()), torch.view_as_real(A_bar), None, reverse
        )
        return torch.view_as_complex(xs)
    from bpsn_ext.core.diagonal_ssm import diagonal_scan

    if reverse:
        return diagonal_scan(A_bar[None, None, :], b.flip(0)).flip(0)
    return diagonal_scan(A_bar[None, None, :], b)
