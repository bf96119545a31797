"""One place decides who computes a BPSN: the native CPU kernel, the CuPy kernel or torch.

The neuron only describes itself (kernel, fusion, anti-runaway rule, surrogate, ``method``;
SpikingJelly's ``backend``); `choose` adds the input's device and dtype and what is installed.

* ``"native"``: CPU float32/float64, leak kernel, split fusion, refractory or no rule, a known
  surrogate, ``method`` "auto" or "native", and a C++ compiler here;
* ``"cupy"``: a CUDA tensor, ``backend`` "cupy" (or "auto" with CuPy installed), leak kernel,
  no concat fusion, no soft reset, a known surrogate;
* ``"torch"``: everything else (the reference: every option, every device).
"""

from __future__ import annotations

import warnings

import torch

from bpsn_ext.kernels import cpu_native
from bpsn_ext.kernels.backends import resolve_backend

__all__ = ["SURROGATE_IDS", "surrogate_args", "native_config", "cupy_config", "choose"]

# the surrogates the compiled kernels know (ours or SpikingJelly's), by class name
SURROGATE_IDS = {"ATan": 0, "Sigmoid": 1, "S2NN": 2, "FastSigmoid": 3}
_SURROGATE_MODULES = ("bpsn_ext.surrogate", "spikingjelly.activation_based.surrogate")
_fallback_warned = False


def surrogate_args(sg) -> dict | None:
    """``{fire_ge, sg_kind, sg_a, sg_b}`` of a surrogate the kernels compute, else None."""
    name, where = type(sg).__name__, type(sg).__module__
    if where not in _SURROGATE_MODULES or name not in SURROGATE_IDS:
        return None
    if not getattr(sg, "spiking", True):
        return None
    return {
        "fire_ge": int(getattr(sg, "fire_ge", True)),
        "sg_kind": SURROGATE_IDS[name],
        "sg_a": float(getattr(sg, "alpha", getattr(sg, "slope", 0.0))),
        "sg_b": float(getattr(sg, "beta", 0.0)),
    }


def _surrogate_problem(sg) -> list[str]:
    if surrogate_args(sg) is not None:
        return []
    return [f"surrogate {type(sg).__module__}.{type(sg).__name__}"]


def native_config(module, x: torch.Tensor) -> dict:
    """Native-kernel arguments for a `bpsn_ext.BPSN` ``module`` and input ``x``, or a
    ValueError naming what the native kernel does not cover."""
    problems = [] if module.kernel == "leak" else [f"kernel={module.kernel!r}"]
    if module.fusion != "split":
        problems.append(f"fusion={module.fusion!r}")
    if module.runaway not in ("refractory", "none"):
        problems.append(f"runaway={module.runaway!r}")
    problems += _surrogate_problem(module.surrogate_function)
    if x.device.type != "cpu":
        problems.append(f"a tensor on {x.device}")
    if x.dtype not in cpu_native._DTYPES:
        problems.append(f"dtype {x.dtype}")
    if problems:
        raise ValueError(
            "the native BPSN CPU kernel covers float32/float64 CPU tensors, kernel='leak', "
            "fusion='split', runaway 'refractory' or 'none' and the ATan/Sigmoid/S2NN/"
            "FastSigmoid surrogates; not " + ", ".join(problems)
        )
    refractory = module.refractory_steps if module.runaway == "refractory" else 0
    return {"refractory": refractory, **surrogate_args(module.surrogate_function)}


def cupy_config(module, x: torch.Tensor | None = None) -> dict:
    """CuPy-kernel arguments for ``module`` (and input ``x``), or a ValueError naming what the
    fused CUDA kernel does not cover."""
    problems = [] if module.kernel == "leak" else [f"kernel={module.kernel!r}"]
    if module.fusion == "concat":
        problems.append("fusion='concat'")
    if module.runaway == "soft_reset":
        problems.append("runaway='soft_reset'")
    problems += _surrogate_problem(module.surrogate_function)
    if problems:
        raise ValueError(
            "the fused BPSN kernel covers leak kernels, split/gate/avg/sum fusion, the "
            "refractory or no runaway rule and the ATan/Sigmoid/S2NN/FastSigmoid "
            "surrogates; not " + ", ".join(problems)
        )
    if module.fusion in ("gate", "split"):
        if x is None and module.fusion == "split":
            weights = None  # the split depends on the input's channel count
        else:
            g = module.gate if x is None else module.fusion_gate(x)
            weights = (g, 1 - g)
    else:
        w = 0.5 if module.fusion == "avg" else 1.0
        weights = (torch.tensor(w), torch.tensor(w))
    refractory = module.refractory_steps if module.runaway == "refractory" else 0
    return {
        "refractory": refractory,
        "k0": 1.0 if module.fusion == "sum" else 0.0,
        "weights": weights,
        **surrogate_args(module.surrogate_function),
    }


def _native_explicit(module, x: torch.Tensor) -> str:
    """``method="native"``: the kernel, or an error saying why it cannot run."""
    if not cpu_native.enabled():
        raise RuntimeError(
            f"method='native' was requested but {cpu_native.ENV_SWITCH}=0 disables the "
            "native BPSN CPU kernel; unset it or use method='auto'"
        )
    native_config(module, x)  # ValueError naming what is not covered
    reason = cpu_native.load_problem()
    if reason is not None:
        raise cpu_native.NativeKernelUnavailable(
            f"method='native' was requested but the BPSN CPU kernel is unavailable: {reason}"
        )
    return "native"


def _native_auto(module, x: torch.Tensor) -> bool:
    """``method="auto"`` on CPU: the kernel where it covers the input and builds here."""
    if (
        x.dtype not in cpu_native._DTYPES
        or x.dim() < 3
        or x.shape[0] == 0
        or x.shape[1] == 0
        or not cpu_native.enabled()
    ):
        return False  # odd shapes: the torch path gives its own errors
    try:
        native_config(module, x)
    except ValueError:
        return False
    reason = cpu_native.load_problem()
    if reason is not None:
        global _fallback_warned
        if not _fallback_warned:
            _fallback_warned = True
            warnings.warn(
                f"bpsn_ext: BPSN runs the slower torch path on CPU because the native kernel "
                f"is unavailable: {reason}. Install a C++ compiler (e.g. g++) or point "
                f"${cpu_native.ENV_CXX} at one; set {cpu_native.ENV_SWITCH}=0 to choose the "
                f"torch path without this warning",
                RuntimeWarning,
                stacklevel=4,
            )
        return False
    return True


def choose(module, x: torch.Tensor, backend: str = "torch") -> str:
    """``"native"``, ``"cupy"`` or ``"torch"`` for ``module`` on input ``x``.

    Args:
        module: a `bpsn_ext.BPSN` (or an adapter of it).
        x: the input ``[T, N, *]``.
        backend: SpikingJelly's ``backend`` (``"torch"``, ``"cupy"``, ``"auto"``).

    Raises where an explicit request cannot be met: ``method="native"`` (why not),
    ``backend="cupy"`` on a CPU tensor or for a configuration without a CUDA kernel.
    """
    if x.device.type == "cuda" and backend != "torch":
        if resolve_backend(backend, x) == "cupy":
            if backend == "cupy":
                cupy_config(module, x)  # ValueError: no fused kernel for this configuration
                return "cupy"
            try:
                cupy_config(module, x)
                return "cupy"
            except ValueError:
                return "torch"
    elif backend == "cupy":
        resolve_backend(backend, x)  # raises: CuPy runs on CUDA tensors only
    if module.method == "native":
        return _native_explicit(module, x)
    if module.method == "auto" and x.device.type == "cpu" and _native_auto(module, x):
        return "native"
    return "torch"
