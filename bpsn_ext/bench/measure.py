"""Wall-clock timing, peak memory of a call, atomic JSON output and plain-text tables."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from typing import Any

import torch

from bpsn_ext.util.arguments import check_int
from bpsn_ext.util.files import write_json_atomic
from bpsn_ext.util.tables import format_bytes, format_table

__all__ = [
    "DefaultJson",
    "quick_json_path",
    "time_fn",
    "time_fns",
    "peak_memory_bytes",
    "write_json_atomic",
    "format_table",
    "format_bytes",
    "check_positive_ints",
    "torch_threads",
]

Device = str | torch.device


def _is_cuda(device: Device) -> bool:
    return torch.device(device).type == "cuda"


def _sync(device: Device) -> None:
    if _is_cuda(device):
        torch.cuda.synchronize(device)


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
        "std_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
        "repeats": len(times),
    }


def _per_name(value: int | Mapping[str, int], names: Iterable[str]) -> dict[str, int]:
    """One count for every name: ``value`` itself, or its entry for that name."""
    return {n: value if isinstance(value, int) else value[n] for n in names}


def _spread(count: int, rounds: int) -> list[bool]:
    """Which of ``rounds`` rounds a function with ``count`` calls takes part in: spread evenly
    (``count == rounds``: every round)."""
    return [(i + 1) * count // rounds > i * count // rounds for i in range(rounds)]


def time_fns(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int | Mapping[str, int] = 10,
    warmup: int | Mapping[str, int] = 2,
    device: Device = "cpu",
) -> dict[str, dict[str, float]]:
    """Time several functions in rotation (round r calls each once), after ``warmup`` rounds.

    Interleaving spreads slow periods of a shared machine over all functions, so their
    ratios stay meaningful.  ``repeats`` / ``warmup`` may be a mapping with a count per
    function: the rotation then has as many rounds as the largest count, and a function with
    fewer calls takes part in rounds spread evenly over them (cheap functions get more
    samples while still interleaved with the slow ones).  Returns ``{name: time_fn-style
    statistics}``.
    """
    reps, warm = _per_name(repeats, fns), _per_name(warmup, fns)
    if any(r < 1 for r in reps.values()) or any(w < 0 for w in warm.values()):
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    rounds_w, rounds_r = max(warm.values(), default=0), max(reps.values(), default=0)
    warm_in = {n: _spread(w, rounds_w) for n, w in warm.items()}
    for i in range(rounds_w):
        for name, fn in fns.items():
            if warm_in[name][i]:
                fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    timed_in = {n: _spread(r, rounds_r) for n, r in reps.items()}
    for i in range(rounds_r):
        for name, fn in fns.items():
            if not timed_in[name][i]:
                continue
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: _stats(t) for name, t in times.items()}


def time_fn(
    fn: Callable[[], Any], repeats: int = 10, warmup: int = 2, device: Device = "cpu"
) -> dict[str, float]:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls.

    On CUDA the device is synchronised around every call, so the times include the kernels.
    Returns ``median_ms``, ``min_ms``, ``mean_ms``, ``max_ms``, ``std_ms`` and ``repeats``.
    """
    return time_fns({"fn": fn}, repeats=repeats, warmup=warmup, device=device)["fn"]


def _cpu_memory_events(prof: torch.profiler.profile) -> list[tuple[int, int]]:
    """``(time, bytes)`` of every CPU allocation (+) and free (-) the profiler saw."""
    try:  # every allocator event, also those made inside an op (needs the Kineto results)
        events = prof.profiler.kineto_results.events()
        return [
            (e.start_ns(), e.nbytes())
            for e in events
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        ]
    except AttributeError:  # older/other profiler: net allocation of each op at its start
        return [
            (int(e.time_range.start * 1e3), e.self_cpu_memory_usage)
            for e in prof.events()
            if e.self_cpu_memory_usage
        ]


def _running_peak(events: list[tuple[int, int]]) -> int:
    peak = total = 0
    for _, nbytes in sorted(events, key=lambda ev: ev[0]):
        total += nbytes
        peak = max(peak, total)
    return peak


def peak_memory_bytes(fn: Callable[[], Any], device: Device = "cpu") -> int:
    """Peak bytes allocated by ``fn()`` above what was allocated when it started.

    * CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated`` minus the
      allocation at entry (the caching allocator's reserved-but-free memory is not counted).
    * CPU: ``fn`` runs once under ``torch.profiler.profile(activities=[CPU],
      profile_memory=True)``; the allocation (+bytes) and free (-bytes) events are put in
      chronological order and the peak of their running sum is returned (a 100 MB tensor
      allocated inside ``fn`` gives ~1e8).  The profiler does not record frees of blocks
      allocated before it started, so these never lower the sum; the result is the peak
      of memory allocated by ``fn`` itself (>= 0).  Allocations by code that bypasses
      PyTorch's allocator (e.g. NumPy) are not seen.

    Call it after a warm-up (e.g. after the first optimizer step created its state) to
    measure the steady state.  ``fn`` runs once (slower on CPU, due to the profiler).
    """
    if _is_cuda(device):
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return max(0, torch.cuda.max_memory_allocated(device) - base)
    activities = [torch.profiler.ProfilerActivity.CPU]
    # the profiler's start/stop lines and allocator warnings are printed from C++
    with (
        _native_output_silenced(),
        torch.profiler.profile(activities=activities, profile_memory=True) as prof,
    ):
        fn()
    return _running_peak(_cpu_memory_events(prof))


@contextlib.contextmanager
def _native_output_silenced():
    """File descriptors 1 and 2 go to /dev/null inside (C++ prints that Python cannot catch)."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def add_json_arguments(parser: argparse.ArgumentParser, default_path: str) -> None:
    """``--json PATH`` / ``--no-json`` (into ``json_path``); unset, ``run`` keeps its default."""
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--json", dest="json_path", default=argparse.SUPPRESS, help=f"result file ({default_path})"
    )
    # SUPPRESS here too: argparse would otherwise set json_path=None when neither flag is given
    out.add_argument(
        "--no-json",
        dest="json_path",
        action="store_const",
        const=None,
        default=argparse.SUPPRESS,
        help="do not write a result file",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --json, --plot or --table file (the default result file is "
        "always updated)",
    )


class DefaultJson(str):
    """A result path used because none was asked for (a benchmark's committed default).

    ``publish_report`` sends a ``--quick`` run's report elsewhere (``quick_json_path``) instead
    of this path, so smoke-test numbers never replace the committed results; a path the caller
    gives (a plain ``str``) is always used as given.
    """


def quick_json_path(default: str | os.PathLike) -> str:
    """Where a ``--quick`` run writes when no ``--json`` was given: the system temporary
    folder, ``bpsn_ext-quick-<uid>/<name>.json``."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return os.path.join(
        tempfile.gettempdir(), f"bpsn_ext-quick-{uid}", os.path.basename(os.fspath(default))
    )


def publish_report(
    report: dict,
    json_path: str | os.PathLike | None,
    verbose: bool,
    format_report: Callable[[dict], str],
) -> dict:
    """Print the table (``verbose``) and write the JSON atomically (unless ``json_path`` is
    None; a quick run's report goes to ``quick_json_path`` unless a path was given); returns
    ``report``."""
    if verbose:
        print(format_report(report))
    if isinstance(json_path, DefaultJson) and report.get("config", {}).get("quick"):
        json_path = quick_json_path(json_path)
    if json_path is not None:
        write_json_atomic(json_path, report)
        if verbose:
            print(f"wrote {json_path}")
    return report


def check_positive_ints(named: Iterable[tuple[str, Any]]) -> None:
    """Raise `ValueError` naming the first `(name, value)` whose value is not an int >= 1
    (a bool is not taken for an int).

    Example:
        >>> check_positive_ints([("batch", 8), ("repeats", 2)])
    """
    for name, value in named:
        check_int(name, value)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """`torch.set_num_threads(threads)` inside the block (None: unchanged), restored after it.

    Example:
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def package_version(dist: str) -> str | None:
    """The installed version of ``dist``, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    """Versions, CPU/GPU name and thread counts, recorded in every benchmark's JSON."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "spikingjelly": package_version("spikingjelly"),
        "snntorch": package_version("snntorch"),
        "bpsn_ext": package_version("bpsn-ext"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpus_available": cpus,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
