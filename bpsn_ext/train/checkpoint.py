"""Atomic binary checkpoints and RNG-state capture for `bpsn_ext.train`."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import torch

from bpsn_ext.util.errors import OutputExistsError
from bpsn_ext.util.files import atomic_open

__all__ = [
    "atomic_save",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
    "claim_run_folder",
    "CHECKPOINT_NAME",
    "PREVIOUS_CHECKPOINT_NAME",
    "METRICS_NAME",
]

CHECKPOINT_NAME = "last.pt"
PREVIOUS_CHECKPOINT_NAME = "previous.pt"  # the checkpoint before last.pt, kept as a spare
METRICS_NAME = "metrics.json"

try:  # numpy is a dependency of bpsn_ext, but the trainer works without it
    import numpy as np
except ImportError:  # pragma: no cover
    np = None


def atomic_save(obj: Any, path: str | os.PathLike, keep_previous: str | None = None) -> None:
    """``torch.save`` ``obj`` to a temporary file in the folder of ``path``, then ``os.replace``.

    The binary counterpart of ``bpsn_ext.util.files.atomic_open``: readers never see a
    half-written file; on any error (a crash inside ``torch.save`` included) the temporary file
    is removed and the previous ``path`` is left as it was.  Missing folders are created.
    ``keep_previous``: a file name in the same folder that receives the earlier ``path`` just
    before the new one replaces it (``path`` exists at every moment).
    """
    previous = (
        None
        if keep_previous is None
        else os.path.join(os.path.dirname(os.path.abspath(path)), keep_previous)
    )
    with atomic_open(path, binary=True, keep_previous=previous) as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by ``atomic_save`` (``weights_only=True``: the trainer
    stores only tensors, numbers, strings and containers of them).

    A missing file raises FileNotFoundError; an empty, truncated or foreign file ValueError
    naming it (with ``previous.pt`` as the way out when it sits beside it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {os.path.abspath(path)!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, OSError, UnpicklingError
        spare = os.path.join(os.path.dirname(os.path.abspath(path)), PREVIOUS_CHECKPOINT_NAME)
        hint = (
            f"; the checkpoint before it is kept in {spare!r}: copy it over "
            f"{os.path.basename(path)!r} to resume from there"
            if os.path.isfile(spare) and os.path.abspath(path) != spare
            else ""
        )
        raise ValueError(
            f"{os.path.abspath(path)}: not a readable checkpoint ({os.path.getsize(path)} bytes; "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
            f"expected a complete torch.save file written by bpsn_ext.train{hint}"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(
            f"{os.path.abspath(path)}: expected a checkpoint dict, got {type(ckpt).__name__}"
        )
    return ckpt


def claim_run_folder(
    folder: str | os.PathLike, *, resume: bool, overwrite: bool, extra: tuple[str, ...] = ()
) -> None:
    """Refuse to start a new run (not ``resume``) in ``folder`` when it holds an earlier run's
    checkpoint or metrics (or one of the ``extra`` file names), unless ``overwrite``; with
    ``overwrite`` the earlier checkpoints are removed, so a later resume cannot pick them up.
    The refusal is an `OutputExistsError` naming `resume=True` and `overwrite=True` (a command
    spells them as its flags: `bpsn_ext.util.cli_args.flag_errors`).

    Under DDP only rank 0 looks (another rank could otherwise see the files rank 0 has just
    written for this run); with an initialised process group its verdict is broadcast, so
    every rank refuses alike.  Without one (torchrun before the Trainer starts the group) the
    other ranks return and the launcher stops them when rank 0 exits."""
    import torch.distributed as dist

    if resume:
        return
    group = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if group else int(os.environ.get("RANK", "0"))
    folder = os.path.abspath(folder)
    verdict = [(folder, _claim_verdict(folder, overwrite, extra)) if rank == 0 else None]
    if group:  # rank 0's folder and files, so that every rank refuses in the same words
        dist.broadcast_object_list(verdict, src=0)
    if verdict[0] and verdict[0][1]:
        raise OutputExistsError(
            "{folder} already holds a run ({found}). Pass {resume:True} to continue it, "
            "{overwrite:True} to replace it, or choose another folder.",
            folder=verdict[0][0],
            found=", ".join(verdict[0][1]),
        )


def _claim_verdict(folder: str, overwrite: bool, extra: tuple[str, ...]) -> list[str]:
    """Rank 0's part of `claim_run_folder`: the earlier run's files that refuse the folder, or
    `[]` once it is free."""
    names = (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, METRICS_NAME, *extra)
    found = [n for n in names if os.path.exists(os.path.join(folder, n))]
    if found and not overwrite:
        return found
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME) if found else ():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, name))
    return []


def get_rng_state() -> dict:
    """The states of torch (CPU and CUDA), Python ``random`` and numpy's global generators."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of `get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if np is not None and "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))
