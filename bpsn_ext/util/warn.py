"""One-time warnings: `warn_once` warns the first time a key is seen in this process (the
only process-global state of the package), `forget_warnings` starts afresh (tests)."""

from __future__ import annotations

import warnings

__all__ = ["forget_warnings", "warn_once"]

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """A ``UserWarning`` the first time ``key`` is seen in this process (e.g. an accepted
    framework keyword that has no effect on this neuron); it points at the caller's caller."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)


def forget_warnings() -> None:
    """Forget the keys warned so far: every `warn_once` warns again."""
    _warned.clear()
