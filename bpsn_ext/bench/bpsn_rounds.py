"""One sequence length of the BPSN benchmark: build every neuron, run the peak-memory pass,
then time all of them in one rotation (`measure.time_fns`)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import torch
from torch import nn

from bpsn_ext.bench.bpsn_settings import (
    BASE,
    FAST_KEYS,
    FLOOR_WARMUP,
    BenchSettings,
    default_bpsn,
    floor_rounds_for,
    repeats_for,
    warmup_for,
)
from bpsn_ext.bench.measure import peak_memory_bytes, time_fns
from bpsn_ext.bench.neuron_zoo import Direct, Neuron

__all__ = ["measure_T"]


def _bpsn_method(module: nn.Module, x: torch.Tensor) -> str:
    """The method the default BPSN runs for ``x`` (``auto`` resolved: native or chunked)."""
    if module.implementation(x) == "native":
        return "native"
    return "chunked" if module.method in ("auto", "native") else module.method


def _closures(
    n: Neuron, module: nn.Module, x: torch.Tensor
) -> tuple[Callable[[], None], Callable[[dict | None], None]]:
    params = list(module.parameters())
    grad = _output_grad(x)
    if isinstance(module, Direct):  # the floors, the kernels alone: passes of their own
        return module.passes(x, grad)

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
        torch.autograd.backward(y, grad)
        if record is not None:
            record["firing_rate"] = y.detach().float().mean().item()

    return forward, forward_backward


def _output_grad(x: torch.Tensor) -> torch.Tensor:
    """The fixed gradient every row's output receives: dense ``N(0, 1)`` of ``x``'s shape,
    as a layer inside a network gets (and as the floor's six arrays count), not the stride-0
    gradient of ``y.sum()``, which eager passes as one value and `torch.compile` materialises."""
    gen = torch.Generator().manual_seed(x.shape[0])
    return torch.randn(x.shape, generator=gen).to(x.device)


def _input(T: int, s: BenchSettings, dev: torch.device) -> torch.Tensor:
    """The input of sequence length T: ``N(0.5, 1)`` float32, seeded by ``seed + T``."""
    gen = torch.Generator().manual_seed(s.seed + T)
    shape = (T, s.batch, s.features) + ((s.spatial, s.spatial) if s.spatial else ())
    return (torch.randn(shape, generator=gen) + 0.5).to(dev)


_METHODS = {"bpsn_torch": "chunked", "bpsn_matmul": "matmul"}  # the fixed BPSN rows


def _row(n: Neuron, T: int, x: torch.Tensor, s: BenchSettings, dev: torch.device) -> dict:
    """The row of `n` at T before measuring: its BPSN method, and why it is skipped if it is."""
    row: dict = {"neuron": n.key, "label": n.label, "T": T, "status": "ok", "note": None}
    if n.key == BASE:
        default = default_bpsn(s.features).to(dev)
        row["method"] = _bpsn_method(default, x)
        row["note"] = f"{default.method} -> {row['method']}"
    elif n.key in _METHODS:
        row["method"] = _METHODS[n.key]
    if n.missing is not None:
        row.update(status="skipped", note=n.missing)
    elif n.cpu_only and dev.type != "cpu":
        row.update(status="skipped", note=f"skipped: CPU only (device {dev})")
    elif n.max_T is not None and T > n.max_T:
        row.update(status="skipped", note=n.max_T_note)
    return row


def _memory(key: str, fwd_bwd: Callable, x: torch.Tensor, dev: torch.device) -> dict:
    """Peak memory and firing rate of one forward+backward (the floor: the bytes it streams)."""
    record: dict = {}
    peak = peak_memory_bytes(lambda: fwd_bwd(record), device=dev)
    if key in ("floor", "floor_fresh"):  # what it streams, not what it allocates
        peak = 6 * x.numel() * x.element_size()
    return {"peak_memory_bytes": peak, "firing_rate": record.get("firing_rate")}


def _rounds(keys, T: int, s: BenchSettings) -> tuple[dict[str, int], dict[str, int]]:
    """Timed and untimed rounds of every neuron at T: the cheap rows (`FAST_KEYS`) get
    `floor_rounds_for` timed rounds and `FLOOR_WARMUP` untimed ones, so their ratios (the
    floor's, compiled over eager) rest on enough samples."""
    r, w = repeats_for(T, s.repeats), warmup_for(T, s.warmup)
    fast_r, fast_w = floor_rounds_for(T, s.repeats, s.floor_rounds), max(w, FLOOR_WARMUP)
    repeats = {k: fast_r if k in FAST_KEYS else r for k in keys}
    warmup = {k: fast_w if k in FAST_KEYS else w for k in keys}
    return repeats, warmup


def _timings(
    active: dict[str, tuple[nn.Module, Callable, Callable]],
    rounds: tuple[dict[str, int], dict[str, int]],
    forward_warmup: bool,
    dev: torch.device,
) -> dict[str, dict]:
    """Forward and forward+backward of every active neuron, timed in one rotation with the
    ``(repeats, warmup)`` counts of `_rounds`: ``{key: {"fwd": stats, "fwd_bwd": stats}}``."""
    fns: dict[str, Callable[[], None]] = {}
    repeats, warmup = {}, {}
    for key, (_, fwd, fwd_bwd) in active.items():
        if forward_warmup:
            fwd()  # the first no-grad call of a long loop is slow (fresh allocations)
        for phase, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
            fns[f"{key}/{phase}"] = fn
            repeats[f"{key}/{phase}"], warmup[f"{key}/{phase}"] = rounds[0][key], rounds[1][key]
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


def measure_T(
    neurons: list[Neuron], T: int, s: BenchSettings, dev: torch.device, verbose: bool
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
    rounds = _rounds(active, T, s)
    if verbose:
        extra = ", one untimed forward each" if forward_warmup else ""
        fast = floor_rounds_for(T, s.repeats, s.floor_rounds)
        print(
            f"T={T}: {len(active)} neurons, peak-memory pass{extra}, then {w} warm-up + {r} "
            f"timed rounds ({', '.join(FAST_KEYS)}: {max(w, FLOOR_WARMUP)} + {fast}) ...",
            file=sys.stderr,
            flush=True,
        )
    by_key = {row["neuron"]: row for row in rows}
    for key, (_, _, fwd_bwd) in active.items():
        by_key[key].update(_memory(key, fwd_bwd, x, dev))
    for key, times in _timings(active, rounds, forward_warmup, dev).items():
        by_key[key].update(times)
    _add_speedups(rows)
    del active
    gc.collect()
    return rows
