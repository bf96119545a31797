"""Sequence-length scaling of BPSN against sequential and parallel spiking neurons.

For every T (default 128, 512, 2048, 8192) one input ``x ~ N(0.5, 1)`` of shape
``[T, batch, features]`` (float32, fixed seed; with ``spatial=S`` the conv-shaped
``[T, batch, features, S, S]``, channels at dimension 2) is fed to each neuron alone (no
layers), and

* the forward time (under ``torch.no_grad``),
* the forward+backward time (``y.backward(g)`` with a fixed dense ``N(0, 1)`` gradient ``g``,
  as a layer inside a network receives, on a fresh ``requires_grad`` leaf that shares ``x``'s
  storage; parameter gradients are dropped before each call), and
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
* ``bpsn_kernels``: the default BPSN's two native CPU kernels alone
  (`neuron_zoo.NativeKernels`): the forward kernel, and for fwd+bwd the forward and then the
  backward kernel with the same output gradient, every output written into arrays allocated
  once, with no autograd around them.  Its time over ``bpsn``'s splits the eager pass into
  the kernels' own work and the rest (fresh outputs, autograd, Python).  CPU only, and only
  where the native kernel builds (else a skipped row);
* ``floor``: not a neuron but the memory floor: the time to stream the bytes of a forward (3
  arrays of the input's size: read x, write spikes and a membrane) and of a forward+backward
  (6 distinct arrays: also read the output's gradient and the membrane, write the input's),
  as ``torch.add(a, b, out=c)`` over six distinct arrays (so caches do not flatter it).  The
  default BPSN moves fewer: its native kernel keeps no membrane (x and one checkpoint row per
  32 steps instead), so a forward reads x and writes spikes, and its backward reads x, the
  gradient and the checkpoints and writes the input's gradient.  The headline gives BPSN's
  time over the floor (median and min times) and the compiled BPSN's over eager;
* ``floor_fresh``: the same streams, but each written array is a new tensor, as an operator's
  outputs are (large ones come fresh from the OS and are zeroed there first): the floor plus
  the cost of fresh memory, for reading the floor ratio.  It has no target.

SpikingJelly neurons get ``functional.reset_net`` before every call.  Neurons a library lacks
(PSN, SlidingPSN in SpikingJelly 0.0.0.0.14; StateLeaky in snnTorch 0.9.4) and the T limits
above appear in the table as skipped rows with a note.

Sequential neurons need seconds per call at T = 8192, so the repeats shrink with T
(``repeats_for``).  The peak-memory pass runs first; beyond T = 256 it and one untimed forward
per neuron replace the full warm-up rounds (``warmup_for``).  The cheap rows whose ratios are
read (``bpsn``, ``bpsn_compiled``, ``bpsn_kernels``, ``floor``, ``floor_fresh``) get at least
``floor_rounds`` timed rounds (30; quick: 4) after 2 untimed ones, spread over the same
rotation as the slow rows, so the floor is measured as often and under the same load as what
is compared with it.

Modules: `bpsn_settings` (defaults, the settings record), `neuron_zoo` (the rows),
`bpsn_rounds` (one T: memory pass and timed rotation), `bpsn_report` (headline, table).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

import torch

from bpsn_ext.bench.bpsn_report import TARGET_OVER_FLOOR, TARGET_SPEEDUP, format_report, headline
from bpsn_ext.bench.bpsn_rounds import measure_T
from bpsn_ext.bench.bpsn_settings import (
    NEURON_KEYS,
    QUICK_SKIP,
    BenchSettings,
    repeats_for,
)
from bpsn_ext.bench.measure import (
    DefaultJson,
    add_json_arguments,
    environment,
    publish_report,
    torch_threads,
)
from bpsn_ext.bench.neuron_zoo import neurons as neuron_rows
from bpsn_ext.util.cli_args import int_at_least, positive_int

__all__ = [
    "add_arguments",
    "run_from_args",
    "run",
    "format_report",
    "repeats_for",
    "NEURON_KEYS",
    "QUICK_SKIP",
    "DEFAULT_JSON",
    "TARGET_SPEEDUP",
    "TARGET_OVER_FLOOR",
]

DEFAULT_JSON = DefaultJson(os.path.join("benchmarks", "results", "bpsn.json"))


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


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
    floor_rounds: int | None = None,
) -> dict:
    """Benchmark BPSN against the other neurons for every T; print a table, write JSON.

    ``spatial=S`` > 0 feeds conv-shaped inputs ``[T, batch, features, S, S]`` (BPSN's
    channels at dimension 2; neurons that take only ``[T, B, C]``, StateLeaky, are skipped).

    ``quick`` changes the defaults to ``T = (128, 512)``, 2 repeats, no warm-up round and
    ``matmul_max_T = 128`` (explicit arguments still win).  ``repeats`` / ``warmup`` are the
    timed / untimed rounds up to T = 256 (fewer beyond, see ``repeats_for`` and
    ``warmup_for``); ``neurons`` picks a subset of ``NEURON_KEYS`` (default all);
    ``matmul_max_T`` is the largest T of the ``bpsn_matmul`` row (default 512);
    ``floor_rounds`` the least number of timed rounds of the cheap rows (30); ``threads``
    sets ``torch.set_num_threads`` for the run (restored afterwards; default: unchanged).
    Returns the JSON-able report ``{"benchmark", "config", "environment", "results",
    "headline", "elapsed_s"}``; ``results`` is a list of rows ``{"neuron", "label", "T",
    "status" ("ok"/"skipped"), "note", "fwd", "fwd_bwd" (time statistics, ms),
    "peak_memory_bytes", "firing_rate", "speedup_fwd", "speedup_fwd_bwd"}``, where a speed-up
    is that neuron's median time over BPSN's (> 1: BPSN is faster).  ``json_path=None`` skips
    the file.
    """
    given = (T, batch, features, spatial, repeats, warmup, floor_rounds, matmul_max_T, seed)
    s = BenchSettings.of(quick, neurons, *given)
    s.check(threads)
    dev = torch.device(device)
    start, load_start = time.perf_counter(), _load_average()
    specs = neuron_rows(s.keys, s.matmul_max_T)
    with torch_threads(threads):
        env = environment(dev)
        env["load_average_start"] = load_start
        rows = [row for t in s.Ts for row in measure_T(specs, t, s, dev, verbose)]
    env["load_average_end"] = _load_average()
    report = {
        "benchmark": "bpsn",
        "config": s.config(quick, threads, dev),
        "environment": env,
        "results": rows,
        "headline": headline(rows),
        "elapsed_s": time.perf_counter() - start,
    }
    return publish_report(report, json_path, verbose, format_report)


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
        "--floor-rounds",
        dest="floor_rounds",
        type=positive_int,
        default=S,
        help="least timed rounds of the cheap rows: bpsn, bpsn_compiled, bpsn_kernels, floor, "
        "floor_fresh (30; --quick: 4)",
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
        "floor_rounds",
        "threads",
        "device",
        "seed",
        "json_path",
    )
    return run(**{n: getattr(args, n) for n in names if hasattr(args, n)})
