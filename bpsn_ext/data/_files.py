"""Shared helpers of the data readers: errors that name the file and line."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["not_utf8", "utf8_errors", "lift_csv_field_limit"]


def lift_csv_field_limit() -> None:
    """Let ``csv`` read fields of any length (its default stops at 128 kB): the readers keep
    memory bounded by the data's size and truncate long sequences themselves."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # pragma: no cover - 32-bit C long
            limit //= 10


def not_utf8(path: str | os.PathLike, err: UnicodeDecodeError) -> ValueError:
    """A ValueError naming the first line of ``path`` that is not valid UTF-8 (raise it
    ``from err``).

    Example:
        >>> try:
        ...     open(path, encoding="utf-8").read()
        ... except UnicodeDecodeError as err:
        ...     raise not_utf8(path, err) from err
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return ValueError(
                    f"{path}:{line}: not UTF-8 text (byte 0x{raw[bad.start]:02x} at column "
                    f"{bad.start + 1}); expected a UTF-8 encoded file (convert it first, e.g. "
                    "iconv -f latin1 -t utf-8)"
                )
    return ValueError(f"{path}: not UTF-8 text ({err}); expected a UTF-8 encoded file")


@contextmanager
def utf8_errors(path: str | os.PathLike) -> Iterator[None]:
    """Inside, a `UnicodeDecodeError` while reading `path` leaves as `not_utf8`'s error (the
    file, line and byte), not as a bare decoding error.

    Example:
        >>> with utf8_errors(path), open(path, encoding="utf-8") as f:
        ...     text = f.read()
    """
    try:
        yield
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from err
