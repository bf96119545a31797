"""The device a run asks for, checked before anything is built on it."""

from __future__ import annotations

import torch

__all__ = ["check_device"]


def check_device(device: str | torch.device | None, name: str = "device") -> None:
    """Refuse a ``device`` that cannot train or evaluate here: not a torch device name,
    ``meta`` (holds no data), or an accelerator this torch build or machine lacks.  ``None``
    (pick one) passes.

    Example:
        >>> check_device("cpu")
        >>> check_device("banana")
        Traceback (most recent call last):
        ValueError: device must be a torch device such as 'cpu' or 'cuda:0', got 'banana'
    """
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(
            f"{name} must be a torch device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from None
    if dev.type == "meta":
        raise ValueError(f"{name} 'meta' holds no data: use 'cpu' or an accelerator")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} {device!r}: no CUDA GPU is usable here (this torch build "
                f"{'has CUDA ' + str(torch.version.cuda) if torch.version.cuda else 'is CPU-only'}"
                "); use 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} {device!r}: there are {torch.cuda.device_count()} CUDA devices"
            )
    elif dev.type not in ("cpu",):
        backend = getattr(torch, dev.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(f"{name} {device!r}: this torch build or machine lacks it")
