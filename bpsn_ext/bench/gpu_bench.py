"""The GPU benchmark: BPSN's providers against SpikingJelly 2.0's ``LIFNode`` implementations
and a bandwidth floor, and the fused SSM scan against the FFT form; forward+backward time and
peak memory for every T (default 512, 2048 and 8192).

Rows (all forward+backward: the output's ``backward`` with a fixed random gradient):

* ``bpsn[<method>]``: ``bpsn_ext.BPSN(features, method=<method>)`` on ``[T, batch, features]``
  for each name in ``bpsn_methods`` (default ``triton``, ``cupy`` and ``chunked``, the torch
  path); the names are passed as given, so a method this BPSN does not know shows as
  unavailable, with BPSN's own message.  ``cupy`` is asked for as SpikingJelly users do:
  ``bpsn_ext.spikingjelly.BPSNNode(features, step_mode='m', backend='cupy')``;
* ``sj_lif[<impl>]``: SpikingJelly 2.0 ``neuron.LIFNode(tau=2.0, step_mode='m',
  surrogate_function=ATan())`` with ``SJ_LIF_CUDA_IMPLEMENTATION=<impl>`` (``cuda``,
  ``triton``).  SpikingJelly reads the variable once, when it is imported, so every
  implementation runs in its own Python process (``sj_worker``), over the same inputs;
* ``floor``: three ``copy_`` between six distinct arrays of the input's size, the bytes a
  forward+backward must at least move (read x, write spikes, read their gradient, write the
  input's, plus the membrane the backward reads); ``over_floor`` is a row's time over it;
* ``scan[<provider>]``: one causal ``bpsn_ext.layers.S4D(d_model, d_state)`` on
  ``[T, ssm_batch, d_model]``: the fused scan through Triton (``triton``) or CuPy (``cupy``),
  discretisation included, against the layer's FFT form (``fft``); ``over_fft`` is the ratio;
* ``s5[<provider>]``: the complex diagonal scan of S5 (all states of ``x_t = A_bar x_t-1 +
  b_t``, ``[T, ssm_batch, d_state]`` complex) through Triton (``triton``) against torch's
  associative scan (``torch``, `bpsn_ext.core.diagonal_ssm.diagonal_scan`); ``over_torch``.

A row that cannot run here (no CUDA device, no ``triton`` / ``cupy``, a method the module
lacks) is reported as ``unavailable: <reason>``, never an error.  The rows of one T are timed
in rotation (`bpsn_ext.bench.measure.time_fns`); the peak memory of one pass is measured
first (``torch.cuda.max_memory_allocated`` on CUDA, the profiler on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import torch

from bpsn_ext.bench import measure
from bpsn_ext.util.cli_args import flag_errors, int_at_least
from bpsn_ext.util.errors import OutputExistsError
from bpsn_ext.util.files import atomic_open

__all__ = ["run", "add_arguments", "run_from_args", "format_report", "sj_worker", "DEFAULT_JSON"]

DEFAULT_JSON = measure.DefaultJson(os.path.join("benchmarks", "results", "gpu.json"))
BPSN_METHODS = ("triton", "cupy", "chunked")
SJ_IMPLEMENTATIONS = ("cuda", "triton")
SCAN_PROVIDERS = ("triton", "cupy", "fft")
S5_PROVIDERS = ("triton", "torch")
RATIOS = {"scan": "over_fft", "s5": "over_torch"}  # the other rows: over the floor
SJ_VARIABLE = "SJ_LIF_CUDA_IMPLEMENTATION"
QUICK = {"lengths": (16, 32), "batch": 2, "features": 8, "ssm_batch": 2, "d_model": 4,
         "d_state": 4, "repeats": 1, "warmup": 0}  # fmt: skip
Pass = Callable[[], None]


def _input(T: int, batch: int, width: int, seed: int, dev: torch.device) -> torch.Tensor:
    """``x ~ N(0.5, 1)`` ``[T, batch, width]``, the same for every row and process."""
    gen = torch.Generator().manual_seed(seed + T)
    return (torch.randn(T, batch, width, generator=gen) + 0.5).to(dev)


def _fwd_bwd(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, params) -> Pass:
    """One pass: a fresh leaf sharing ``x``'s storage, ``forward``, backward of a fixed
    random gradient; parameter gradients dropped first."""
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(x.shape, generator=gen).to(x.device)
    params = list(params)

    def call() -> None:
        for p in params:
            p.grad = None
        leaf = x.detach().requires_grad_(True)
        torch.autograd.backward(forward(leaf), grad)

    return call


def _floor(x: torch.Tensor) -> Pass:
    arrays = [torch.empty_like(x).copy_(x) for _ in range(6)]

    def call() -> None:
        for src, dst in zip(arrays[0::2], arrays[1::2]):
            dst.copy_(src)

    return call


def _bpsn(method: str, x: torch.Tensor) -> Pass:
    """``BPSN(features, method=method)``; ``"cupy"``: the SpikingJelly face with
    ``backend="cupy"``, the way the CuPy kernel is asked for."""
    if method != "cupy":
        from bpsn_ext import BPSN

        module = BPSN(x.shape[-1], method=method).to(x.device)
        return _fwd_bwd(module, x, module.parameters())
    from spikingjelly.activation_based import functional

    from bpsn_ext.spikingjelly import BPSNNode

    node = BPSNNode(x.shape[-1], step_mode="m", backend="cupy").to(x.device)

    def forward(v: torch.Tensor) -> torch.Tensor:
        functional.reset_net(node)
        return node(v)

    return _fwd_bwd(forward, x, node.parameters())


def _discretised(layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A_bar, B_bar, C, D)`` of an S4D (ZOH in torch, in the autograd graph): complex
    ``[H, P]``, complex ``[H, P]``, ``[H, P, 2]``, ``[H]``."""
    from bpsn_ext.core.diagonal_ssm import zoh

    _, A_bar, B_bar = zoh(layer.A, torch.exp(layer.log_dt)[:, None])
    return A_bar, B_bar, layer.C, layer.D


def _scan(provider: str, layer, x: torch.Tensor) -> Pass:
    """The S4D ``layer`` on ``x`` through the FFT form or a fused scan (discretisation
    included in the pass)."""
    if provider == "fft":
        forward = layer
    elif provider == "cupy":
        from bpsn_ext.kernels.cupy_ssm import s4d_scan_cupy

        def forward(v):
            return s4d_scan_cupy(v, None, None, _discretised(layer))[0]
    else:
        from bpsn_ext.kernels.triton_ssm_scan import s4d_scan_triton

        def forward(v):
            A_bar, B_bar, C, D = _discretised(layer)
            A_bar, B_bar = torch.view_as_real(A_bar), torch.view_as_real(B_bar)
            no_mask = torch.zeros(1, dtype=torch.uint8, device=v.device)
            return s4d_scan_triton(v, no_mask, A_bar, B_bar, C, D, None, False, False)[0]

    return _fwd_bwd(forward, x, layer.parameters())


def _s5(provider: str, T: int, config: dict, dev: torch.device) -> Pass:
    """All states of ``x_t = A_bar x_t-1 + b_t``, ``b`` ``[T, ssm_batch, d_state]`` complex
    (as its real view, the pass's leaf), through Triton or torch's associative scan."""
    from bpsn_ext.core.diagonal_ssm import diagonal_scan

    P, gen = config["d_state"], torch.Generator().manual_seed(config["seed"] + T)
    a = torch.polar(0.5 + 0.49 * torch.rand(P, generator=gen), torch.rand(P, generator=gen))
    A_bar = torch.view_as_real(a).to(dev).requires_grad_(True)
    b = torch.randn(T, config["ssm_batch"], P, 2, generator=gen).to(dev)
    if provider == "torch":

        def forward(v):
            A = torch.view_as_complex(A_bar)
            return torch.view_as_real(diagonal_scan(A[None, None, :], torch.view_as_complex(v)))
    else:
        from bpsn_ext.kernels.triton_diagonal_scan import diagonal_scan_triton

        def forward(v):
            return diagonal_scan_triton(v, A_bar, None, False)

    return _fwd_bwd(forward, b, [A_bar])


def _reason(err: BaseException) -> str:
    """``unavailable: <type>: <first line of the message>``."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"unavailable: {type(err).__name__}: {first}"


def _measure_rows(builders: dict[str, Callable[[], Pass]], config: dict, dev) -> dict:
    """``{key: statistics and peak memory}`` or ``{key: {"unavailable": reason}}``."""
    rows: dict[str, dict] = {}
    fns: dict[str, Pass] = {}
    for key, build in builders.items():
        try:
            fn = build()
            rows[key] = {
                "peak_memory_bytes": measure.peak_memory_bytes(fn, device=dev)
            }  # also a try
            fns[key] = fn
        except Exception as err:  # noqa: BLE001 - a row that cannot run is reported, not fatal
            rows[key] = {"unavailable": _reason(err)}
    if fns:
        timings = measure.time_fns(
            fns, repeats=config["repeats"], warmup=config["warmup"], device=dev
        )
        for key, stats in timings.items():
            rows[key].update(stats)
    return rows


def _measure_T(T: int, config: dict, dev: torch.device) -> dict:
    """The BPSN, floor and scan rows of one T."""
    from bpsn_ext.layers import S4D

    seed = config["seed"]
    x = _input(T, config["batch"], config["features"], seed, dev)
    builders = {f"bpsn[{m}]": (lambda m=m: _bpsn(m, x)) for m in config["bpsn_methods"]}
    builders["floor"] = lambda: _floor(x)
    torch.manual_seed(seed)
    layer = S4D(config["d_model"], config["d_state"]).to(dev)
    u = _input(T, config["ssm_batch"], config["d_model"], seed, dev)
    for p in config["scan_providers"]:
        builders[f"scan[{p}]"] = lambda p=p: _scan(p, layer, u)
    for p in config["s5_providers"]:
        builders[f"s5[{p}]"] = lambda p=p: _s5(p, T, config, dev)
    rows = _measure_rows(builders, config, dev)
    _add_ratio(rows, "floor", "over_floor", lambda k: k.startswith(("bpsn", "floor")))
    _add_ratio(rows, "scan[fft]", "over_fft", lambda k: k.startswith("scan"))
    _add_ratio(rows, "s5[torch]", "over_torch", lambda k: k.startswith("s5"))
    return rows


def _add_ratio(rows: dict, base: str, name: str, applies: Callable[[str], bool]) -> None:
    ref = rows.get(base, {}).get("median_ms")
    for key, row in rows.items():
        if ref and applies(key) and "median_ms" in row:
            row[name] = row["median_ms"] / ref


# -- SpikingJelly, one process per implementation ----------------------------------------------


def _sj_rows(config: dict, impl: str) -> dict[str, dict]:
    """``{str(T): row}`` of ``sj_lif[impl]``, measured by `sj_worker` in a child process."""
    import bpsn_ext

    root = os.path.dirname(os.path.dirname(os.path.abspath(bpsn_ext.__file__)))
    env = {**os.environ, SJ_VARIABLE: impl}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-c", "from bpsn_ext.bench.gpu_bench import sj_worker; sj_worker()"]
    done = subprocess.run(
        cmd, input=json.dumps(config), capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        row = {"unavailable": f"unavailable: {lines[-1]}"}
        return {str(T): dict(row) for T in config["lengths"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def sj_worker() -> None:
    """Child-process entry of the ``sj_lif`` rows: reads the run's config (JSON) from stdin,
    prints ``{str(T): row}`` as one JSON line.  The implementation is the one that
    ``SJ_LIF_CUDA_IMPLEMENTATION`` names in this process's environment."""
    config = json.loads(sys.stdin.read())
    dev = torch.device(config["device"])
    from spikingjelly.activation_based import functional, neuron, surrogate

    if dev.type == "cuda":
        import spikingjelly._ops.lif  # noqa: F401 - SpikingJelly 2.0's selected implementations
    out = {}
    for T in config["lengths"]:
        x = _input(T, config["batch"], config["features"], config["seed"], dev)
        lif = neuron.LIFNode(tau=2.0, step_mode="m", surrogate_function=surrogate.ATan()).to(dev)

        def forward(v, lif=lif):
            functional.reset_net(lif)
            return lif(v)

        rows = _measure_rows({"lif": lambda x=x: _fwd_bwd(forward, x, ())}, config, dev)
        row = rows["lif"]
        row["implementation"] = os.environ.get(SJ_VARIABLE, "auto") if dev.type == "cuda" else (
            "cpu (the variable selects among CUDA implementations only)"
        )  # fmt: skip
        out[str(T)] = row
    print(json.dumps(out))


# -- the run -----------------------------------------------------------------------------------


def run(
    lengths: Sequence[int] = (512, 2048, 8192),
    batch: int = 8,
    features: int = 256,
    ssm_batch: int = 8,
    d_model: int = 128,
    d_state: int = 32,
    repeats: int = 5,
    warmup: int = 1,
    bpsn_methods: Sequence[str] = BPSN_METHODS,
    sj_implementations: Sequence[str] = SJ_IMPLEMENTATIONS,
    scan_providers: Sequence[str] = SCAN_PROVIDERS,
    s5_providers: Sequence[str] = S5_PROVIDERS,
    device: str = "cuda",
    seed: int = 0,
    quick: bool = False,
    json_path: str | os.PathLike | None = DEFAULT_JSON,
    table_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """Measure every row for every T; print the table, write the JSON (and the table).

    Args:
        lengths, batch, features, ssm_batch, d_model, d_state: the sizes (see Shape).
        repeats, warmup: timed and untimed rounds (all rows of one T in rotation).
        bpsn_methods, sj_implementations, scan_providers, s5_providers: which rows (names as
            in the module docstring; ``()`` leaves a group out).
        device: ``cuda`` (the point of it) or ``cpu`` (a smoke test of everything but the
            device calls: the GPU-only rows then say why they are unavailable).
        quick: tiny sizes, one round (by default written to ``measure.quick_json_path``).
        json_path, table_path: where to write (None: not); existing files need ``overwrite``.

    Shape:
        neuron rows ``[T, batch, features]``; scan rows ``[T, ssm_batch, d_model]``, S4D state
        ``d_state``.

    Returns ``{"benchmark", "config", "environment", "results"}``, ``results[str(T)][row]``
    holding ``median_ms``, ``min_ms`` (and the other `time_fns` statistics),
    ``peak_memory_bytes``, ``over_floor`` / ``over_fft`` / ``over_torch``, or ``unavailable``.

    Example:
        >>> report = run(device="cpu", quick=True, json_path=None, verbose=False)  # doctest: +SKIP
    """
    config = _config(dict(locals()))
    if quick and isinstance(json_path, measure.DefaultJson):
        json_path = measure.quick_json_path(json_path)  # never over the committed results
    _refuse_existing(json_path, table_path, overwrite)
    dev = torch.device(config["device"])
    report = {"benchmark": "gpu", "config": config, "environment": measure.environment(dev)}
    report["results"] = _measure(config, dev)
    measure.publish_report(report, json_path, verbose, format_report)
    if table_path is not None:
        with atomic_open(table_path) as f:
            f.write(format_report(report) + "\n")
    return report


def _config(args: dict) -> dict:
    """The run's settings (as the JSON records them) from `run`'s arguments; checked."""
    lists = ("bpsn_methods", "sj_implementations", "scan_providers", "s5_providers")
    sizes = ("batch", "features", "ssm_batch", "d_model", "d_state", "repeats", "warmup")
    config = {
        "lengths": sorted({int(T) for T in args["lengths"]}),
        **{k: args[k] for k in sizes},
        **{k: list(args[k]) for k in lists},
        "device": str(torch.device(args["device"])),
        "seed": args["seed"],
        "quick": args["quick"],
        "pass": "forward + backward (output.backward with a fixed random gradient)",
    }
    if args["quick"]:
        config.update({k: list(v) if isinstance(v, tuple) else v for k, v in QUICK.items()})
    _check(config)
    return config


def _measure(config: dict, dev: torch.device) -> dict:
    """``{str(T): {row: ...}}``: this process's rows, then SpikingJelly's from its workers."""
    results = {str(T): _measure_T(T, config, dev) for T in config["lengths"]}
    for impl in config["sj_implementations"]:
        key = f"sj_lif[{impl}]"
        for T, row in _sj_rows(config, impl).items():
            results[T][key] = row
            _add_ratio(results[T], "floor", "over_floor", lambda k, key=key: k == key)
    return results


def _check(config: dict) -> None:
    """Raise `ValueError` naming the first size or row name out of range."""
    sizes = ("batch", "features", "ssm_batch", "d_model", "d_state", "repeats")
    measure.check_positive_ints(
        [*((k, config[k]) for k in sizes), *(("T", T) for T in config["lengths"])]
    )
    if not config["lengths"]:
        raise ValueError("lengths must name at least one T")
    if config["warmup"] < 0:
        raise ValueError(f"warmup must be >= 0, got {config['warmup']}")
    if config["d_state"] % 2:
        raise ValueError(f"d_state must be even (complex-conjugate pairs), got {config['d_state']}")
    for name, allowed in (("sj_implementations", SJ_IMPLEMENTATIONS + ("torch",)),
                          ("scan_providers", SCAN_PROVIDERS),
                          ("s5_providers", S5_PROVIDERS)):  # fmt: skip
        unknown = [v for v in config[name] if v not in allowed]
        if unknown:
            raise ValueError(f"{name}: unknown {unknown}; expected some of {allowed}")


def _refuse_existing(json_path, table_path, overwrite: bool) -> None:
    for path in (json_path, table_path):
        if path is not None and os.path.exists(path) and not overwrite:
            raise OutputExistsError(
                "{path} holds earlier results; pass {overwrite:True} to replace it",
                path=os.fspath(path),
            )


# -- the table ---------------------------------------------------------------------------------


def _cell(row: dict | None, ratio: str, notes: list[str]) -> str:
    if row is None:
        return "-"
    if "unavailable" in row:
        if row["unavailable"] not in notes:
            notes.append(row["unavailable"])
        return f"n/a [{notes.index(row['unavailable']) + 1}]"
    text = f"{row['median_ms']:.3f} (min {row['min_ms']:.3f})"
    return text + (f" {row[ratio]:.2f}x" if ratio in row else "")


def format_report(report: dict) -> str:
    """One table: a row per provider, a column per T (median and min ms, the ratio to the
    floor or to the FFT form), the peak memory at the largest T; the rows that could not run
    point to a note that says why."""
    cfg, results = report["config"], report["results"]
    lengths = [str(T) for T in cfg["lengths"]]
    keys = list(dict.fromkeys(k for T in lengths for k in results[T]))
    rows, notes = [], []
    for key in keys:
        ratio = RATIOS.get(key.split("[")[0], "over_floor")
        top = results[lengths[-1]].get(key) or {}
        mem = top.get("peak_memory_bytes")
        rows.append([key, *(_cell(results[T].get(key), ratio, notes) for T in lengths),
                     measure.format_bytes(mem) if mem is not None else "-"])  # fmt: skip
    title = (
        f"forward+backward ms on {cfg['device']} ({report['environment']['device']}): neurons "
        f"[T, {cfg['batch']}, {cfg['features']}] (x: time over the floor), S4D scan "
        f"[T, {cfg['ssm_batch']}, {cfg['d_model']}], d_state {cfg['d_state']} (x: time over "
        f"the FFT form), S5 scan [T, {cfg['ssm_batch']}, {cfg['d_state']}] complex (x: time "
        f"over torch's); median of {cfg['repeats']}, rows of one T in rotation"
    )
    headers = ["row", *(f"T={T}" for T in lengths), f"peak mem T={lengths[-1]}"]
    lines = [title, measure.format_table(headers, rows)]
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of this benchmark (unset flags keep `run`'s defaults)."""
    S, pos = argparse.SUPPRESS, int_at_least(1)
    parser.add_argument("--lengths", type=pos, nargs="+", default=S, help="T (512 2048 8192)")
    parser.add_argument("--batch", type=pos, default=S, help="neuron batch (8)")
    parser.add_argument("--features", type=pos, default=S, help="neuron channels (256)")
    parser.add_argument("--ssm-batch", dest="ssm_batch", type=pos, default=S, help="scan batch (8)")
    parser.add_argument("--d-model", dest="d_model", type=pos, default=S, help="S4D channels (128)")
    parser.add_argument("--d-state", dest="d_state", type=pos, default=S, help="S4D state (32)")
    parser.add_argument("--repeats", type=pos, default=S, help="timed rounds (5)")
    parser.add_argument("--warmup", type=int_at_least(0), default=S, help="untimed rounds (1)")
    parser.add_argument("--bpsn-methods", dest="bpsn_methods", nargs="*", default=S,
                        help=f"BPSN(method=...) rows ({' '.join(BPSN_METHODS)})")  # fmt: skip
    parser.add_argument("--sj-implementations", dest="sj_implementations", nargs="*",
                        choices=SJ_IMPLEMENTATIONS + ("torch",), default=S,
                        help=f"{SJ_VARIABLE} values ({' '.join(SJ_IMPLEMENTATIONS)})")  # fmt: skip
    parser.add_argument(
        "--scan-providers",
        dest="scan_providers",
        nargs="*",
        choices=SCAN_PROVIDERS,
        default=S,
        help="S4D scan rows (all)",
    )
    parser.add_argument("--s5-providers", dest="s5_providers", nargs="*",
                        choices=S5_PROVIDERS, default=S, help="S5 scan rows (all)")  # fmt: skip
    parser.add_argument("--device", default=S, help="torch device (cuda; cpu: a smoke test)")
    parser.add_argument("--seed", type=int, default=S, help="data and weight seed (0)")
    parser.add_argument("--quick", action="store_true", default=S, help="tiny sizes, one round")
    parser.add_argument("--table", dest="table_path", default=S, help="also write the table here")
    measure.add_json_arguments(parser, DEFAULT_JSON)


def run_from_args(args: argparse.Namespace) -> dict:
    """`run` with the flags that `add_arguments` parsed into ``args``."""
    names = ("lengths", "batch", "features", "ssm_batch", "d_model", "d_state", "repeats",
             "warmup", "bpsn_methods", "sj_implementations", "scan_providers", "s5_providers",
             "device", "seed", "quick", "json_path", "table_path", "overwrite")  # fmt: skip
    with flag_errors("bench gpu"):
        return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})
