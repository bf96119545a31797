"""Parallel vs sequential cost of the SSM layers over the sequence length L.

For each L, one forward + backward pass (loss ``sum(out * g)`` with a fixed random ``g``) of

* ``s4d``: `bpsn_ext.layers.S4D` (Vandermonde kernel + FFT convolution);
* ``binary_s4d``: `bpsn_ext.layers.BinaryS4D` (S4D, spike, GLU, residual, LayerNorm);
* ``gsu``: `bpsn_ext.layers.GSU` (S4D, ternary GSU mixer, residual, LayerNorm);
* ``s4d_block``: the non-spiking reference, the same block as ``binary_s4d`` with GELU in
  place of the spike (``BinaryS4D(activation="gelu")``); ``spiking_cost`` gives
  ``t(binary_s4d) / t(s4d_block)`` and ``t(gsu) / t(s4d_block)`` per L, measured in the same
  rotation;
* ``spiking_s5``: `bpsn_ext.layers.SpikingS5` (associative scan, ``d_state`` states);
* ``s4d_sequential`` / ``s5_sequential``: the same S4D / S5 linear SSMs with the recurrence
  ``x_t = A_bar x_{t-1} + B_bar u_t`` run as a Python loop over the L steps (discretisation
  and input projection done once), only for ``L <= seq_max_len``: one interpreter round trip
  and a few small kernels per step, forward and backward.

Streaming (``stream_tokens > 0``): inference (``no_grad``) of ``stream_tokens`` tokens with the
step form (``layer.step`` per token, state carried) and with the parallel form over the same
tokens, both in microseconds per token, interleaved in one rotation.

Training step (``train_step=True``): one optimiser step of the sequential-image classifier
(``train_layers`` x ``d_model`` blocks of ``train_layer``, ``d_state``, batch ``train_batch``,
length ``train_length``), fused and unfused, against its floor, the same FFTs and matmuls
alone (`bpsn_ext.bench.train_step`), the three interleaved in one rotation.

Input ``[L, batch, d_model]`` standard normal, fixed seed.  The functions are timed in
rotation (`bpsn_ext.bench.measure.time_fns`); the peak memory of one pass is measured
too.  ``scaling[key] = t(L_max) / t(L_min)`` is compared with ``L log L`` and ``L`` ratios.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

from bpsn_ext.bench.measure import (
    DefaultJson,
    add_json_arguments,
    check_positive_ints,
    environment,
    format_bytes,
    format_table,
    peak_memory_bytes,
    publish_report,
    time_fns,
    torch_threads,
)
from bpsn_ext.core.diagonal_ssm import sequential_scan
from bpsn_ext.util.arguments import check_int
from bpsn_ext.util.cli_args import int_at_least

__all__ = ["run", "add_arguments", "run_from_args", "format_report", "DEFAULT_JSON", "LAYERS"]

DEFAULT_JSON = DefaultJson(os.path.join("benchmarks", "results", "ssm.json"))
LAYERS = ("s4d", "s4d_block", "binary_s4d", "gsu", "spiking_s5", "s4d_sequential", "s5_sequential")
SPIKING = ("binary_s4d", "gsu")  # compared with s4d_block
LABELS = {
    "s4d": "S4D (FFT)",
    "s4d_block": "S4D block, GELU (FFT, non-spiking)",
    "binary_s4d": "BinaryS4D block (FFT)",
    "gsu": "GSU block (FFT)",
    "spiking_s5": "SpikingS5 (scan)",
    "s4d_sequential": "S4D recurrence (loop)",
    "s5_sequential": "S5 recurrence (loop)",
}
QUICK = {
    "lengths": (64, 256),
    "batch": 2,
    "d_model": 16,
    "d_state": 8,
    "repeats": 1,
    "warmup": 1,
    "seq_max_len": 64,
    "stream_tokens": 16,
    "train_batch": 2,
    "train_length": 32,
    "train_layers": 1,
}
TRAIN_LAYERS = ("binary_s4d", "s4d", "gsu")


def _build(key: str, d_model: int, d_state: int) -> nn.Module:
    from bpsn_ext.layers import GSU, S4D, BinaryS4D, SpikingS5

    if key in ("s4d", "s4d_sequential"):
        return S4D(d_model, d_state)
    if key == "binary_s4d":
        return BinaryS4D(d_model, d_state)
    if key == "s4d_block":
        return BinaryS4D(d_model, d_state, activation="gelu")
    if key == "gsu":
        return GSU(d_model, d_state)
    return SpikingS5(d_model, d_state)


def _sequential(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The recurrent form with the per-step work kept minimal: discretise once, then
    ``x_t = A_bar x_{t-1} + b_t`` in a Python loop over L (`sequential_scan`)."""
    from bpsn_ext.layers import S4D

    if isinstance(model, S4D):
        _, A_bar, B_bar = model._discrete()
        states = sequential_scan(A_bar[None, None], B_bar * x[..., None])  # [L, N, H, P]
        return 2.0 * (model._C() * states).sum(-1).real + model.D * x
    A_bar, B_bar = model._discrete()
    states = sequential_scan(A_bar[None, None], model._input(x, B_bar))  # [L, N, P]
    return model._readout(model._output(states, x))


def _pass(key: str, model: nn.Module, x: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    forward = (lambda: _sequential(model, x)) if key.endswith("_sequential") else (lambda: model(x))

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        x.grad = None
        (forward() * g).sum().backward()

    return fwd_bwd


def run(
    lengths: Sequence[int] = (1024, 4096, 16384),
    batch: int = 8,
    d_model: int = 128,
    d_state: int = 64,
    repeats: int = 5,
    warmup: int = 1,
    seq_max_len: int = 1024,
    stream_tokens: int = 256,
    layers: Sequence[str] = LAYERS,
    device: str = "cpu",
    json_path: str | os.PathLike | None = DEFAULT_JSON,
    seed: int = 0,
    quick: bool = False,
    memory: bool = True,
    threads: int | None = None,
    verbose: bool = True,
    train_step: bool = False,
    train_layer: str = "binary_s4d",
    train_batch: int = 64,
    train_length: int = 784,
    train_layers: int = 4,
) -> dict:
    """Time forward+backward of the SSM layers for each L; print a table, write JSON.

    ``quick=True`` replaces the sizes by tiny ones (for tests).  ``stream_tokens`` tokens are
    streamed per layer for the step-form timing (0: skip it).  ``threads`` sets
    ``torch.set_num_threads`` for the run (restored afterwards); one thread is the steadier
    choice on a busy shared machine.  Returns
    ``{"benchmark", "config", "environment", "results", "scaling", "reference_ratios"}`` where
    ``results[str(L)][key]`` holds the timing statistics (ms) and ``peak_memory_bytes``,
    ``scaling[key]`` is ``median_ms(L_max) / median_ms(L_min)`` and ``reference_ratios`` the
    ratios of ``L`` and ``L log2 L``; ``spiking_cost[key][str(L)]`` the time of a spiking block
    over the non-spiking ``s4d_block``; ``streaming[key]`` the step and parallel inference cost
    per token.  ``json_path=None`` skips the file.  ``train_step=True`` adds
    ``train_step``: the step times (fused, unfused) and their floor, with the ratios.
    """
    sizes = {
        "lengths": lengths,
        "batch": batch,
        "d_model": d_model,
        "d_state": d_state,
        "repeats": repeats,
        "warmup": warmup,
        "seq_max_len": seq_max_len,
        "stream_tokens": stream_tokens,
        "train_batch": train_batch,
        "train_length": train_length,
        "train_layers": train_layers,
    }
    extra = {"layers": list(layers), "train_step": train_step, "train_layer": train_layer}
    config = _config(sizes, extra, device, seed, quick, threads)
    with torch_threads(threads):
        report = _measure(config, memory)
        if train_step:
            report["train_step"] = _measure_train_step(config)
    return publish_report(report, json_path, verbose, format_report)


def _config(sizes: dict, extra: dict, device: str, seed: int, quick: bool, threads) -> dict:
    """The checked run configuration (`run`'s sizes, replaced by `QUICK` when ``quick``)."""
    if quick:
        sizes.update(QUICK)
    sizes["lengths"] = sorted(set(int(v) for v in sizes["lengths"]))
    _check(sizes, extra["layers"], threads)
    if extra["train_layer"] not in TRAIN_LAYERS:
        raise ValueError(f"train_layer must be one of {TRAIN_LAYERS}, got {extra['train_layer']!r}")
    return {
        **sizes,
        **extra,
        "device": str(torch.device(device)),
        "seed": seed,
        "quick": quick,
        "threads": threads or torch.get_num_threads(),
        "pass": "forward + backward of sum(out * g)",
        "timing": "all (L, layer) passes interleaved in one rotation",
    }


def _measure_train_step(config: dict) -> dict:
    """Fused step, unfused step and their floor in one rotation (CPU, see `train_step`)."""
    from bpsn_ext.bench.train_step import floor_fn, train_step_fns

    sizes = [config[k] for k in ("train_length", "train_batch", "d_model", "train_layers")]
    fns = train_step_fns(config["train_layer"], *sizes, config["d_state"], config["seed"])
    fns["floor"] = floor_fn(*sizes, config["d_state"], glu=True)
    timings = time_fns(fns, repeats=config["repeats"], warmup=config["warmup"])
    floor = timings["floor"]
    return {
        **timings,
        "fused_over_floor": timings["fused"]["median_ms"] / floor["median_ms"],
        "unfused_over_floor": timings["unfused"]["median_ms"] / floor["median_ms"],
        "fused_over_floor_min": timings["fused"]["min_ms"] / floor["min_ms"],
    }


def _check(sizes: dict, layers: Sequence[str], threads: int | None) -> None:
    """Raise `ValueError` naming the first size, layer or thread count out of range."""
    lengths = sizes["lengths"]
    check_positive_ints(
        [
            *((k, sizes[k]) for k in ("batch", "d_model", "d_state", "repeats")),
            ("min length", lengths[0] if lengths else 0),
        ]
    )
    unknown = [k for k in layers if k not in LAYERS]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; expected some of {LAYERS}")
    check_positive_ints((k, sizes[k]) for k in ("train_batch", "train_length", "train_layers"))
    stream_tokens = sizes["stream_tokens"]
    check_int("stream_tokens", stream_tokens, minimum=0)
    check_int("threads", threads, none_ok=True)


def _measure(config: dict, memory: bool) -> dict:
    lengths, batch, d_model = config["lengths"], config["batch"], config["d_model"]
    seed, dev = config["seed"], torch.device(config["device"])
    torch.manual_seed(seed)
    layers, d_state, seq_max_len = config["layers"], config["d_state"], config["seq_max_len"]
    models = {k: _build(k, d_model, d_state).to(dev) for k in layers}
    if "s4d" in models and "s4d_sequential" in models:
        models["s4d_sequential"].load_state_dict(models["s4d"].state_dict())
    if "spiking_s5" in models and "s5_sequential" in models:
        models["s5_sequential"].load_state_dict(models["spiking_s5"].state_dict())

    # every (L, layer) pass in one rotation: a busy spell of a shared machine slows all alike,
    # so the ratios between lengths stay meaningful
    fns: dict[str, Callable[[], None]] = {}
    skipped: dict[str, list[int]] = {}
    for L in lengths:
        gen = torch.Generator().manual_seed(seed + L)
        x = torch.randn(L, batch, d_model, generator=gen).to(dev).requires_grad_(True)
        g = torch.randn(L, batch, d_model, generator=gen).to(dev)
        for key, model in models.items():
            if key.endswith("_sequential") and L > seq_max_len:
                skipped.setdefault(key, []).append(L)
                continue
            fns[f"{L}/{key}"] = _pass(key, model, x, g)
    timings = time_fns(fns, repeats=config["repeats"], warmup=config["warmup"], device=dev)
    results: dict[str, dict] = {str(L): {} for L in lengths}
    for name, fn in fns.items():
        L, key = name.split("/")
        entry = {"label": LABELS[key], **timings[name]}
        entry["peak_memory_bytes"] = peak_memory_bytes(fn, device=dev) if memory else None
        results[L][key] = entry

    lo, hi = str(lengths[0]), str(lengths[-1])
    scaling = {
        key: results[hi][key]["median_ms"] / results[lo][key]["median_ms"]
        for key in results[hi]
        if key in results[lo] and len(lengths) > 1
    }
    r = lengths[-1] / lengths[0]
    reference = {
        "L": r,
        "L_log2_L": r * math.log2(max(lengths[-1], 2)) / math.log2(max(lengths[0], 2)),
    }
    return {
        "benchmark": "ssm",
        "config": config,
        "environment": environment(dev),
        "results": results,
        "skipped": skipped,
        "scaling": scaling,
        "reference_ratios": reference,
        "spiking_cost": _spiking_cost(results),
        "streaming": _measure_stream(config, models, dev),
    }


def _spiking_cost(results: dict) -> dict:
    """``t(spiking block) / t(s4d_block)`` per L, for the blocks measured with the reference."""
    cost: dict[str, dict[str, float]] = {}
    for L, row in results.items():
        if "s4d_block" not in row:
            continue
        for key in SPIKING:
            if key in row:
                cost.setdefault(key, {})[L] = row[key]["median_ms"] / row["s4d_block"]["median_ms"]
    return cost


def _measure_stream(config: dict, models: dict, dev: torch.device) -> dict:
    """Inference per token: the step form (state carried) and the parallel form over the same
    ``stream_tokens`` tokens, all layers interleaved in one rotation."""
    T = config["stream_tokens"]
    keys = [k for k in models if not k.endswith("_sequential")]
    if T == 0 or not keys:
        return {}
    gen = torch.Generator().manual_seed(config["seed"] - 1)
    x = torch.randn(T, config["batch"], config["d_model"], generator=gen).to(dev)

    def step_fn(model):
        def fn():
            with torch.no_grad():
                model.reset_state()
                model.stream(x)

        return fn

    def parallel_fn(model):
        def fn():
            with torch.no_grad():
                model(x)

        return fn

    fns = {}
    for key in keys:
        fns[f"step/{key}"] = step_fn(models[key])
        fns[f"parallel/{key}"] = parallel_fn(models[key])
    timings = time_fns(fns, repeats=config["repeats"], warmup=config["warmup"], device=dev)
    out = {}
    for key in keys:
        step, par = (timings[f"{f}/{key}"]["median_ms"] * 1e3 / T for f in ("step", "parallel"))
        out[key] = {
            "label": LABELS[key],
            "step_us_per_token": step,
            "parallel_us_per_token": par,
            "step_over_parallel": step / par,
        }
    return out


def format_report(report: dict) -> str:
    """The timing table (one row per layer, one column per L) and the scaling ratios."""
    cfg, results = report["config"], report["results"]
    lengths = [str(L) for L in cfg["lengths"]]
    keys = [k for k in cfg["layers"] if any(k in results[L] for L in lengths)]
    rows = []
    for key in keys:
        row: list = [LABELS[key]]
        row += [results[L][key]["median_ms"] if key in results[L] else None for L in lengths]
        top = results[lengths[-1]].get(key)
        mem = top["peak_memory_bytes"] if top else None
        row.append(format_bytes(mem) if mem is not None else None)
        row.append(report["scaling"].get(key))
        rows.append(row)
    headers = (
        ["layer"]
        + [f"L={L} ms" for L in lengths]
        + [f"peak mem L={lengths[-1]}", f"t({lengths[-1]})/t({lengths[0]})"]
    )
    ref = report["reference_ratios"]
    title = (
        f"forward+backward, batch {cfg['batch']}, D={cfg['d_model']}, N={cfg['d_state']}, "
        f"device {cfg['device']}, {cfg['threads']} thread(s), median of {cfg['repeats']} "
        "(interleaved)"
    )
    lines = [title, format_table(headers, rows)]
    if len(lengths) > 1:
        lines.append(
            f"reference ratios for L {lengths[0]} -> {lengths[-1]}: L {ref['L']:.1f}x, "
            f"L log L {ref['L_log2_L']:.1f}x"
        )
    for key, Ls in report["skipped"].items():
        lines.append(
            f"{LABELS[key]}: not run for L = {', '.join(map(str, Ls))} "
            f"(> seq_max_len = {cfg['seq_max_len']}; linear in L, slow)"
        )
    lines += _format_extras(report, lengths)
    lines += _format_train_step(report)
    return "\n".join(lines)


def _format_train_step(report: dict) -> list[str]:
    ts = report.get("train_step")
    if not ts:
        return []
    cfg = report["config"]
    rows = [
        [
            label,
            ts[key]["median_ms"],
            ts[key]["min_ms"],
            ts[key]["median_ms"] / ts["floor"]["median_ms"],
        ]
        for key, label in (
            ("fused", "training step (fused, default)"),
            ("unfused", "training step (unfused reference)"),
            ("floor", "floor: its FFTs and matmuls alone"),
        )
    ]
    return [
        "",
        f"training step of the sequential classifier: {cfg['train_layers']} x "
        f"{cfg['d_model']} {cfg['train_layer']}, d_state {cfg['d_state']}, batch "
        f"{cfg['train_batch']}, L {cfg['train_length']}, {cfg['threads']} thread(s), "
        f"{cfg['repeats']} interleaved repeats",
        format_table(["", "median ms", "min ms", "median / floor"], rows),
    ]


def _format_extras(report: dict, lengths: list[str]) -> list[str]:
    """The spiking-cost table (vs the non-spiking block) and the streaming table."""
    lines = []
    cost = report.get("spiking_cost") or {}
    if cost:
        rows = [[LABELS[k]] + [cost[k].get(L) for L in lengths] for k in cost]
        lines += [
            "",
            "cost of spiking: time / time of the non-spiking S4D block (same run)",
            format_table(["block"] + [f"L={L}" for L in lengths], rows),
        ]
    stream = report.get("streaming") or {}
    if stream:
        cfg = report["config"]
        rows = [
            [
                v["label"],
                v["step_us_per_token"],
                v["parallel_us_per_token"],
                v["step_over_parallel"],
            ]
            for v in stream.values()
        ]
        lines += [
            "",
            f"inference per token, {cfg['stream_tokens']} tokens, batch "
            f"{cfg['batch']} (step: state carried token by token)",
            format_table(["layer", "step us/token", "parallel us/token", "step/parallel"], rows),
        ]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this benchmark (unset flags keep `run`'s defaults)."""
    S, pos = argparse.SUPPRESS, int_at_least(1)
    parser.add_argument(
        "--lengths", type=pos, nargs="+", default=S, help="sequence lengths L (1024 4096 16384)"
    )
    parser.add_argument("--batch", type=pos, default=S, help="batch size (8)")
    parser.add_argument("--d-model", dest="d_model", type=pos, default=S, help="channels D (128)")
    parser.add_argument("--d-state", dest="d_state", type=pos, default=S, help="state N (64)")
    parser.add_argument("--repeats", type=pos, default=S, help="timed passes (5)")
    parser.add_argument("--warmup", type=int_at_least(0), default=S, help="untimed passes (1)")
    parser.add_argument(
        "--seq-max-len",
        dest="seq_max_len",
        type=int_at_least(0),
        default=S,
        help="longest L for the sequential loops (1024)",
    )
    parser.add_argument(
        "--stream-tokens",
        dest="stream_tokens",
        type=int_at_least(0),
        default=S,
        help="tokens streamed per layer for the step form (256; 0: skip)",
    )
    parser.add_argument("--layers", nargs="+", choices=LAYERS, default=S, help="which layers (all)")
    parser.add_argument("--device", default=S, help="torch device, e.g. cpu or cuda (cpu)")
    parser.add_argument("--seed", type=int, default=S, help="data and weight seed (0)")
    parser.add_argument(
        "--threads", type=pos, default=S, help="torch threads for the run (torch's default)"
    )
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        default=S,
        help="skip the peak-memory measurement",
    )
    parser.add_argument(
        "--quick", action="store_true", default=S, help="tiny sizes, one repeat (a smoke test)"
    )
    parser.add_argument(
        "--train-step",
        dest="train_step",
        action="store_true",
        default=S,
        help="also time one training step of the classifier against its FFT+matmul floor",
    )
    parser.add_argument(
        "--train-layer", dest="train_layer", choices=TRAIN_LAYERS, default=S, help="(binary_s4d)"
    )
    for flag, default in (("batch", 64), ("length", 784), ("layers", 4)):
        parser.add_argument(
            f"--train-{flag}",
            dest=f"train_{flag}",
            type=pos,
            default=S,
            help=f"training step: {flag} ({default})",
        )
    add_json_arguments(parser, "benchmarks/results/ssm.json")


def run_from_args(args: argparse.Namespace) -> dict:
    """`run` with the flags that `add_arguments` parsed into ``args``."""
    names = (
        "lengths",
        "batch",
        "d_model",
        "d_state",
        "repeats",
        "warmup",
        "seq_max_len",
        "stream_tokens",
        "layers",
        "device",
        "seed",
        "memory",
        "threads",
        "quick",
        "json_path",
        "train_step",
        "train_layer",
        "train_batch",
        "train_length",
        "train_layers",
    )
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})
