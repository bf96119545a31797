"""Errors that name arguments so that every caller can spell them: `ArgumentError` and its
kinds `DataSourceError` (bad data-source arguments), `ConflictingArgumentsError` (arguments that do
not go together) and `OutputExistsError` (a folder or file that holds earlier work, without
`overwrite=True`).

A library function speaks of its keyword arguments (`data=PATH`, `overwrite=True`); the
command line speaks of flags (`--data PATH`, `--overwrite`).  The error keeps its message as a
template whose fields are the argument names, so the library's `str(err)` and the command
line's `err.spell(flag)` (see `bpsn_ext.util.cli_args.flag_errors`) tell the same thing in each
caller's terms.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable

__all__ = [
    "ArgumentError",
    "ConflictingArgumentsError",
    "DataSourceError",
    "OutputExistsError",
    "keyword",
]

Spelling = Callable[[str, str], str]
"""`(argument name, placeholder value) -> text`, e.g. `("data", "PATH") -> "data=PATH"`."""


def keyword(name: str, value: str) -> str:
    """Python's spelling of an argument: `keyword("data", "PATH") == "data=PATH"`."""
    return f"{name}={value}"


class ArgumentError(Exception):
    """An error whose message names arguments; a base for the kinds below.

    Args:
        template: the message; a field `{data:PATH}` names the argument `data` with the
            placeholder value `PATH` (a switch: `{generate:True}`); a field named in `values`
            is filled in as in `str.format` (`{task!r}`).
        values: the values of the other fields.

    `str(err)` spells the arguments as keywords; `err.arguments` lists their names.

    Example:
        >>> err = DataSourceError("task {task!r} needs {data:DIR}", task="image")
        >>> str(err), err.arguments
        ("task 'image' needs data=DIR", ('data',))
        >>> err.spell(lambda name, value: f"--{name} {value}")
        "task 'image' needs --data DIR"
    """

    def __init__(self, template: str, **values) -> None:
        self.template, self.values = template, values
        super().__init__(self.spell(keyword))

    def __reduce__(self):  # pickles (e.g. from a worker process) with its values
        return functools.partial(type(self), **self.values), (self.template,)

    @property
    def arguments(self) -> tuple[str, ...]:
        """The argument names the message speaks of, in order."""
        fields = (f for _, f, _, _ in string.Formatter().parse(self.template) if f)
        return tuple(dict.fromkeys(f for f in fields if f not in self.values))

    def spell(self, spelling: Spelling) -> str:
        """The message with every argument written as `spelling(name, value)`."""
        return _Speller(spelling).format(self.template, **self.values)


class DataSourceError(ArgumentError, ValueError):
    """A data source an argument names is wrong, missing, or not for this task."""


class OutputExistsError(ArgumentError, FileExistsError):
    """The output already holds earlier work, and the call did not ask to replace it.

    Example:
        >>> str(OutputExistsError("{path} exists; pass {overwrite:True}", path="out"))
        'out exists; pass overwrite=True'
    """


class _Argument(str):
    """A template field that names an argument (not a value to fill in)."""


class _Speller(string.Formatter):
    def __init__(self, spelling: Spelling) -> None:
        self.spelling = spelling

    def get_value(self, key, args, kwargs):
        return kwargs[key] if key in kwargs else _Argument(key)

    def format_field(self, value, format_spec: str) -> str:
        if isinstance(value, _Argument):
            return self.spelling(str(value), format_spec)
        return super().format_field(value, format_spec)


class ConflictingArgumentsError(ArgumentError, ValueError):
    """Arguments that do not go together, or an argument another one rules out.

    Example:
        >>> str(ConflictingArgumentsError("{resume:True} needs {checkpoint_dir:DIR}"))
        'resume=True needs checkpoint_dir=DIR'
    """
