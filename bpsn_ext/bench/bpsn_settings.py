"""What one run of the BPSN benchmark measures: its defaults and the settings record."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bpsn_ext.bench.measure import check_positive_ints
from bpsn_ext.util.arguments import check_int

__all__ = [
    "BenchSettings",
    "repeats_for",
    "warmup_for",
    "floor_rounds_for",
    "default_bpsn",
    "NEURON_KEYS",
    "QUICK_SKIP",
    "FAST_KEYS",
    "BASE",
]

DEFAULT_T = (128, 512, 2048, 8192)
QUICK_T = (128, 512)
DEFAULT_REPEATS = 10
QUICK_REPEATS = 2
DEFAULT_WARMUP = 1
QUICK_WARMUP = 0  # the peak-memory pass still runs every neuron once before timing
DEFAULT_FLOOR_ROUNDS = 30  # the cheap rows (BPSN, compiled BPSN, floor): at least this many
QUICK_FLOOR_ROUNDS = 4
FLOOR_WARMUP = 2  # untimed rounds of the cheap rows, whatever T
MATMUL_MAX_T = 512  # the bpsn_matmul row: 4-5 s per fwd+bwd at T = 512 on one core
QUICK_MATMUL_MAX_T = 128
FULL_REPEATS_UP_TO_T = 256  # repeats shrink as 1/T beyond this T (see repeats_for)

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
    "bpsn_kernels",
    "floor",
    "floor_fresh",
)
QUICK_SKIP = ("bpsn_compiled",)  # a minute of compiling per T
FAST_KEYS = (
    "bpsn",
    "bpsn_compiled",
    "bpsn_kernels",
    "floor",
    "floor_fresh",
)  # timed with `floor_rounds_for` rounds
BASE = "bpsn"


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


def floor_rounds_for(T: int, repeats: int, floor_rounds: int) -> int:
    """Timed rounds of the cheap rows (`FAST_KEYS`): never fewer than the others get, and at
    least ``floor_rounds``, so that their min and median (the floor ratio) are stable."""
    return max(repeats_for(T, repeats), floor_rounds)


def _or_default(value: int | None, quick: bool, quick_value: int, default: int) -> int:
    """`value` as given, else the `quick` or the full run's default."""
    if value is not None:
        return value
    return quick_value if quick else default


def default_bpsn(features: int) -> nn.Module:
    """The ``bpsn`` row's neuron: ``BPSN(features)`` with every default."""
    from bpsn_ext import BPSN

    return BPSN(features)


def _describe_default(features: int) -> str:
    module = default_bpsn(features)
    return f"BPSN({module.extra_repr()}, method={module.method!r})"


@dataclass(frozen=True)
class BenchSettings:
    """What one run measures: `run`'s arguments with the `quick` defaults filled in."""

    Ts: tuple[int, ...]
    batch: int
    features: int
    spatial: int
    repeats: int
    warmup: int
    floor_rounds: int
    matmul_max_T: int
    keys: tuple[str, ...]  # the neurons, in `NEURON_KEYS` order or as asked
    seed: int

    @classmethod
    def of(
        cls,
        quick: bool,
        neurons: Sequence[str] | None,
        T: Sequence[int] | None,
        batch: int,
        features: int,
        spatial: int,
        repeats: int | None,
        warmup: int | None,
        floor_rounds: int | None,
        matmul_max_T: int | None,
        seed: int,
    ) -> BenchSettings:
        """The settings of `run`'s arguments (None: the default of a quick or full run)."""
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
            floor_rounds=_or_default(floor_rounds, quick, QUICK_FLOOR_ROUNDS, DEFAULT_FLOOR_ROUNDS),
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
                ("floor_rounds", self.floor_rounds),
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
            "floor_rounds_per_T": {
                str(t): floor_rounds_for(t, repeats, self.floor_rounds) for t in Ts
            },
            "floor_warmup": FLOOR_WARMUP,
            "fast_rows": [k for k in FAST_KEYS if k in self.keys],
            "quick": quick,
            "neurons": list(self.keys),
            "matmul_max_T": self.matmul_max_T,
            "threads": threads,
            "device": str(dev),
            "seed": self.seed,
            "statistic": "median_ms",
            "bpsn_default": _describe_default(self.features) if BASE in self.keys else None,
        }
