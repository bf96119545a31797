"""The BPSN benchmark's headline ratios and its plain-text report."""

from __future__ import annotations

import math

from bpsn_ext.bench.bpsn_settings import BASE
from bpsn_ext.bench.measure import format_table

__all__ = ["headline", "format_report", "TARGET_SPEEDUP", "TARGET_OVER_FLOOR"]

TARGET_SPEEDUP = 5.0  # BPSN fwd+bwd vs SpikingJelly LIFNode, on CPU
TARGET_OVER_FLOOR = 2.0  # BPSN fwd+bwd within 2x the time of streaming its bytes
TARGET_COMPILED = 1.1  # torch.compile of BPSN within 1.1x of eager
HEADLINE_T = (512, 2048)
MEMORY_T = (2048, 8192)  # peak memory ratio: linear growth ~4x, quadratic ~16x
MiB = 2.0**20


def _find(rows: list[dict], key: str, T: int) -> dict | None:
    for row in rows:
        if row["neuron"] == key and row["T"] == T and row["status"] == "ok":
            return row
    return None


def _ratio(top: dict | None, bottom: dict | None, stat: str | None = "median_ms") -> float | None:
    """``top``'s fwd+bwd time over ``bottom``'s (None if either row is missing); ``stat``
    None: ``top``'s median over ``bottom``'s min."""
    if top is None or bottom is None:
        return None
    return top["fwd_bwd"][stat or "median_ms"] / bottom["fwd_bwd"][stat or "min_ms"]


def _vs_lif(rows: list[dict]) -> dict:
    """SpikingJelly LIFNode's fwd+bwd time over BPSN's at the headline T."""
    out: dict[str, dict] = {"median": {}, "min": {}, "torch_path": {}, "method": {}}
    for T in HEADLINE_T:
        lif, base = _find(rows, "sj_lif", T), _find(rows, BASE, T)
        out["median"][str(T)] = None if lif is None else lif["speedup_fwd_bwd"]
        out["min"][str(T)] = _ratio(lif, base, "min_ms")
        out["torch_path"][str(T)] = _ratio(lif, _find(rows, "bpsn_torch", T))
        out["method"][str(T)] = None if base is None else base.get("method")
    return out


def _memory_ratio(rows: list[dict], key: str) -> float | None:
    small, large = (_find(rows, key, T) for T in MEMORY_T)
    if small is None or large is None or small["peak_memory_bytes"] <= 0:
        return None
    return large["peak_memory_bytes"] / small["peak_memory_bytes"]


def _per_T(rows: list[dict], top: str, bottom: str, stat: str) -> dict[str, float | None]:
    Ts = sorted({r["T"] for r in rows})
    return {str(T): _ratio(_find(rows, top, T), _find(rows, bottom, T), stat) for T in Ts}


def _floor_spread(rows: list[dict]) -> dict[str, float | None]:
    """The floor row's median over its min fwd+bwd time per T (near 1: a stable floor)."""
    Ts = sorted({r["T"] for r in rows})
    return {str(T): _ratio(_find(rows, "floor", T), _find(rows, "floor", T), None) for T in Ts}


def headline(rows: list[dict]) -> dict:
    """The ratios the benchmark is read for (JSON ``headline``)."""
    lif = _vs_lif(rows)
    large, small = MEMORY_T[1], MEMORY_T[0]
    return {
        "target_speedup_fwd_bwd_vs_sj_lif": TARGET_SPEEDUP,
        "speedup_fwd_bwd_vs_sj_lif": lif["median"],
        "speedup_fwd_bwd_vs_sj_lif_min_times": lif["min"],
        "meets_target": {
            T: (None if s is None else s >= TARGET_SPEEDUP) for T, s in lif["median"].items()
        },
        "bpsn_method": lif["method"],
        "speedup_fwd_bwd_vs_sj_lif_torch_path": lif["torch_path"],
        "bpsn_fwd_bwd_over_floor": _per_T(rows, BASE, "floor", "median_ms"),
        "bpsn_fwd_bwd_over_floor_min_times": _per_T(rows, BASE, "floor", "min_ms"),
        "floor_median_over_min": _floor_spread(rows),
        "bpsn_fwd_bwd_over_floor_fresh": _per_T(rows, BASE, "floor_fresh", "median_ms"),
        "bpsn_fwd_bwd_over_floor_fresh_min_times": _per_T(rows, BASE, "floor_fresh", "min_ms"),
        "kernels_fwd_bwd_over_floor": _per_T(rows, "bpsn_kernels", "floor", "median_ms"),
        "kernels_fwd_bwd_over_floor_min_times": _per_T(rows, "bpsn_kernels", "floor", "min_ms"),
        "target_over_floor": TARGET_OVER_FLOOR,
        "compiled_over_eager_fwd_bwd": _per_T(rows, "bpsn_compiled", BASE, "median_ms"),
        "compiled_over_eager_fwd_bwd_min_times": _per_T(rows, "bpsn_compiled", BASE, "min_ms"),
        "target_compiled_over_eager": TARGET_COMPILED,
        f"bpsn_peak_memory_ratio_T{large}_vs_T{small}": _memory_ratio(rows, BASE),
        "memory_ratio_if_linear": large / small,
        "memory_ratio_if_quadratic": (large / small) ** 2,
    }


def _num(value: float | None) -> float:
    return math.nan if value is None else value


def _table(report: dict) -> str:
    headers = ["T", "neuron", "fwd ms", "fwd+bwd ms", "fwd+bwd min", "peak MiB"]
    headers += ["BPSN x fwd", "BPSN x fwd+bwd", "note"]
    rows = []
    for r in report["results"]:
        ok = r["status"] == "ok"
        times = [r[p][s] if ok else math.nan for p, s in _COLUMNS]
        memory = r["peak_memory_bytes"] / MiB if ok else math.nan
        speedups = [_num(r["speedup_fwd"]), _num(r["speedup_fwd_bwd"])]
        rows.append([r["T"], r["label"], *times, memory, *speedups, r["note"] or ""])
    return format_table(headers, rows)


_COLUMNS = (("fwd", "median_ms"), ("fwd_bwd", "median_ms"), ("fwd_bwd", "min_ms"))


def _title(report: dict) -> list[str]:
    cfg, env = report["config"], report["environment"]
    spatial = f", {cfg['spatial']}, {cfg['spatial']}" if cfg.get("spatial") else ""
    reps = ", ".join(f"T={t}: {n}" for t, n in cfg["repeats_per_T"].items())
    fast = ", ".join(f"T={t}: {n}" for t, n in cfg.get("floor_rounds_per_T", {}).items())
    return [
        f"BPSN vs other neurons: x ~ {cfg['input']} [T, {cfg['batch']}, {cfg['features']}"
        f"{spatial}], device {cfg['device']}, {env['torch_threads']} torch threads; median ms "
        f"(timed rounds {reps}; {', '.join(cfg.get('fast_rows', []))}: {fast}); "
        "peak MiB of one fwd+bwd",
        "BPSN x = that neuron's time / BPSN (default)'s time at the same T (> 1: BPSN faster); "
        f"default: {cfg['bpsn_default']}",
    ]


def _lif_lines(head: dict) -> list[str]:
    lines = []
    target = head["target_speedup_fwd_bwd_vs_sj_lif"]
    for T, s in head["speedup_fwd_bwd_vs_sj_lif"].items():
        if s is None:
            lines.append(f"BPSN fwd+bwd speed-up vs SJ LIFNode at T={T}: n/a (not measured)")
            continue
        verdict = "met" if s >= target else "MISSED"
        s_min = head["speedup_fwd_bwd_vs_sj_lif_min_times"][T]
        method = head["bpsn_method"].get(T)
        tp = head["speedup_fwd_bwd_vs_sj_lif_torch_path"].get(T)
        extra = "" if tp is None else f"; torch path {tp:.2f}x"
        lines.append(
            f"BPSN fwd+bwd speed-up vs SJ LIFNode at T={T}: {s:.2f}x median, "
            f"{s_min:.2f}x min times"
            + ("" if method is None else f" (method {method}{extra})")
            + f" (target >= {target:g}x on CPU: {verdict})"
        )
    return lines


def _verdict(median: float, minimum: float, target: float) -> str:
    """Met on both statistics, or which one misses (min times: least disturbed by a busy
    machine; medians: the typical call)."""
    missed = [name for name, v in (("median", median), ("min times", minimum)) if v > target]
    return "met" if not missed else "MISSED on " + " and ".join(missed)


_UNTARGETED = (  # headline key -> (what it divides, what it shows)
    (
        "bpsn_fwd_bwd_over_floor_fresh",
        ("BPSN fwd+bwd / memory floor with fresh outputs", "the floor plus fresh memory"),
    ),
    (
        "kernels_fwd_bwd_over_floor",
        (
            "BPSN kernels alone fwd+bwd / memory floor",
            "the kernels without fresh outputs or autograd",
        ),
    ),
)


def _floor_lines(head: dict) -> list[str]:
    lines = []
    for T, r in head["bpsn_fwd_bwd_over_floor"].items():
        if r is None:
            continue
        r_min, spread = head["bpsn_fwd_bwd_over_floor_min_times"][T], head["floor_median_over_min"]
        verdict = _verdict(r, r_min, head["target_over_floor"])
        lines.append(
            f"BPSN fwd+bwd / memory floor at T={T}: {r:.2f}x median, {r_min:.2f}x min times "
            f"(target <= {head['target_over_floor']:g}x: {verdict}; floor median/min "
            f"{spread[T]:.2f})"
        )
    for key, what in _UNTARGETED:
        for T, r in head[key].items():
            if r is not None:
                lines.append(
                    f"{what[0]} at T={T}: {r:.2f}x median, {head[key + '_min_times'][T]:.2f}x "
                    f"min times (no target: {what[1]})"
                )
    for T, c in head["compiled_over_eager_fwd_bwd"].items():
        if c is None:
            continue
        c_min = head["compiled_over_eager_fwd_bwd_min_times"][T]
        verdict = _verdict(c, c_min, head["target_compiled_over_eager"])
        lines.append(
            f"BPSN torch.compile / eager fwd+bwd at T={T}: {c:.2f}x median, {c_min:.2f}x min "
            f"times (target <= {head['target_compiled_over_eager']:g}x: {verdict})"
        )
    return lines


def _memory_lines(head: dict) -> list[str]:
    small, large = MEMORY_T
    ratio = head[f"bpsn_peak_memory_ratio_T{large}_vs_T{small}"]
    text = "n/a (not measured)" if ratio is None else f"{ratio:.2f}x"
    return [
        f"BPSN peak memory T={large} / T={small}: {text} (linear growth "
        f"~{head['memory_ratio_if_linear']:g}x, quadratic ~{head['memory_ratio_if_quadratic']:g}x)"
    ]


def format_report(report: dict) -> str:
    """The table (rows: T x neuron) and the headline ratios as plain text."""
    head = report["headline"]
    lines = [*_title(report), _table(report)]
    lines += _lif_lines(head) + _floor_lines(head) + _memory_lines(head)
    return "\n".join(lines)
