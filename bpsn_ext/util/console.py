"""How the command line ends: one message instead of a traceback (`report_errors`), and a
run that outlives a closed standard output (`keep_running_without_stdout`)."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from typing import TextIO

__all__ = ["Outcome", "report_errors", "keep_running_without_stdout"]


class Outcome:
    """The exit code `report_errors` ends with (set ``code`` inside the block)."""

    def __init__(self) -> None:
        self.code = 0


@contextlib.contextmanager
def report_errors(program: str, *, debug: bool = False) -> Iterator[Outcome]:
    """Inside, an exception becomes ``<program>: <message>`` on standard error and the exit
    code 1 (130 for Ctrl-C); ``SystemExit`` passes as it is.  With ``debug`` the traceback is
    printed first.

    Example:
        >>> with report_errors("bpsn-ext") as outcome:  # doctest: +SKIP
        ...     raise ValueError("data.json: not valid JSON")
        bpsn-ext: data.json: not valid JSON (--debug shows the traceback)
        >>> outcome.code  # doctest: +SKIP
        1
    """
    outcome = Outcome()
    try:
        yield outcome
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{program}: interrupted", file=sys.stderr)
        outcome.code = 130
    except Exception as err:
        if debug:
            traceback.print_exc()
        text = str(err) or type(err).__name__
        if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str):
            text = err.args[0]  # str(KeyError) quotes its message
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"{program}: {text}{hint}", file=sys.stderr, flush=True)
        outcome.code = 1


class _Unbreakable:
    """A text stream that, once its reader has gone (``EPIPE``), sends the rest to
    ``os.devnull`` instead of raising ``BrokenPipeError``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _drop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def keep_running_without_stdout() -> None:
    """Make standard output and error survive a closed pipe (``| head -1``): the run goes
    on and its later output is dropped, instead of ending in ``BrokenPipeError``."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Unbreakable):
            setattr(sys, name, _Unbreakable(stream))
