"""Sequence-length scaling of BPSN against sequential and parallel spiking neurons.

For every T (default 128, 512, 2048, 8192) one input ``x ~ N(0.5, 1)`` of shape
``[T, batch, features]`` (float32, fixed seed; with ``spatial=S`` the conv-shaped
``[T, batch, features, S, S]``, channels at dimension 2) is fed to each neuron alone (no
layers), and

* the forward time (under ``torch.no_grad``),
* the forward+backward time (``y.sum().backward()`` on a fresh ``requires_grad`` leaf that
  shares ``x``'s storage; parameter gradients are dropped before each call), and
* the peak memory of one forward+backward (``measure.peak_memory_bytes``)

are measured.  All neurons of one T are timed in rotation (``measure.time_fns``), so a busy
spell of a shared machine slows them alike.  Neurons (``NEURON_KEYS``):

* ``bpsn``: ``bpsn_ext.BPSN(features)``, the default configuration (recorded in the JSON as
  ``config.bpsn_default``; ``method="auto"``: on CPU the native kernel where it builds, else
  the chunked block scan; the row's ``method`` says which ran);
* ``bpsn_torch``: the same neuron on the torch path (``method="chunked"``: the block scan);
* ``bpsn_matmul``: the same with ``method="matmul"``, only for T <= 512: it materialises a
  ``[C, T, T]`` kernel, which is why ``auto`` uses the block scan;
* ``sj_lif``: SpikingJelly ``neuron.LIFNode(tau=2.0, step_mode='m', surrogate_function=ATan())``;
* ``sj_psn``: SpikingJelly ``neuron.PSN(T, ATan())``, T <= 2048 (a ``T x T`` weight);
* ``sj_sliding_psn``: SpikingJelly ``neuron.SlidingPSN(4, ATan(), step_mode='m')``, T <= 2048
  (its multi-step path fills a ``T x T`` matrix in a Python loop over T, whose backward
  copies that matrix once per step: minutes at T = 8192);
* ``snntorch_leaky``: snnTorch ``snn.Leaky(beta=0.5, spike_grad=surrogate.atan())`` in the
  tutorial loop over T with an explicit ``mem`` from ``init_leaky()``.  The steps are taken
  with ``x.unbind(0)``: indexing ``x[t]`` as the tutorials do gives every step's gradient a
  full-size zero tensor in the backward pass, O(T^2) work (minutes at T = 8192), which would
  measure the indexing rather than the neuron;
* ``snntorch_state_leaky``: snnTorch ``snn.StateLeaky(beta=0.5, channels=features)`` (a causal
  depthwise convolution with a T-tap kernel, O(T^2) time), where snnTorch has it (>= 1.0);
* ``bpsn_compiled``: the default BPSN under ``torch.compile(fullgraph=True)`` (inductor): the
  native kernel runs as the ``bpsn_ext::bpsn_cpu_forward`` operator inside the compiled graph.
  Compiling takes a minute per T (in the untimed first call), so ``quick`` runs leave it out;
* ``floor``: not a neuron but the memory floor: the time to stream the bytes a forward (3 arrays
  of the input's size: read x, write spikes and the membrane) and a forward+backward (6
  distinct arrays) must at least move, as ``torch.add(a, b, out=c)`` over fresh arrays (so
  caches do not flatter it).  The headline gives BPSN's time over the floor.

SpikingJelly neurons get ``functional.reset_net`` before every call.  Neurons a library lacks
(PSN, SlidingPSN in SpikingJelly 0.0.0.0.14; StateLeaky in snnTorch 0.9.4) and the T limits
above appear in the table as skipped rows with a note.

Sequential neurons need seconds per call at T = 8192, so the repeats shrink with T
(``repeats_for``).  The peak-memory pass runs first; beyond T = 256 it and one untimed forward
per neuron replace the full warm-up rounds (``warmup_for``).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from bpsn_ext.bench.measure import (
    DefaultJson,
    add_json_arguments,
    check_positive_ints,
    environment,
    format_table,
    package_version,
    peak_memory_bytes,
    publish_report,
    time_fns,
    torch_threads,
)
from bpsn_ext.util.arguments import check_int
from bpsn_ext.util.cli_args import int_at_least, positive_int

__all__ = [
    "add_arguments",
    "run_from_args",
    "run",
    "format_report",
    "repeats_for",
    "NEURON_KEYS",
    "DEFAULT_JSON",
    "DEFAULT_T",
    "QUICK_T",
    "TARGET_SPEEDUP",
]

DEFAULT_JSON = DefaultJson(os.path.join("benchmarks", "results", "bpsn.json"))
DEFAULT_T = (128, 512, 2048, 8192)
QUICK_T = (128, 512)
DEFAULT_REPEATS = 10
QUICK_REPEATS = 2
DEFAULT_WARMUP = 1
QUICK_WARMUP = 0  # the peak-memory pass still runs every neuron once before timing
MATMUL_MAX_T = 512  # the bpsn_matmul row: 4-5 s per fwd+bwd at T = 512 on one core
QUICK_MATMUL_MAX_T = 128
FULL_REPEATS_UP_TO_T = 256  # repeats shrink as 1/T beyond this T (see repeats_for)
TARGET_SPEEDUP = 5.0  # BPSN fwd+bwd vs SpikingJelly LIFNode, on CPU
TARGET_OVER_FLOOR = 2.0  # BPSN fwd+bwd within 2x the time of streaming its bytes
HEADLINE_T = (512, 2048)
MEMORY_T = (2048, 8192)  # BPSN peak memory ratio: linear growth ~4x, quadratic ~16x

NEURON_KEYS = (
    "bpsn",
    "bpsn_torch",
    "bpsn_matmul",
    "sj_lif",
    "sj_psn",
    "sj_sliding_psn",
    "snntorch_leaky",
    "snntorch_state_leaky",
    "bpsn_compiled",
    "floor",
)
QUICK_SKIP = ("bpsn_compiled",)  # a minute of compiling per T
BASE = "bpsn"
MiB = 2.0**20


def repeats_for(T: int, repeats: int) -> int:
    """Timed rounds at sequence length T: ``repeats`` up to T = 256, then ~``repeats * 256 / T``
    (rounded up), but at least 2 (unless ``repeats`` is 1).  10 -> 10, 5, 2, 2 for the
    default T = 128, 512, 2048, 8192."""
    scaled = math.ceil(repeats * FULL_REPEATS_UP_TO_T / T)
    return min(repeats, max(2, scaled))


def warmup_for(T: int, warmup: int) -> int:
    """Untimed rounds before timing: ``warmup`` up to T = 256, none beyond, where the
    peak-memory pass has run every forward+backward once and (if ``warmup`` >= 1) one untimed
    forward per neuron warms up the no-grad path."""
    return warmup if T <= FULL_REPEATS_UP_TO_T else 0


def _or_default(value: int | None, quick: bool, quick_value: int, default: int) -> int:
    """`value` as given, else the `quick` or the full run's default."""
    if value is not None:
        return value
    return quick_value if quick else default


@dataclass(frozen=True)
class _Settings:
    """What one run measures: `run`'s arguments with the `quick` defaults filled in."""

    Ts: tuple[int, ...]
    batch: int
    features: int
    spatial: int
    repeats: int
    warmup: int
    matmul_max_T: int
    keys: tuple[str, ...]  # the neurons, in `NEURON_KEYS` order or as asked
    seed: int

    @classmethod
    def of(
        cls,
        T: Sequence[int] | None,
        batch: int,
        features: int,
        spatial: int,
        repeats: int | None,
        warmup: int | None,
        matmul_max_T: int | None,
        neurons: Sequence[str] | None,
        quick: bool,
        seed: int,
    ) -> _Settings:
        keys = tuple(NEURON_KEYS if neurons is None else neurons)
        if quick and neurons is None:
            keys = tuple(k for k in keys if k not in QUICK_SKIP)
        if spatial:  # snnTorch's StateLeaky convolves [T, B, C] only
            keys = tuple(k for k in keys if k != "snntorch_state_leaky")
        return cls(
            Ts=tuple(QUICK_T if quick else DEFAULT_T) if T is None else tuple(T),
            batch=batch,
            features=features,
            spatial=spatial,
            repeats=_or_default(repeats, quick, QUICK_REPEATS, DEFAULT_REPEATS),
            warmup=_or_default(warmup, quick, QUICK_WARMUP, DEFAULT_WARMUP),
            matmul_max_T=_or_default(matmul_max_T, quick, QUICK_MATMUL_MAX_T, MATMUL_MAX_T),
            keys=keys,
            seed=seed,
        )

    def check(self, threads: int | None) -> None:
        """Raise `ValueError` naming the first setting out of range."""
        check_positive_ints(
            [
                ("batch", self.batch),
                ("features", self.features),
                ("repeats", self.repeats),
                ("matmul_max_T", self.matmul_max_T),
                *((f"T[{i}]", t) for i, t in enumerate(self.Ts)),
                *([] if threads is None else [("threads", threads)]),
            ]
        )
        if not self.Ts:
            raise ValueError("T must name at least one sequence length")
        for name, value in (("warmup", self.warmup), ("spatial", self.spatial)):
            check_int(name, value, minimum=0)
        unknown = [k for k in self.keys if k not in NEURON_KEYS]
        if unknown or not self.keys:
            raise ValueError(
                f"neurons must be a non-empty subset of {NEURON_KEYS}, got {self.keys}"
            )

    def config(self, quick: bool, threads: int | None, dev: torch.device) -> dict:
        """The report's ``config``."""
        Ts, repeats, warmup = self.Ts, self.repeats, self.warmup
        return {
            "T": list(Ts),
            "batch": self.batch,
            "features": self.features,
            "spatial": self.spatial,
            "input": "N(0.5, 1) float32",
            "repeats": repeats,
            "repeats_per_T": {str(t): repeats_for(t, repeats) for t in Ts},
            "warmup": warmup,
            "warmup_per_T": {str(t): warmup_for(t, warmup) for t in Ts},
            "quick": quick,
            "neurons": list(self.keys),
            "matmul_max_T": self.matmul_max_T,
            "threads": threads,
            "device": str(dev),
            "seed": self.seed,
            "statistic": "median_ms",
            "bpsn_default": _bpsn_default(self.features) if BASE in self.keys else None,
        }


@dataclass(frozen=True)
class _Neuron:
    key: str
    label: str
    build: Callable[[int, int], nn.Module]  # (T, features) -> module
    call: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (module, x [T, N, C]) -> spikes
    reset: Callable[[nn.Module], None] | None = None
    max_T: int | None = None
    max_T_note: str = ""
    missing: str | None = None  # why the neuron is not available here (None: available)


def _direct(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _first(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)[0]  # (spikes, membrane)


def _snntorch_loop(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """snnTorch tutorial loop: explicit membrane from ``init_leaky()``, one call per step."""
    mem = module.init_leaky()
    spikes = []
    for x_t in x.unbind(0):  # not x[t]: see the module docstring
        spk, mem = module(x_t, mem)
        spikes.append(spk)
    return torch.stack(spikes)


class _Floor(nn.Module):
    """Streams 3 (``arrays=3``) or 6 distinct arrays of the input's size: the memory floor."""

    def __init__(self) -> None:
        super().__init__()
        self.arrays: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, arrays: int = 3) -> torch.Tensor:
        if not self.arrays or self.arrays[0].shape != x.shape:
            self.arrays = [torch.rand_like(x) for _ in range(6)]
        a = self.arrays
        torch.add(a[0], a[1], out=a[2])
        if arrays == 6:
            torch.add(a[3], a[4], out=a[5])
        return a[2]


def _bpsn_neurons() -> list[_Neuron]:
    from bpsn_ext import BPSN

    def compiled(T: int, C: int) -> nn.Module:
        return torch.compile(BPSN(C), fullgraph=True)

    return [
        _Neuron("bpsn_compiled", "BPSN torch.compile", compiled, _direct),
        _Neuron("floor", "memory floor (streaming)", lambda T, C: _Floor(), _direct),
        _Neuron("bpsn", "BPSN (default)", lambda T, C: BPSN(C), _direct),
        _Neuron("bpsn_torch", "BPSN torch path", lambda T, C: BPSN(C, method="chunked"), _direct),
        _Neuron(
            "bpsn_matmul",
            "BPSN method=matmul",
            lambda T, C: BPSN(C, method="matmul"),
            _direct,
            max_T=MATMUL_MAX_T,
        ),
    ]


def _spikingjelly_neurons() -> list[_Neuron]:
    keys = (
        ("sj_lif", "SJ LIFNode"),
        ("sj_psn", "SJ PSN"),
        ("sj_sliding_psn", "SJ SlidingPSN(k=4)"),
    )
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except ImportError as exc:
        note = f"skipped: spikingjelly not importable ({exc.__class__.__name__})"
        return [_Neuron(k, label, None, _direct, missing=note) for k, label in keys]
    version = package_version("spikingjelly")
    reset = functional.reset_net
    out = [
        _Neuron(
            "sj_lif",
            "SJ LIFNode",
            lambda T, C: neuron.LIFNode(
                tau=2.0, step_mode="m", surrogate_function=surrogate.ATan()
            ),
            _direct,
            reset,
        )
    ]
    if hasattr(neuron, "PSN"):
        out.append(
            _Neuron(
                "sj_psn",
                "SJ PSN",
                lambda T, C: neuron.PSN(T, surrogate_function=surrogate.ATan()),
                _direct,
                reset,
                max_T=2048,
                max_T_note="skipped: T > 2048 (T x T weight, quadratic)",
            )
        )
    else:
        out.append(
            _Neuron(
                "sj_psn",
                "SJ PSN",
                None,
                _direct,
                missing=f"skipped: no neuron.PSN in spikingjelly {version}",
            )
        )
    if hasattr(neuron, "SlidingPSN"):
        out.append(
            _Neuron(
                "sj_sliding_psn",
                "SJ SlidingPSN(k=4)",
                lambda T, C: neuron.SlidingPSN(
                    4, surrogate_function=surrogate.ATan(), step_mode="m"
                ),
                _direct,
                reset,
                max_T=2048,
                max_T_note="skipped: T > 2048 (T x T matrix built in a loop over T)",
            )
        )
    else:
        out.append(
            _Neuron(
                "sj_sliding_psn",
                "SJ SlidingPSN(k=4)",
                None,
                _direct,
                missing=f"skipped: no neuron.SlidingPSN in spikingjelly {version}",
            )
        )
    return out


def _snntorch_neurons() -> list[_Neuron]:
    keys = (
        ("snntorch_leaky", "snnTorch Leaky (loop)"),
        ("snntorch_state_leaky", "snnTorch StateLeaky"),
    )
    try:
        import snntorch as snn
        from snntorch import surrogate
    except ImportError as exc:
        note = f"skipped: snntorch not importable ({exc.__class__.__name__})"
        return [_Neuron(k, label, None, _direct, missing=note) for k, label in keys]
    out = [
        _Neuron(
            "snntorch_leaky",
            "snnTorch Leaky (loop)",
            lambda T, C: snn.Leaky(beta=0.5, spike_grad=surrogate.atan()),
            _snntorch_loop,
        )
    ]
    if hasattr(snn, "StateLeaky"):
        out.append(
            _Neuron(
                "snntorch_state_leaky",
                "snnTorch StateLeaky",
                lambda T, C: snn.StateLeaky(beta=0.5, channels=C),
                _first,
            )
        )
    else:
        out.append(
            _Neuron(
                "snntorch_state_leaky",
                "snnTorch StateLeaky",
                None,
                _direct,
                missing=f"skipped: no snn.StateLeaky in snntorch {package_version('snntorch')}",
            )
        )
    return out


def _neurons(keys: Sequence[str], matmul_max_T: int) -> list[_Neuron]:
    available = _bpsn_neurons() + _spikingjelly_neurons() + _snntorch_neurons()
    by_key = {n.key: n for n in available}
    by_key["bpsn_matmul"] = replace(
        by_key["bpsn_matmul"],
        max_T=matmul_max_T,
        max_T_note=f"skipped: T > {matmul_max_T} ([C, T, T] kernel: quadratic time and memory)",
    )
    return [by_key[k] for k in NEURON_KEYS if k in keys]


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _default_bpsn(features: int) -> nn.Module:
    from bpsn_ext import BPSN

    return BPSN(features)


def _bpsn_default(features: int) -> str:
    module = _default_bpsn(features)
    return f"BPSN({module.extra_repr()}, method={module.method!r})"


def _bpsn_method(module: nn.Module, x: torch.Tensor) -> str:
    """The method the default BPSN runs for ``x`` (``auto`` resolved: native or chunked)."""
    if module.implementation(x) == "native":
        return "native"
    return "chunked" if module.method in ("auto", "native") else module.method


def _closures(
    n: _Neuron, module: nn.Module, x: torch.Tensor
) -> tuple[Callable[[], None], Callable[[dict | None], None]]:
    params = list(module.parameters())
    if isinstance(module, _Floor):
        return (lambda: module(x, 3)), (lambda record=None: module(x, 6))

    def forward() -> None:
        if n.reset is not None:
            n.reset(module)
        with torch.no_grad():
            n.call(module, x)

    def forward_backward(record: dict | None = None) -> None:
        for p in params:
            p.grad = None
        if n.reset is not None:
            n.reset(module)
        y = n.call(module, x.detach().requires_grad_(True))
        y.sum().backward()
        if record is not None:
            record["firing_rate"] = y.detach().float().mean().item()

    return forward, forward_backward


def _input(T: int, s: _Settings, dev: torch.device) -> torch.Tensor:
    """The input of sequence length T: ``N(0.5, 1)`` float32, seeded by ``seed + T``."""
    gen = torch.Generator().manual_seed(s.seed + T)
    shape = (T, s.batch, s.features) + ((s.spatial, s.spatial) if s.spatial else ())
    return (torch.randn(shape, generator=gen) + 0.5).to(dev)


_METHODS = {"bpsn_torch": "chunked", "bpsn_matmul": "matmul"}  # the fixed BPSN rows


def _row(n: _Neuron, T: int, x: torch.Tensor, s: _Settings, dev: torch.device) -> dict:
    """The row of `n` at T before measuring: its BPSN method, and why it is skipped if it is."""
    row: dict = {"neuron": n.key, "label": n.label, "T": T, "status": "ok", "note": None}
    if n.key == BASE:
        default = _default_bpsn(s.features).to(dev)
        row["method"] = _bpsn_method(default, x)
        row["note"] = f"{default.method} -> {row['method']}"
    elif n.key in _METHODS:
        row["method"] = _METHODS[n.key]
    if n.missing is not None:
        row.update(status="skipped", note=n.missing)
    elif n.max_T is not None and T > n.max_T:
        row.update(status="skipped", note=n.max_T_note)
    return row


def _memory(key: str, fwd_bwd: Callable, x: torch.Tensor, dev: torch.device) -> dict:
    """Peak memory and firing rate of one forward+backward (the floor: the bytes it streams)."""
    record: dict = {}
    peak = peak_memory_bytes(lambda: fwd_bwd(record), device=dev)
    if key == "floor":  # what it streams, not what it allocates
        peak = 6 * x.numel() * x.element_size()
    return {"peak_memory_bytes": peak, "firing_rate": record.get("firing_rate")}


def _timings(
    active: dict[str, tuple[nn.Module, Callable, Callable]],
    repeats: int,
    warmup: int,
    forward_warmup: bool,
    dev: torch.device,
) -> dict[str, dict]:
    """Forward and forward+backward of every active neuron, timed in one rotation:
    ``{key: {"fwd": stats, "fwd_bwd": stats}}``."""
    fns: dict[str, Callable[[], None]] = {}
    for key, (_, fwd, fwd_bwd) in active.items():
        if forward_warmup:
            fwd()  # the first no-grad call of a long loop is slow (fresh allocations)
        fns[f"{key}/fwd"] = fwd
        fns[f"{key}/fwd_bwd"] = fwd_bwd
    timings = time_fns(fns, repeats=repeats, warmup=warmup, device=dev) if fns else {}
    return {
        key: {phase: timings[f"{key}/{phase}"] for phase in ("fwd", "fwd_bwd")} for key in active
    }


def _add_speedups(rows: list[dict]) -> None:
    """``speedup_fwd`` / ``speedup_fwd_bwd``: each row's median time over BPSN's (or None)."""
    base = next((row for row in rows if row["neuron"] == BASE), None)
    for row in rows:
        for phase in ("fwd", "fwd_bwd"):
            ok = row["status"] == "ok" and base is not None and base["status"] == "ok"
            row[f"speedup_{phase}"] = (
                row[phase]["median_ms"] / base[phase]["median_ms"] if ok else None
            )


def _measure_T(
    neurons: list[_Neuron], T: int, s: _Settings, dev: torch.device, verbose: bool
) -> list[dict]:
    """One row per neuron at sequence length T: the peak-memory pass, then the timed rounds."""
    x = _input(T, s, dev)
    rows = [_row(n, T, x, s, dev) for n in neurons]
    active: dict[str, tuple[nn.Module, Callable, Callable]] = {}
    for n, row in zip(neurons, rows):
        if row["status"] == "ok":
            torch.manual_seed(s.seed)
            module = n.build(T, s.features).to(dev)
            active[n.key] = (module, *_closures(n, module, x))
    r, w = repeats_for(T, s.repeats), warmup_for(T, s.warmup)
    forward_warmup = w == 0 and s.warmup > 0
    if verbose:
        extra = ", one untimed forward each" if forward_warmup else ""
        print(
            f"T={T}: {len(active)} neurons, peak-memory pass{extra}, then {w} warm-up + {r} "
            f"timed rounds ...",
            file=sys.stderr,
            flush=True,
        )
    by_key = {row["neuron"]: row for row in rows}
    for key, (_, _, fwd_bwd) in active.items():
        by_key[key].update(_memory(key, fwd_bwd, x, dev))
    for key, times in _timings(active, r, w, forward_warmup, dev).items():
        by_key[key].update(times)
    _add_speedups(rows)
    del active
    gc.collect()
    return rows


def _find(rows: list[dict], key: str, T: int) -> dict | None:
    for row in rows:
        if row["neuron"] == key and row["T"] == T and row["status"] == "ok":
            return row
    return None


def _headline(rows: list[dict]) -> dict:
    speedups: dict[str, float | None] = {}
    speedups_min: dict[str, float | None] = {}  # min times: least disturbed by other work
    torch_path: dict[str, float | None] = {}  # the same neuron on the torch path
    for T in HEADLINE_T:
        row, base = _find(rows, "sj_lif", T), _find(rows, BASE, T)
        speedups[str(T)] = None if row is None else row["speedup_fwd_bwd"]
        speedups_min[str(T)] = (
            None
            if row is None or base is None
            else (row["fwd_bwd"]["min_ms"] / base["fwd_bwd"]["min_ms"])
        )
        tp = _find(rows, "bpsn_torch", T)
        torch_path[str(T)] = (
            None
            if row is None or tp is None
            else (row["fwd_bwd"]["median_ms"] / tp["fwd_bwd"]["median_ms"])
        )
    floor_ratio: dict[str, float | None] = {}
    compiled_ratio: dict[str, float | None] = {}
    for T in sorted({r["T"] for r in rows}):
        base, floor, comp = (_find(rows, k, T) for k in (BASE, "floor", "bpsn_compiled"))
        floor_ratio[str(T)] = (
            None
            if base is None or floor is None
            else (base["fwd_bwd"]["median_ms"] / floor["fwd_bwd"]["median_ms"])
        )
        compiled_ratio[str(T)] = (
            None
            if base is None or comp is None
            else (comp["fwd_bwd"]["median_ms"] / base["fwd_bwd"]["median_ms"])
        )
    small, large = (_find(rows, BASE, T) for T in MEMORY_T)
    mem_ratio = None
    if small is not None and large is not None and small["peak_memory_bytes"] > 0:
        mem_ratio = large["peak_memory_bytes"] / small["peak_memory_bytes"]
    return {
        "target_speedup_fwd_bwd_vs_sj_lif": TARGET_SPEEDUP,
        "speedup_fwd_bwd_vs_sj_lif": speedups,
        "speedup_fwd_bwd_vs_sj_lif_min_times": speedups_min,
        "meets_target": {
            T: (None if s is None else s >= TARGET_SPEEDUP) for T, s in speedups.items()
        },
        "bpsn_method": {
            str(T): (None if _find(rows, BASE, T) is None else _find(rows, BASE, T).get("method"))
            for T in HEADLINE_T
        },
        "speedup_fwd_bwd_vs_sj_lif_torch_path": torch_path,
        "bpsn_fwd_bwd_over_floor": floor_ratio,
        "target_over_floor": TARGET_OVER_FLOOR,
        "compiled_over_eager_fwd_bwd": compiled_ratio,
        f"bpsn_peak_memory_ratio_T{MEMORY_T[1]}_vs_T{MEMORY_T[0]}": mem_ratio,
        "memory_ratio_if_linear": MEMORY_T[1] / MEMORY_T[0],
        "memory_ratio_if_quadratic": (MEMORY_T[1] / MEMORY_T[0]) ** 2,
    }


def run(
    T: Sequence[int] | None = None,
    batch: int = 8,
    features: int = 256,
    repeats: int | None = None,
    warmup: int | None = None,
    quick: bool = False,
    neurons: Sequence[str] | None = None,
    matmul_max_T: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    json_path: str | os.PathLike | None = DEFAULT_JSON,
    seed: int = 0,
    verbose: bool = True,
    spatial: int = 0,
) -> dict:
    """Benchmark BPSN against the other neurons for every T; print a table, write JSON.

    ``spatial=S`` > 0 feeds conv-shaped inputs ``[T, batch, features, S, S]`` (BPSN's
    channels at dimension 2; neurons that take only ``[T, B, C]``, StateLeaky, are skipped).

    ``quick`` changes the defaults to ``T = (128, 512)``, 2 repeats, no warm-up round and
    ``matmul_max_T = 128`` (explicit arguments still win).  ``repeats`` / ``warmup`` are the
    timed / untimed rounds up to T = 256 (fewer beyond, see ``repeats_for`` and
    ``warmup_for``); ``neurons`` picks a subset of ``NEURON_KEYS`` (default all);
    ``matmul_max_T`` is the largest T of the ``bpsn_matmul`` row (default 512); ``threads``
    sets ``torch.set_num_threads`` for the run (restored afterwards; default: unchanged).
    Returns the JSON-able report ``{"benchmark", "config", "environment", "results",
    "headline", "elapsed_s"}``; ``results`` is a list of rows ``{"neuron", "label", "T",
    "status" ("ok"/"skipped"), "note", "fwd", "fwd_bwd" (time statistics, ms),
    "peak_memory_bytes", "firing_rate", "speedup_fwd", "speedup_fwd_bwd"}``, where a speed-up
    is that neuron's median time over BPSN's (> 1: BPSN is faster).  ``json_path=None`` skips
    the file.
    """
    s = _Settings.of(
        T, batch, features, spatial, repeats, warmup, matmul_max_T, neurons, quick, seed
    )
    s.check(threads)
    dev = torch.device(device)
    start, load_start = time.perf_counter(), _load_average()
    specs = _neurons(s.keys, s.matmul_max_T)
    with torch_threads(threads):
        env = environment(dev)
        rows = [row for t in s.Ts for row in _measure_T(specs, t, s, dev, verbose)]
    report = {
        "benchmark": "bpsn",
        "config": s.config(quick, threads, dev),
        "environment": {
            **env,
            "load_average_start": load_start,
            "load_average_end": _load_average(),
        },
        "results": rows,
        "headline": _headline(rows),
        "elapsed_s": time.perf_counter() - start,
    }
    return publish_report(report, json_path, verbose, format_report)


def _ms(row: dict, phase: str) -> float:
    return row[phase]["median_ms"] if row["status"] == "ok" else math.nan


def _num(value: float | None) -> float:
    return math.nan if value is None else value


def format_report(report: dict) -> str:
    """The table (rows: T x neuron) and the headline ratios as plain text."""
    cfg, env = report["config"], report["environment"]
    headers = [
        "T",
        "neuron",
        "fwd ms",
        "fwd+bwd ms",
        "peak MiB",
        "BPSN x fwd",
        "BPSN x fwd+bwd",
        "note",
    ]
    rows = []
    for r in report["results"]:
        ok = r["status"] == "ok"
        rows.append(
            [
                r["T"],
                r["label"],
                _ms(r, "fwd"),
                _ms(r, "fwd_bwd"),
                r["peak_memory_bytes"] / MiB if ok else math.nan,
                _num(r["speedup_fwd"]),
                _num(r["speedup_fwd_bwd"]),
                r["note"] or "",
            ]
        )
    reps = ", ".join(f"T={t}: {n}" for t, n in cfg["repeats_per_T"].items())
    lines = [
        f"BPSN vs other neurons: x ~ {cfg['input']} [T, {cfg['batch']}, {cfg['features']}"
        + (f", {cfg['spatial']}, {cfg['spatial']}" if cfg.get("spatial") else "")
        + "], "
        f"device {cfg['device']}, {env['torch_threads']} torch threads; median ms "
        f"(timed rounds {reps}); peak MiB of one fwd+bwd",
        "BPSN x = that neuron's time / BPSN (default)'s time at the same T (> 1: BPSN faster); "
        f"default: {cfg['bpsn_default']}",
        format_table(headers, rows),
    ]
    head = report["headline"]
    for T, s in head["speedup_fwd_bwd_vs_sj_lif"].items():
        if s is None:
            lines.append(f"BPSN fwd+bwd speed-up vs SJ LIFNode at T={T}: n/a (not measured)")
        else:
            verdict = "met" if s >= head["target_speedup_fwd_bwd_vs_sj_lif"] else "MISSED"
            s_min = head["speedup_fwd_bwd_vs_sj_lif_min_times"][T]
            method = head.get("bpsn_method", {}).get(T)
            tp = head.get("speedup_fwd_bwd_vs_sj_lif_torch_path", {}).get(T)
            extra = "" if tp is None else f"; torch path {tp:.2f}x"
            lines.append(
                f"BPSN fwd+bwd speed-up vs SJ LIFNode at T={T}: {s:.2f}x median, "
                f"{s_min:.2f}x min times"
                + ("" if method is None else f" (method {method}{extra})")
                + f" (target >= {head['target_speedup_fwd_bwd_vs_sj_lif']:g}x on CPU: {verdict})"
            )
    for T, r in head.get("bpsn_fwd_bwd_over_floor", {}).items():
        if r is not None:
            c = head["compiled_over_eager_fwd_bwd"].get(T)
            comp = "" if c is None else f"; torch.compile / eager {c:.2f}x"
            lines.append(
                f"BPSN fwd+bwd / memory floor at T={T}: {r:.2f}x "
                f"(target <= {head['target_over_floor']:g}x){comp}"
            )
    small, large = MEMORY_T
    ratio = head[f"bpsn_peak_memory_ratio_T{large}_vs_T{small}"]
    text = "n/a (not measured)" if ratio is None else f"{ratio:.2f}x"
    lines.append(
        f"BPSN peak memory T={large} / T={small}: {text} (linear growth "
        f"~{head['memory_ratio_if_linear']:g}x, quadratic ~{head['memory_ratio_if_quadratic']:g}x)"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the BPSN sequence-length benchmark (unset flags keep `run`'s defaults)."""
    S = argparse.SUPPRESS
    parser.add_argument(
        "--T",
        nargs="+",
        type=positive_int,
        default=S,
        metavar="T",
        help="sequence lengths (128 512 2048 8192; --quick: 128 512)",
    )
    parser.add_argument("--batch", type=positive_int, default=S, help="batch size (8)")
    parser.add_argument(
        "--features", type=positive_int, default=S, help="features = channels (256)"
    )
    parser.add_argument(
        "--spatial",
        type=int_at_least(0),
        default=S,
        metavar="S",
        help="conv-shaped input [T, batch, features, S, S] (0: [T, batch, features])",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=S,
        help="timed rounds up to T=256, fewer for larger T (10; --quick: 2)",
    )
    parser.add_argument(
        "--warmup",
        type=int_at_least(0),
        default=S,
        help="untimed rounds up to T=256 (1; --quick: 0)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=S,
        help="a quick run: T 128 512, 2 repeats, matmul row up to T=128 (tests)",
    )
    parser.add_argument(
        "--neurons",
        nargs="+",
        choices=NEURON_KEYS,
        default=S,
        metavar="NEURON",
        help=f"subset of {', '.join(NEURON_KEYS)} (all)",
    )
    parser.add_argument(
        "--matmul-max-T",
        dest="matmul_max_T",
        type=positive_int,
        default=S,
        help="largest T of the BPSN method=matmul row (512; --quick: 128)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=S,
        help="torch.set_num_threads for the run (default: unchanged)",
    )
    parser.add_argument("--device", default=S, help="torch device, e.g. cpu or cuda (cpu)")
    parser.add_argument("--seed", type=int, default=S, help="input and weight seed (0)")
    add_json_arguments(parser, "benchmarks/results/bpsn.json")


def run_from_args(args: argparse.Namespace) -> dict:
    """`run` with the flags that `add_arguments` parsed into `args`."""
    names = (
        "T",
        "batch",
        "features",
        "spatial",
        "repeats",
        "warmup",
        "quick",
        "neurons",
        "matmul_max_T",
        "threads",
        "device",
        "seed",
        "json_path",
    )
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})
