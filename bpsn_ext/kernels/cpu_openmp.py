"""Whether the native BPSN CPU kernel can share torch's OpenMP thread team.

A kernel call that starts its own threads pays each thread's start-up (about 0.1 ms on an idle
core, milliseconds on a busy one) in every forward and backward pass; at ``[512, 8, 256]`` that
is the whole gain of a second thread.  torch's team is already running (its threads wait for
work after every torch operator), so a kernel built with ``-fopenmp`` against *the same*
runtime starts its work at once, and no second pool competes with torch's for the cores.

"The same runtime" is checked, not assumed: torch must run on GNU OpenMP, loaded from a file
named ``libgomp.so.1`` (the name a ``-fopenmp`` build asks the loader for, so the loader hands
back the library already in the process instead of loading a second one).  Anything else (macOS,
Intel or LLVM OpenMP, a renamed bundled copy, ``BPSN_EXT_CPU_KERNEL_OPENMP=0``) builds the
pthread variant, which starts its threads per call.  A forked child (a ``fork`` data-loader
worker) cannot use the OpenMP team it inherited, so there the kernel starts threads of its own
(`bpsn_ext.kernels.cpu_native` tells the library after a fork).
"""

from __future__ import annotations

import os
import sys

import torch

from bpsn_ext.util.env import env_on

__all__ = ["ENV_OPENMP", "LIBGOMP", "OPENMP_FLAGS", "openmp_flags", "gomp_libraries"]

ENV_OPENMP = "BPSN_EXT_CPU_KERNEL_OPENMP"
LIBGOMP = "libgomp.so.1"
OPENMP_FLAGS = ("-fopenmp", "-DBPSN_OPENMP")  # what the OpenMP build adds


def gomp_libraries() -> set[str]:
    """The paths of the GNU OpenMP libraries mapped into this process (Linux; else empty)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if "libgomp" in line}
    except OSError:
        return set()
    return {p for p in paths if os.path.basename(p).startswith("libgomp")}


def openmp_flags() -> tuple[str, ...]:
    """`OPENMP_FLAGS` when the kernel can share torch's OpenMP runtime (see the module
    docstring), else ``()``."""
    if not env_on(ENV_OPENMP) or not sys.platform.startswith("linux"):
        return ()
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return ()
    gomp = gomp_libraries()
    if len(gomp) != 1 or os.path.basename(next(iter(gomp))) != LIBGOMP:
        return ()
    return OPENMP_FLAGS
