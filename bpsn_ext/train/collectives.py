"""Collective operations that end: a timeout for the process group the `Trainer` starts, and
a clear error when a rank waits past it (another rank stopped, died or hangs)."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

__all__ = ["CollectiveTimeoutError", "timeout_of", "collective_errors"]


class CollectiveTimeoutError(TimeoutError):
    """A collective operation (all-reduce, barrier, ...) waited longer than the timeout."""


def timeout_of(seconds: float) -> datetime.timedelta:
    """``seconds`` as the ``timeout`` of ``torch.distributed.init_process_group``."""
    if not seconds > 0:
        raise ValueError(f"collective_timeout_s must be > 0, got {seconds!r}")
    return datetime.timedelta(seconds=seconds)


def _is_timeout(err: BaseException) -> bool:
    text = str(err).lower()
    return any(s in text for s in ("timed out", "timeout", "time out")) and not isinstance(
        err, CollectiveTimeoutError
    )


@contextlib.contextmanager
def collective_errors(rank: int, world_size: int, seconds: float) -> Iterator[None]:
    """Inside, a backend's timeout error (gloo / nccl) becomes `CollectiveTimeoutError`
    naming the rank, the timeout and the likely cause; nothing changes for one process."""
    try:
        yield
    except Exception as err:
        if world_size <= 1 or not _is_timeout(err):
            raise
        raise CollectiveTimeoutError(
            f"rank {rank} of {world_size}: a collective operation waited more than {seconds:g} s "
            "for the other ranks (one of them stopped, died or hangs); the run stops here and "
            "resumes from its last checkpoint (collective_timeout_s sets the wait; first "
            f"line of the backend's error: {str(err).splitlines()[0] if str(err) else '-'})"
        ) from err
