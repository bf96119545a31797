"""On/off switches read from environment variables."""

from __future__ import annotations

import os

__all__ = ["env_on"]

_OFF = ("0", "off", "false", "no")
_ON = ("", "1", "on", "true", "yes", "auto")


def env_on(name: str) -> bool:
    """Whether the switch ``$name`` is on (unset: on); ``ValueError`` naming it for a value
    that is neither 0/off/false/no nor 1/on/true/yes/auto."""
    value = os.environ.get(name, "1").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(f"{name} must be 0 or 1 (or off/on), got {value!r}")
