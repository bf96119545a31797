"""Checks of plain (non-tensor) arguments that turn a bad value into a clear error naming the
argument and what was expected: `check_float` (hyper-parameters are Python floats by
convention) and `check_int`."""

from __future__ import annotations

import math

__all__ = ["check_float", "check_int"]


def check_float(name: str, value: object, *, positive: bool = False, finite: bool = True) -> float:
    """Return ``value`` if it is a Python float (hyper-parameters are floats by convention).

    Example:
        >>> check_float("tau", 2)
        Traceback (most recent call last):
        TypeError: tau must be a Python float, got int 2; write 2.0
    """
    if isinstance(value, bool) or not isinstance(value, float):
        hint = (
            f"; write {float(value)!r}"
            if isinstance(value, int) and not isinstance(value, bool)
            else ""
        )
        raise TypeError(
            f"{name} must be a Python float, got {type(value).__name__} {value!r}{hint}"
        )
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_int(name: str, value: object, *, minimum: int = 1, none_ok: bool = False):
    """Return ``value`` if it is an int >= ``minimum`` (a bool is not taken for an int), or
    None where ``none_ok``; else a `ValueError` naming ``name``.

    Example:
        >>> check_int("batch", 0)
        Traceback (most recent call last):
        ValueError: batch must be a positive int, got 0
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}{' or None' if none_ok else ''}, got {value!r}")
    return value
