"""Hostile, truncated and out-of-range data files: no code runs, errors name file and sample."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct

import numpy as np
import pytest

from bpsn_ext.data import images


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_batches(folder, make, protocol=pickle.DEFAULT_PROTOCOL):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        with open(folder / name, "wb") as f:
            pickle.dump(make(i, name), f, protocol=protocol)


def real_batch(i, name):
    rng = np.random.default_rng(i)
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, 3)],
        b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
        b"filenames": [b"a.png", b"b.png", b"c.png"],
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_any_protocol_load(tmp_path, protocol):
    write_batches(tmp_path, real_batch, protocol)
    x, y = images.load_cifar10(tmp_path, "train")
    assert x.shape == (15, 32, 32) and y.tolist()[:3] == real_batch(0, "")[b"labels"]


def test_a_hostile_cifar_batch_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    write_batches(
        tmp_path / "cifar", lambda i, n: {**real_batch(i, n), b"labels": _RunsACommand(marker)}
    )
    with pytest.raises(
        ValueError, match="data_batch_1: not a CIFAR-10 pickle batch .*refused global posix.system"
    ):
        images.load_cifar10(tmp_path / "cifar", "train")
    assert not marker.exists()


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda i, n: [1, 2], "expected a pickled dict, got list"),
        (
            lambda i, n: {**real_batch(i, n), b"data": np.zeros((3, 3072), np.float32)},
            "expected 'data' as a uint8 numpy array",
        ),
        (
            lambda i, n: {**real_batch(i, n), b"labels": [0, 11, 2]},
            "expected 'labels' as a list of ints",
        ),
        (lambda i, n: {b"data": real_batch(i, n)[b"data"]}, "expected keys 'data' and 'labels'"),
    ],
)
def test_malformed_cifar_batches_name_the_file(tmp_path, bad, match):
    write_batches(tmp_path, bad)
    with pytest.raises(ValueError, match="data_batch_1: " + match):
        images.load_cifar10(tmp_path, "train")


def write_idx(folder, split, labels, n=4, gz=True):
    imgs, labs = images.IDX_FILES[split]
    data = np.zeros((n, 2, 2), np.uint8)
    for name, arr in ((imgs, data), (labs, np.asarray(labels, np.uint8))):
        raw = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
        raw += arr.tobytes()
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
    return folder / (labs + (".gz" if gz else ""))


def test_idx_labels_outside_the_class_range_name_file_and_sample(tmp_path):
    path = write_idx(tmp_path, "train", [1, 2, 179, 3])
    with pytest.raises(ValueError, match=re.escape(f"{path}: label 179 of sample 2 is outside")):
        images.load_idx_dataset(tmp_path, "train")
    assert images.load_idx_dataset(tmp_path, "train", num_classes=None)[1][2] == 179


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "empty-gzip"])
def test_truncated_or_corrupt_idx_gzip_names_the_file(tmp_path, damage):
    path = write_idx(tmp_path, "train", [1, 2, 3, 4])
    raw = path.read_bytes()
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "corrupt":
        raw = raw[:12] + bytes(b ^ 0xFF for b in raw[12:20]) + raw[20:]
    else:
        raw = raw[:2]
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=re.escape(f"{path}: truncated or corrupt gzip file")):
        images.read_idx(path)
