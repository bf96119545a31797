"""Argument types shared by every subcommand's flags (the CLI, the apps and the benchmarks),
and the flags' names for a library's argument errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bpsn_ext.util.errors import ArgumentError

__all__ = ["flag", "flag_errors", "int_at_least", "positive_int", "seed_int"]


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


def seed_int(text: str) -> int:
    """An argparse `type`: a seed, an int in 0..2^32 - 1 (numpy's and scikit-learn's range).

    Example:
        >>> seed_int("7")
        7
    """
    value = int_at_least(0)(text)
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be an integer <= 4294967295, got {text}")
    return value


seed_int.__name__ = "int"


def flag(name: str, value: str = "") -> str:
    """The command-line spelling of the keyword argument `name` (a `Spelling` of
    `bpsn_ext.util.errors`): `--name VALUE`, or `--name` for a switch (value `True` or none).

    Example:
        >>> flag("data", "LRA_DIR"), flag("generate", "True"), flag("n_train")
        ('--data LRA_DIR', '--generate', '--n-train')
    """
    option = "--" + name.replace("_", "-")
    return option if value in ("", "True") else f"{option} {value}"


@contextmanager
def flag_errors(command: str) -> Iterator[None]:
    """Inside, an `ArgumentError` (`DataSourceError`, `OutputExistsError`) of a library
    function whose keyword arguments are the command's flags leaves as
    `SystemExit("<command>: <message with the flags>")`.

    Example:
        >>> from bpsn_ext.util.errors import DataSourceError
        >>> with flag_errors("train lra"):
        ...     raise DataSourceError("task {task} needs {data:DIR}", task="image")
        Traceback (most recent call last):
        SystemExit: train lra: task image needs --data DIR
    """
    try:
        yield
    except ArgumentError as err:
        raise SystemExit(f"{command}: {err.spell(flag)}") from err
