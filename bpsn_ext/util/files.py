"""Atomic file writes: a temporary file in the same folder, then `os.replace`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_open", "write_json_atomic"]


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    *,
    binary: bool = False,
    newline: str | None = None,
    keep_previous: str | os.PathLike | None = None,
) -> Iterator[IO]:
    """Open ``path`` for writing (text, or bytes with ``binary``); readers never see a
    half-written file.

    Missing folders are created; the file gets normal permissions (mkstemp's are 0600); on an
    error the temporary file is removed and ``path`` is left as it was.  ``keep_previous``: a
    path (same file system) that receives the earlier ``path`` (a hard link, else a copy) just
    before the new file replaces it.
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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON: a temporary file in the same folder, then
    ``os.replace``, so readers never see a half-written file.  Creates missing folders."""
    with atomic_open(path) as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
