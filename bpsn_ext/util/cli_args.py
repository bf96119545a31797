"""Argument types shared by every subcommand's flags (the CLI, the apps and the benchmarks)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["int_at_least", "positive_int"]


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse `type`: an int >= `low`.

    Example:
        >>> int_at_least(0)("3")
        3
    """

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value

    parse.__name__ = "int"  # argparse names the type in its 'invalid int value' message
    return parse


positive_int = int_at_least(1)
