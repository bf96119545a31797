"""The bundled 8x8 digits loader: shapes, scaling, stratification, determinism."""

import pytest
import torch

pytest.importorskip("sklearn")

from bpsn_ext.data import load_digits  # noqa: E402


def test_shapes_dtypes_and_range():
    x_train, y_train, x_test, y_test = load_digits()
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    both = torch.cat([x_train, x_test])
    assert both.min().item() == 0.0 and both.max().item() == 1.0
    assert set(torch.cat([y_train, y_test]).tolist()) == set(range(10))


def test_split_is_stratified():
    split = load_digits()
    train_share = torch.bincount(split.y_train, minlength=10) / len(split.y_train)
    test_share = torch.bincount(split.y_test, minlength=10) / len(split.y_test)
    assert torch.allclose(train_share, test_share, atol=0.01)


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = load_digits(seed=3), load_digits(seed=3), load_digits(seed=4)
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)
    assert not torch.equal(a.x_train, c.x_train)
    # the parts are disjoint and together are the whole data set (1797 images)
    assert len(a.x_train) + len(a.x_test) == 1797


def test_test_fraction_and_argument_checks():
    split = load_digits(test_fraction=0.5)
    assert abs(len(split.x_test) - 1797 / 2) <= 1
    with pytest.raises(TypeError, match="Python float"):
        load_digits(test_fraction=1)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        load_digits(test_fraction=1.5)


def test_missing_sklearn_gives_install_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(
        ImportError, match=r"needs scikit-learn: pip install scikit-learn \(the `data` extra"
    ):
        load_digits()
