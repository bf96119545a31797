"""The options of one BPSN, as one frozen record shared by the module, the kernels and configs.

`BPSNOptions` holds every constructor option of `bpsn_ext.BPSN` except the surrogate (an
object); it validates itself, so a run config or a command line that builds one fails where
the bad value is given, not at the first forward.  The kernels take tensors, this record and
the surrogate's constants (`SurrogateArgs`), never a module.  `BPSNParams` carries the tensors
of one call: the decays, the forward branch's fusion weight and the threshold.

The leak quantity has one name along its path: ``decay_init`` (the initial value), the
parameters ``decay_f_logit`` / ``decay_b_logit``, the decays ``decay_f`` / ``decay_b`` that
the functional code and every kernel take.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch

from bpsn_ext.core.bpsn_functional import FUSIONS, KERNELS, RUNAWAY
from bpsn_ext.core.channels import check_channel_dim_arg
from bpsn_ext.core.leaky_integrate import METHODS
from bpsn_ext.util.arguments import check_float, check_int

__all__ = ["BPSNOptions", "BPSNParams", "SurrogateArgs", "BPSN_METHODS"]

# "native": the compiled CPU kernel; "triton": the Triton kernels; the rest integrate in torch
BPSN_METHODS = METHODS + ("native", "triton")


@dataclass(frozen=True)
class BPSNOptions:
    """Every option of `bpsn_ext.BPSN` but the surrogate (see its docstring for each).

    Example:
        >>> BPSNOptions(8, fusion="gate").fusion
        'gate'
        >>> BPSNOptions(method="cuda")
        Traceback (most recent call last):
        ...
        ValueError: method must be one of ('auto', 'chunked', 'fft', 'matmul', 'loop', 'native', 'triton'), got 'cuda'
    """  # noqa: E501

    channels: int | None = None
    channel_dim: int | None = None
    kernel: str = "leak"
    window: int = 4
    fusion: str = "split"
    runaway: str = "refractory"
    refractory_steps: int = 1
    decay_init: float = 0.5
    gate_init: float = 0.5
    v_threshold: float = 1.0
    learn_decay: bool = True
    learn_gate: bool = True
    learn_threshold: bool = True
    fire_ge: bool = True
    detach_reset: bool = False
    method: str = "auto"

    def __post_init__(self) -> None:
        for name, value, options in (
            ("kernel", self.kernel, KERNELS),
            ("fusion", self.fusion, FUSIONS),
            ("runaway", self.runaway, RUNAWAY),
            ("method", self.method, BPSN_METHODS),
        ):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        check_int("channels", self.channels, none_ok=True)
        check_channel_dim_arg(self.channel_dim)
        check_int("window", self.window)
        r = self.refractory_steps
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"refractory_steps must be an int >= 1, got {r!r}")
        if self.runaway == "soft_reset" and self.kernel != "leak":
            raise ValueError("runaway='soft_reset' needs kernel='leak'")
        if self.fusion == "split" and self.channels is not None and self.channels < 2:
            raise ValueError("fusion='split' needs channels >= 2 (half forward, half backward)")
        for name in ("decay_init", "gate_init", "v_threshold"):
            check_float(name, getattr(self, name))
        if not 0.0 < self.decay_init < 1.0:
            raise ValueError(f"decay_init must lie in (0, 1), got {self.decay_init}")
        if not 0.0 <= self.gate_init <= 1.0:
            raise ValueError(f"gate_init must lie in [0, 1], got {self.gate_init}")

    @classmethod
    def parse(cls, key: str, raw: str) -> tuple[str, object]:
        """``(key, value)`` of the setting ``key=raw`` as a command line or a run config gives
        it, typed by the field: ``"2"`` is an int for ``refractory_steps``, ``"none"`` the rule
        for ``runaway`` and None for ``channels``; an unknown key raises ValueError naming the
        fields.

        Example:
            >>> BPSNOptions.parse("refractory_steps", "2")
            ('refractory_steps', 2)
        """
        kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        if key not in kinds:
            raise ValueError(f"unknown BPSN option {key!r}; the options are {tuple(kinds)}")
        kind, low = kinds[key], raw.strip().lower()
        if kind == "str":
            return key, raw
        if kind.endswith("| None") and low == "none":
            return key, None
        if kind == "bool":
            if low not in ("true", "false"):
                raise ValueError(f"{key} takes true or false, got {raw!r}")
            return key, low == "true"
        number = int if kind.startswith("int") else float
        try:
            return key, number(raw)
        except ValueError:
            raise ValueError(f"{key} takes {'an integer' if number is int else 'a number'}, "
                             f"got {raw!r}") from None  # fmt: skip

    def replace(self, **changes) -> BPSNOptions:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def refractory(self) -> int:
        """The refractory period the kernels take: ``refractory_steps``, 0 without the rule."""
        return self.refractory_steps if self.runaway == "refractory" else 0


class BPSNParams(NamedTuple):
    """The tensors of one BPSN call: decays, gate and threshold each a scalar or ``[C]``
    (``gate``, the forward branch's weight, None unless the fusion is ``"gate"`` or
    ``"split"``); the window kernel's taps ``[k]`` instead of the decays."""

    decay_f: torch.Tensor | None
    decay_b: torch.Tensor | None
    gate: torch.Tensor | None
    v_threshold: torch.Tensor
    taps_f: torch.Tensor | None = None
    taps_b: torch.Tensor | None = None


class SurrogateArgs(NamedTuple):
    """A surrogate the compiled kernels compute: ``kind`` 0 ATan, 1 Sigmoid, 2 S2NN,
    3 FastSigmoid; ``a``, ``b`` its parameters (alpha or slope, beta); the tie rule."""

    kind: int
    a: float
    b: float
    fire_ge: bool
