"""Energy per operation: `EnergyModel` and the 45 nm presets (Horowitz, ISSCC 2014).

| preset | MAC (mult + add) | AC (add) | elementwise mult | elementwise add |
|---|---|---|---|---|
| ``fp32`` (default, alias ``45nm``) | 4.6 pJ | 0.9 pJ | 3.7 pJ | 0.9 pJ |
| ``fp16`` | 1.5 pJ | 0.4 pJ | 1.1 pJ | 0.4 pJ |
| ``int8`` | 0.23 pJ | 0.03 pJ | 0.2 pJ | 0.03 pJ |

A leaky state update ``h = lam * h + x`` is counted as one multiply and one add, so it costs
exactly one MAC.  A nonlinearity (sigmoid, GELU, exp, rsqrt, ...) is charged ``e_nonlin``,
one MAC by default: a lower bound, since hardware evaluates it with several operations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["EnergyModel", "PRESETS", "resolve_energy_model"]


@dataclass(frozen=True)
class EnergyModel:
    """Energy in picojoules per operation of each kind (see the module docstring)."""

    e_mac: float = 4.6
    e_ac: float = 0.9
    e_mul: float = 3.7
    e_add: float = 0.9
    e_nonlin: float = 4.6
    name: str = "fp32 45nm"

    def __post_init__(self) -> None:
        for field in ("e_mac", "e_ac", "e_mul", "e_add", "e_nonlin"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"EnergyModel.{field} must be a number >= 0, got {value!r}")

    @classmethod
    def preset(cls, name: str) -> EnergyModel:
        """``"fp32"`` (also ``"45nm"``, ``"fp32-45nm"``), ``"fp16"`` or ``"int8"``."""
        key = name.lower().replace("_", "-") if isinstance(name, str) else name
        if key not in PRESETS:
            raise ValueError(
                f"unknown energy preset {name!r}; choose one of {sorted(PRESETS)} or pass an "
                "EnergyModel(e_mac=..., e_ac=...)"
            )
        return PRESETS[key]

    def replace(self, **changes: float) -> EnergyModel:
        """A copy with some costs changed, e.g. ``EnergyModel.preset('fp16').replace(e_ac=0.3)``."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_FP32 = EnergyModel()
_FP16 = EnergyModel(e_mac=1.5, e_ac=0.4, e_mul=1.1, e_add=0.4, e_nonlin=1.5, name="fp16 45nm")
_INT8 = EnergyModel(e_mac=0.23, e_ac=0.03, e_mul=0.2, e_add=0.03, e_nonlin=0.23, name="int8 45nm")

PRESETS: Mapping[str, EnergyModel] = {
    "fp32": _FP32,
    "45nm": _FP32,
    "fp32-45nm": _FP32,
    "fp16": _FP16,
    "int8": _INT8,
}


def resolve_energy_model(energy: str | EnergyModel | Mapping) -> EnergyModel:
    """A preset name, an `EnergyModel`, or a dict of its fields."""
    if isinstance(energy, EnergyModel):
        return energy
    if isinstance(energy, str):
        return EnergyModel.preset(energy)
    if isinstance(energy, Mapping):
        unknown = set(energy) - {f.name for f in dataclasses.fields(EnergyModel)}
        if unknown:
            raise ValueError(f"unknown EnergyModel fields {sorted(unknown)}")
        return EnergyModel(**energy)
    raise TypeError(
        f"energy must be a preset name, an EnergyModel or a dict, got {type(energy).__name__}"
    )
