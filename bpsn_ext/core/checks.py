"""Input checks that turn bad arguments into clear errors (what was wrong, what was expected)."""

from __future__ import annotations

import math
import warnings

import torch

__all__ = [
    "check_float",
    "check_int",
    "check_rank",
    "check_floating",
    "check_token_ids",
    "warn_once",
]

_warned: set[str] = set()


def check_float(name: str, value: object, *, positive: bool = False, finite: bool = True) -> float:
    """Return ``value`` if it is a Python float (hyper-parameters are floats by convention)."""
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


def check_floating(name: str, x: object) -> torch.Tensor:
    """``x`` must be a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_rank(name: str, x: torch.Tensor, min_rank: int, layout: str) -> torch.Tensor:
    """``x`` must have at least ``min_rank`` dims (``layout`` names them, e.g. '[T, N, *]')."""
    if x.dim() < min_rank:
        raise ValueError(
            f"{name} must have shape {layout} (at least {min_rank} dims), "
            f"got shape {tuple(x.shape)}"
        )
    return x


def warn_once(key: str, message: str) -> None:
    """A ``UserWarning`` the first time ``key`` is seen in this process (e.g. an accepted
    framework keyword that has no effect on this neuron)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Integer ``ids`` ``[L, N]`` must lie in ``0 .. vocab_size - 1``; else ValueError naming
    the first bad value, its position and sample."""
    if ids.numel():
        bad = (ids < 0) | (ids >= vocab_size)
        if bool(bad.any()):
            pos, sample = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name}[{pos}, {sample}] = {int(ids[pos, sample])} (sample {sample}, position "
                f"{pos}) is outside the vocabulary 0..{vocab_size - 1}; expected token ids of "
                "the tokenizer the model was built for"
            )
    return ids
