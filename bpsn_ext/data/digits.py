"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes, no download)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from bpsn_ext.util.arguments import check_float

__all__ = ["DigitsSplit", "load_digits"]

_MAX_PIXEL = 16.0  # the digits pixels are integers in [0, 16]


class DigitsSplit(NamedTuple):
    """A train/test split; unpacks as ``x_train, y_train, x_test, y_test``."""

    x_train: torch.Tensor  # [N_train, 64] float32 in [0, 1]
    y_train: torch.Tensor  # [N_train] int64 class labels 0..9
    x_test: torch.Tensor  # [N_test, 64]
    y_test: torch.Tensor  # [N_test]


def _sklearn():
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits data set needs scikit-learn: pip install scikit-learn (the `data` "
            "extra of bpsn-ext)"
        ) from err
    return sklearn


def load_digits(
    test_fraction: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float32
) -> DigitsSplit:
    """Deterministic stratified split of the 8x8 digits, pixels scaled to ``[0, 1]``.

    The same ``seed`` always gives the same split (each class keeps its share in both
    parts).  Returns ``x_train [N_train, 64]``, ``y_train [N_train]``, ``x_test [N_test, 64]``,
    ``y_test [N_test]``; with the default 0.2, N_train = 1437 and N_test = 360.
    """
    check_float("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    sklearn = _sklearn()
    bunch = sklearn.datasets.load_digits()
    x_tr, x_te, y_tr, y_te = sklearn.model_selection.train_test_split(
        bunch.data,
        bunch.target,
        test_size=test_fraction,
        random_state=seed,
        stratify=bunch.target,
        shuffle=True,
    )

    def features(a) -> torch.Tensor:
        return torch.as_tensor(a / _MAX_PIXEL, dtype=dtype).contiguous()

    def labels(a) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.int64).contiguous()

    return DigitsSplit(features(x_tr), labels(y_tr), features(x_te), labels(y_te))
