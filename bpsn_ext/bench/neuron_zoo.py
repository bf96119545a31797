"""The neurons the BPSN benchmark times: BPSN's rows, SpikingJelly's and snnTorch's, and the
memory floor (see `bpsn_ext.bench.bpsn_bench` for what each row is)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from bpsn_ext.bench.bpsn_settings import MATMUL_MAX_T, NEURON_KEYS
from bpsn_ext.bench.measure import package_version
from bpsn_ext.kernels.bpsn_cpu_ops import native_kernels_into
from bpsn_ext.kernels.dispatch import surrogate_args

__all__ = ["Neuron", "Direct", "Floor", "NativeKernels", "neurons"]


@dataclass(frozen=True)
class Neuron:
    key: str
    label: str
    build: Callable[[int, int], nn.Module]  # (T, features) -> module
    call: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (module, x [T, N, C]) -> spikes
    reset: Callable[[nn.Module], None] | None = None
    max_T: int | None = None
    max_T_note: str = ""
    missing: str | None = None  # why the neuron is not available here (None: available)
    cpu_only: bool = False  # skipped on other devices


def _direct(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _first(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)[0]  # (spikes, membrane)


def _snntorch_loop(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """snnTorch tutorial loop: explicit membrane from ``init_leaky()``, one call per step."""
    mem = module.init_leaky()
    spikes = []
    for x_t in x.unbind(0):  # not x[t]: see `bpsn_ext.bench.bpsn_bench`
        spk, mem = module(x_t, mem)
        spikes.append(spk)
    return torch.stack(spikes)


Pass = Callable[[], object]


class Direct(nn.Module):
    """A row timed without autograd: it gives its own forward and forward+backward passes."""

    def passes(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[Pass, Callable]:
        """``(forward, forward_backward(record=None))`` on ``x``, with ``grad`` the output
        gradient the other rows get; ``record`` takes the firing rate where there is one."""
        raise NotImplementedError


class Floor(Direct):
    """Streams 3 (``arrays=3``) or 6 distinct arrays of the input's size: the memory floor.

    ``fresh=True``: the same streams, but every written array is a new tensor (``torch.add``
    without ``out``), as an operator's outputs are: the floor plus what fresh memory costs."""

    def __init__(self, fresh: bool = False) -> None:
        super().__init__()
        self.fresh = fresh
        self.arrays: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, arrays: int = 3) -> torch.Tensor:
        if not self.arrays or self.arrays[0].shape != x.shape:
            self.arrays = [torch.rand_like(x) for _ in range(6)]
        a = self.arrays
        if self.fresh:
            out = torch.add(a[0], a[1])
            if arrays == 6:
                out = torch.add(a[3], a[4])
            return out
        torch.add(a[0], a[1], out=a[2])
        if arrays == 6:
            torch.add(a[3], a[4], out=a[5])
        return a[2]

    def passes(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[Pass, Callable]:
        return (lambda: self(x, 3)), (lambda record=None: self(x, 6))


class NativeKernels(Direct):
    """The default BPSN's two native CPU kernels alone: ``forward(x)`` runs the forward
    kernel, ``forward(x, grad)`` the forward and then the backward kernel with the output
    gradient ``grad``; both write into arrays allocated once (no fresh outputs, no autograd),
    so the row times the kernels' own work.  Returns the spikes ``[T, N, *]``; the input's
    gradient is ``buffers["grad_x"]`` (see `bpsn_cpu_ops.native_kernels_into`)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        from bpsn_ext import BPSN

        self.neuron = BPSN(features)
        self.buffers: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, grad: torch.Tensor | None = None) -> torch.Tensor:
        n = self.neuron
        with torch.no_grad():
            sg, dim = surrogate_args(n.surrogate_function), n.resolve_channel_dim(x)
            args = (n.params(x), n.options, sg, dim, self.buffers)
            return native_kernels_into(x, *args, grad=grad)

    def passes(self, x: torch.Tensor, grad: torch.Tensor) -> tuple[Pass, Callable]:
        def both(record: dict | None = None) -> None:
            y = self(x, grad)
            if record is not None:
                record["firing_rate"] = y.float().mean().item()

        return (lambda: self(x)), both


def _native_missing() -> str | None:
    """Why the native kernel cannot run here (None: it can)."""
    from bpsn_ext.kernels import cpu_native

    reason = cpu_native.unavailable_reason()
    return None if reason is None else f"skipped: no native kernel ({reason})"


def _bpsn_neurons() -> list[Neuron]:
    from bpsn_ext import BPSN

    def compiled(T: int, C: int) -> nn.Module:
        return torch.compile(BPSN(C), fullgraph=True)

    return [
        Neuron("bpsn_compiled", "BPSN torch.compile", compiled, _direct),
        Neuron("floor", "memory floor (streaming)", lambda T, C: Floor(), _direct),
        Neuron(
            "floor_fresh",
            "memory floor, fresh outputs",
            lambda T, C: Floor(fresh=True),
            _direct,
        ),
        Neuron("bpsn", "BPSN (default)", lambda T, C: BPSN(C), _direct),
        Neuron(
            "bpsn_kernels",
            "BPSN kernels alone",
            lambda T, C: NativeKernels(C),
            _direct,
            cpu_only=True,
        ),
        Neuron("bpsn_torch", "BPSN torch path", lambda T, C: BPSN(C, method="chunked"), _direct),
        Neuron(
            "bpsn_matmul",
            "BPSN method=matmul",
            lambda T, C: BPSN(C, method="matmul"),
            _direct,
            max_T=MATMUL_MAX_T,
        ),
    ]


def _sj_optional(neuron, attr: str, key: str, label: str, build, reset, note: str) -> Neuron:
    """The row of SpikingJelly's ``neuron.<attr>`` (T <= 2048), or a skipped row without it."""
    if hasattr(neuron, attr):
        return Neuron(key, label, build, _direct, reset, max_T=2048, max_T_note=note)
    version = package_version("spikingjelly")
    missing = f"skipped: no neuron.{attr} in spikingjelly {version}"
    return Neuron(key, label, None, _direct, missing=missing)


_SJ_ROWS = (
    ("sj_lif", "SJ LIFNode"),
    ("sj_psn", "SJ PSN"),
    ("sj_sliding_psn", "SJ SlidingPSN(k=4)"),
)
_SNNTORCH_ROWS = (
    ("snntorch_leaky", "snnTorch Leaky (loop)"),
    ("snntorch_state_leaky", "snnTorch StateLeaky"),
)


def _not_importable(rows: tuple[tuple[str, str], ...], library: str, exc: Exception):
    """Skipped rows for every ``(key, label)`` of a library that does not import."""
    note = f"skipped: {library} not importable ({exc.__class__.__name__})"
    return [Neuron(key, label, None, _direct, missing=note) for key, label in rows]


def _spikingjelly_neurons() -> list[Neuron]:
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except ImportError as exc:
        return _not_importable(_SJ_ROWS, "spikingjelly", exc)
    reset = functional.reset_net

    def lif(T: int, C: int) -> nn.Module:
        return neuron.LIFNode(tau=2.0, step_mode="m", surrogate_function=surrogate.ATan())

    def psn(T: int, C: int) -> nn.Module:
        return neuron.PSN(T, surrogate_function=surrogate.ATan())

    def sliding(T: int, C: int) -> nn.Module:
        return neuron.SlidingPSN(4, surrogate_function=surrogate.ATan(), step_mode="m")

    return [
        Neuron("sj_lif", "SJ LIFNode", lif, _direct, reset),
        _sj_optional(
            neuron, "PSN", *_SJ_ROWS[1], psn, reset, "skipped: T > 2048 (T x T weight, quadratic)"
        ),
        _sj_optional(
            neuron,
            "SlidingPSN",
            *_SJ_ROWS[2],
            sliding,
            reset,
            "skipped: T > 2048 (T x T matrix built in a loop over T)",
        ),
    ]


def _snntorch_neurons() -> list[Neuron]:
    try:
        import snntorch as snn
        from snntorch import surrogate
    except ImportError as exc:
        return _not_importable(_SNNTORCH_ROWS, "snntorch", exc)

    def leaky(T: int, C: int) -> nn.Module:
        return snn.Leaky(beta=0.5, spike_grad=surrogate.atan())

    key, label = _SNNTORCH_ROWS[1]
    if hasattr(snn, "StateLeaky"):
        state = Neuron(key, label, lambda T, C: snn.StateLeaky(beta=0.5, channels=C), _first)
    else:
        missing = f"skipped: no snn.StateLeaky in snntorch {package_version('snntorch')}"
        state = Neuron(key, label, None, _direct, missing=missing)
    return [Neuron(*_SNNTORCH_ROWS[0], leaky, _snntorch_loop), state]


def neurons(keys: Sequence[str], matmul_max_T: int) -> list[Neuron]:
    available = _bpsn_neurons() + _spikingjelly_neurons() + _snntorch_neurons()
    by_key = {n.key: n for n in available}
    by_key["bpsn_matmul"] = replace(
        by_key["bpsn_matmul"],
        max_T=matmul_max_T,
        max_T_note=f"skipped: T > {matmul_max_T} ([C, T, T] kernel: quadratic time and memory)",
    )
    if "bpsn_kernels" in keys:  # building the kernel takes seconds: only when asked for
        by_key["bpsn_kernels"] = replace(by_key["bpsn_kernels"], missing=_native_missing())
    return [by_key[k] for k in NEURON_KEYS if k in keys]
