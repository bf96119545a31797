"""Atomic file writes (a temporary file in the same folder, then `os.replace`), writes that
never replace a file unasked (`refuse_existing`, ``replace=False``), and bounded JSON reads."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from bpsn_ext.util.errors import OutputExistsError

__all__ = ["atomic_open", "write_json_atomic", "refuse_existing", "read_json", "MAX_JSON_BYTES"]

MAX_JSON_BYTES = 64 * 2**20
"""The largest settings / report JSON `read_json` reads (64 MiB)."""


def refuse_existing(path: str | os.PathLike | None, *, overwrite: bool = False) -> None:
    """Raise `OutputExistsError` (naming `overwrite=True`) when ``path`` exists and
    ``overwrite`` is false; call it before the work whose result goes to ``path``.

    Example:
        >>> refuse_existing("results.json", overwrite=False)  # doctest: +SKIP
        OutputExistsError: results.json exists; pass overwrite=True to replace it ...
    """
    if path is not None and not overwrite and os.path.lexists(path):
        raise OutputExistsError(
            "{path} exists; pass {overwrite:True} to replace it, or choose another path",
            path=os.fspath(path),
        )


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    *,
    binary: bool = False,
    newline: str | None = None,
    keep_previous: str | os.PathLike | None = None,
    replace: bool = True,
) -> Iterator[IO]:
    """Open ``path`` for writing (text, or bytes with ``binary``); readers never see a
    half-written file.

    Missing folders are created; the file gets normal permissions (mkstemp's are 0600); on an
    error the temporary file is removed and ``path`` is left as it was.  ``keep_previous``: a
    path (same file system) that receives the earlier ``path`` (a hard link, else a copy) just
    before the new file replaces it.  ``replace=False``: the file is put in place only if
    ``path`` does not exist (checked atomically, by a hard link), else `OutputExistsError`.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        kwargs = {} if binary else {"encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, "wb" if binary else "w", **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if keep_previous is not None and os.path.isfile(path):
            _keep(path, os.fspath(keep_previous))
        if replace:
            os.replace(tmp, path)
        else:
            _put_new(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _put_new(tmp: str, path: str) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (then `OutputExistsError`)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        refuse_existing(path)
    except OSError:  # no hard links on this file system: check, then rename
        refuse_existing(path)
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _keep(path: str, previous: str) -> None:
    """Atomically make ``previous`` a copy of ``path`` (which stays in place)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(previous)))
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # no hard links here
            shutil.copyfile(path, tmp)
        os.replace(tmp, previous)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any, *, replace: bool = True) -> None:
    """Write ``data`` as indented JSON: a temporary file in the same folder, then
    ``os.replace``, so readers never see a half-written file.  Creates missing folders.
    ``replace=False``: refuse (`OutputExistsError`) when ``path`` exists."""
    with atomic_open(path, replace=replace) as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path``, or ValueError naming the file: larger than ``max_bytes``,
    not UTF-8, truncated or malformed, nested too deep, or holding NaN / Infinity."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{path}: {size} bytes, more than the {max_bytes} a JSON file may hold")
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.read(), parse_constant=_no_constant)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); expected JSON") from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON at line {err.lineno}, column {err.colno} ({err.msg}); "
            "the file is truncated or damaged"
        ) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}; expected finite numbers") from None
