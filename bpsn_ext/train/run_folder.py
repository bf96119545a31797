"""A run folder is a contract: one writer at a time, and a resume continues the same run.

- `RunFolderLock` (or `hold_run_folder`) is an advisory ``fcntl`` lock on
  ``<folder>/run.lock`` held for the whole run (under ``torchrun`` by rank 0 only).  A second
  writer is refused with the holder's pid; the lock of a process that died is released by the
  kernel, so the next run simply takes it.  Taking the lock also removes the ``.tmp-*`` files a
  killed writer left (no one else writes there while the lock is held).
- `compare_run_config` refuses a resume whose settings differ from the ones the run started
  with (its ``run_config.json``), naming each setting, both values and ``overwrite=True``.
  `RESUME_MAY_CHANGE` lists the settings a resume may change.
- `check_counters` validates a checkpoint's counters against the run and against each other.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from bpsn_ext.util.errors import ArgumentError

__all__ = [
    "LOCK_NAME",
    "RUN_CONFIG_NAME",
    "RESUME_MAY_CHANGE",
    "RunFolderBusyError",
    "RunMismatchError",
    "RunFolderLock",
    "hold_run_folder",
    "compare_run_config",
    "read_run_config",
    "check_counters",
    "remove_stray_temporaries",
    "open_run_folder",
    "run_settings",
    "write_run_config",
]

LOCK_NAME = "run.lock"
RUN_CONFIG_NAME = "run_config.json"

RESUME_MAY_CHANGE = frozenset(
    {
        # where and how fast it runs
        "threads",
        "device",
        "collective_timeout",
        # what it shows and reports
        "progress",
        "no_progress",
        "energy_samples",
        "no_energy",
        "metrics_json",
        "debug",
        # how often it checkpoints, and the folder itself (it may be named by another path)
        "checkpoint_every",
        "checkpoint_dir",
        "out",
        # the switches that choose between starting and continuing
        "resume",
        "overwrite",
    }
)
"""The settings a resume may change; every other setting of a run (task, data and its limits,
model, layer, seed, optimiser and schedule) must equal the one the run started with."""


class RunFolderBusyError(ArgumentError, BlockingIOError):
    """Another live process holds the run folder's lock."""


class RunMismatchError(ArgumentError, ValueError):
    """A resume whose settings differ from the run's own."""


def _pid_of(path: str) -> str:
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="ascii") as f:
            return f.read(32).strip() or "unknown"
    return "unknown"


class RunFolderLock:
    """An exclusive advisory lock on ``<folder>/run.lock`` (``fcntl.flock``).

    Args:
        folder: the run folder (created when missing).

    `acquire` raises `RunFolderBusyError` naming the holder's pid when a live process holds
    it; `release` (or leaving the ``with`` block) unlocks and removes the lock file.

    Example:
        >>> with RunFolderLock("runs/a"):  # doctest: +SKIP
        ...     ...  # train; a second RunFolderLock("runs/a") is refused meanwhile
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise RunFolderBusyError(
                    "{folder} is in use by another run (process {pid}, holding {lock}); "
                    "wait for it to end or choose another folder ({overwrite:True} does not "
                    "take a live run's folder)",
                    folder=self.folder,
                    pid=_pid_of(self.path),
                    lock=LOCK_NAME,
                ) from None
            # the file may have been removed (and made anew) by the holder that just released
            # it: the lock counts only on the file the path names now
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        remove_stray_temporaries(self.folder)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # still locked: no one else can hold this file meanwhile
        os.close(self._fd)  # releases the lock
        self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _rank() -> int:
    """This process's rank: an initialised process group's, else torchrun's ``RANK``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def hold_run_folder(folder: str | os.PathLike | None) -> Iterator[RunFolderLock | None]:
    """Hold ``folder``'s `RunFolderLock` inside the block; nothing without a folder, and
    nothing on ranks other than 0 under ``torchrun`` (rank 0 writes the run's files)."""
    if folder is None or _rank() != 0:
        yield None
        return
    with RunFolderLock(folder) as lock:
        yield lock


def remove_stray_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the ``.tmp-*`` files of `bpsn_ext.util.files.atomic_open` that a killed writer
    left in ``folder``; call only while holding the folder's lock.  Returns their names."""
    removed = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(".tmp-") and os.path.isfile(path) and not os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(name)
    return removed


# ----------------------------------------------------------------------------- resume
def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so stored and given compare."""
    return json.loads(json.dumps(value))


def read_run_config(folder: str | os.PathLike) -> dict:
    """The ``run_config.json`` of ``folder``; a missing, damaged or foreign file raises
    ValueError naming it."""
    path = os.path.join(os.path.abspath(folder), RUN_CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: the run's settings are unknown, so it cannot be resumed "
            "(start it again without resuming)"
        )
    from bpsn_ext.util.files import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def compare_run_config(
    stored: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    folder: str,
    may_change: Iterable[str] = RESUME_MAY_CHANGE,
    derived: Iterable[str] = (),
) -> None:
    """Refuse (`RunMismatchError`) when a setting of ``given`` differs from ``stored`` (a
    setting missing on one side counts as ``None``).

    Args:
        stored: the settings the run started with (its ``run_config.json``).
        given: the settings of this call.
        folder: the run folder, for the message.
        may_change: settings that may differ (`RESUME_MAY_CHANGE`).
        derived: settings that follow from others (left out of the comparison).
    """
    skip = set(may_change) | set(derived)
    keys = [k for k in dict.fromkeys([*stored, *given]) if k not in skip]
    diffs = [
        (k, _plain(stored.get(k)), _plain(given.get(k)))
        for k in keys
        if _plain(stored.get(k)) != _plain(given.get(k))
    ]
    if not diffs:
        return
    fields = "; ".join(
        f"{{{k}:{_spec(was)}}} (this call: {_show(now)})"
        if _spec(was)
        else f"{k} = {_show(was)} (this call: {_show(now)})"
        for k, was, now in diffs
    )
    raise RunMismatchError(
        "{folder} holds a run started with " + fields + ". A resume continues the same run: "
        "give the run's own settings, or start a new run there with {overwrite:True} "
        "(a resume may change only {allowed})",
        folder=folder,
        allowed=", ".join(sorted(set(may_change) - _SWITCHES)),
    )


def _show(value: Any) -> str:
    """``value`` as the message shows it (braces doubled: the message is a template)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("{", "{{").replace("}", "}}")


def _spec(value: Any) -> str:
    """``value`` as a template placeholder ('' when it cannot be one)."""
    text = json.dumps(value) if not isinstance(value, str) else value
    if value is True:
        return "True"
    return "" if any(c in text for c in "{}") or value is None or value is False else text


_NOT_SETTINGS = ("handler", "command", "task_kind")
_SWITCHES = {"debug", "out", "checkpoint_dir", "resume", "overwrite"}  # not worth listing


def run_settings(values: Mapping[str, Any], path_keys: Iterable[str] = ()) -> dict:
    """The settings of a run from a command's values (``vars(args)``): the dispatch entries
    dropped, the ``path_keys`` made absolute (a list of paths: each), as JSON stores them."""
    out = {k: v for k, v in values.items() if k not in _NOT_SETTINGS}
    for key in path_keys:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = os.path.abspath(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [os.path.abspath(v) for v in value]
    return _plain(out)


def write_run_config(folder: str | os.PathLike, settings: Mapping[str, Any]) -> None:
    """Store ``settings`` as the run's ``run_config.json`` (rank 0 only under ``torchrun``)."""
    from bpsn_ext.util.files import write_json_atomic

    if _rank() == 0:
        write_json_atomic(os.path.join(folder, RUN_CONFIG_NAME), dict(settings))


@contextlib.contextmanager
def open_run_folder(
    folder: str | os.PathLike | None,
    settings: Mapping[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    derived: Iterable[str] = (),
) -> Iterator[None]:
    """Inside the block this process is the run folder's only writer (`hold_run_folder`);
    a new run has claimed the folder (`claim_run_folder`: earlier work is refused unless
    ``overwrite``) and stored ``settings`` as its ``run_config.json``, a resumed one has
    matched them (`compare_run_config`).  A new run that fails inside the block before its
    first checkpoint leaves nothing behind.  Without a folder nothing is checked."""
    from bpsn_ext.train.checkpoint import claim_run_folder

    existed = folder is not None and os.path.isdir(folder)
    with hold_run_folder(folder) as lock:
        before = set(os.listdir(folder)) if lock is not None else set()
        try:
            if folder is not None:
                claim_run_folder(folder, resume=resume, overwrite=overwrite)
                if not resume:
                    write_run_config(folder, settings)
                if resume and lock is not None and _has_run(folder):
                    stored = read_run_config(folder)
                    compare_run_config(
                        stored, settings, folder=os.path.abspath(folder), derived=derived
                    )
            yield
        except BaseException:
            if lock is not None:
                _discard_untrained(
                    lock.folder, before if not resume else None, remove_folder=not existed
                )
            raise


def _has_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run to resume (else resuming fails on the missing files)."""
    from bpsn_ext.train.checkpoint import CHECKPOINT_NAME

    return any(os.path.exists(os.path.join(folder, n)) for n in (CHECKPOINT_NAME, RUN_CONFIG_NAME))


def _discard_untrained(folder: str, before: set[str] | None, *, remove_folder: bool) -> None:
    """A new run that failed before its first checkpoint leaves nothing behind: the files it
    made (those not in ``before``; None: none) are removed, and the folder when it made it
    and nothing else is left."""
    from bpsn_ext.train.checkpoint import CHECKPOINT_NAME

    if os.path.exists(os.path.join(folder, CHECKPOINT_NAME)):
        return  # it trained: the checkpoint resumes it
    made = set() if before is None else set(os.listdir(folder)) - before - {LOCK_NAME}
    for name in made:
        path = os.path.join(folder, name)
        if os.path.isfile(path) or os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    if remove_folder and set(os.listdir(folder)) <= {LOCK_NAME}:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, LOCK_NAME))
            os.rmdir(folder)


# ----------------------------------------------------------------------------- counters
def _int(ckpt: Mapping[str, Any], key: str, path: str) -> int:
    value = ckpt.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: checkpoint {key} must be an int, got {value!r}")
    return value


def check_counters(
    ckpt: Mapping[str, Any], path: str, *, epochs: int, batches_per_epoch: int, batch_size: int
) -> None:
    """Validate the counters of a trainer checkpoint against the run and each other.

    ``0 <= epoch <= epochs``, ``0 <= step_in_epoch < batches_per_epoch`` (0 once finished),
    ``global_step == epoch * batches_per_epoch + step_in_epoch``, one history entry per
    finished epoch, ``0 <= loss_count <= step_in_epoch * batch_size`` and a finite
    ``loss_sum``.  Raises ValueError naming ``path``, the counter and the allowed range.
    """
    epoch = _int(ckpt, "epoch", path)
    step = _int(ckpt, "step_in_epoch", path)
    global_step = _int(ckpt, "global_step", path)
    count = _int(ckpt, "loss_count", path)
    loss_sum = ckpt.get("loss_sum")
    history = ckpt.get("history")
    last_step = batches_per_epoch - 1 if epoch < epochs else 0
    problems = []
    if not 0 <= epoch <= epochs:
        problems.append(f"epoch {epoch} is outside 0..{epochs} (the run's epochs)")
    elif not 0 <= step <= last_step:
        problems.append(f"step_in_epoch {step} is outside 0..{last_step}")
    elif global_step != epoch * batches_per_epoch + step:
        problems.append(
            f"global_step {global_step} != epoch * {batches_per_epoch} + step_in_epoch "
            f"= {epoch * batches_per_epoch + step}"
        )
    elif not isinstance(history, list) or len(history) != epoch:
        n = len(history) if isinstance(history, list) else "no list of"
        problems.append(f"history has {n} entries for {epoch} finished epochs")
    elif not 0 <= count <= step * batch_size:
        problems.append(f"loss_count {count} is outside 0..{step * batch_size}")
    elif not isinstance(loss_sum, (int, float)) or not math.isfinite(loss_sum):
        problems.append(f"loss_sum {loss_sum!r} is not a finite number")
    if problems:
        raise ValueError(
            f"{path}: the checkpoint's counters do not fit this run: {problems[0]}; "
            "the file is damaged or from another run"
        )
