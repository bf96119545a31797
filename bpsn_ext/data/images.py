"""Image data sets read from local files: IDX (MNIST / Fashion-MNIST format) and CIFAR-10.

* IDX: ``{train,t10k}-images-idx3-ubyte[.gz]`` and ``{train,t10k}-labels-idx1-ubyte[.gz]``
  (MNIST, Debian's ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``).
* CIFAR-10, python version: ``data_batch_1..5`` and ``test_batch`` (pickled dicts with
  ``data`` ``[N, 3072]`` uint8, channel-major, and ``labels``), in the folder given or in its
  ``cifar-10-batches-py`` sub-folder.  They are read by a restricted unpickler that admits only
  what those files hold (dicts, lists, bytes, ints and numpy arrays), so a crafted batch file
  cannot run code: any other global is refused with an error naming the file.  Grey levels
  follow torchvision's ``Grayscale`` (``0.299 R + 0.587 G + 0.114 B``), rounded to uint8.
* ``load_hf_images(name)``: a Hugging Face ``datasets`` name (``uoft-cs/cifar10``,
  ``ylecun/mnist``, ...), only when the user asks for it; no download happens by itself
  (``datasets`` honours ``HF_DATASETS_OFFLINE=1`` and its cache).

Every loader returns uint8 images ``[N, H, W]`` and int64 labels ``[N]`` (numpy).
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import struct
import zlib

import numpy as np

__all__ = [
    "read_idx",
    "load_idx_dataset",
    "load_cifar10",
    "load_hf_images",
    "IDX_FILES",
    "DEFAULT_FASHION_MNIST",
    "to_grey",
]

DEFAULT_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzip or raw, by its magic bytes) as a numpy array of its stored shape."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(
                f"{path}: truncated or corrupt gzip file ({err}); expected a "
                "complete gzip-compressed IDX file"
            ) from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes of data), "
            f"the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(root: str, name: str) -> str | None:
    for candidate in (name + ".gz", name, name.replace("-idx", ".idx")):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    return None


def load_idx_dataset(
    root: str | os.PathLike, split: str, num_classes: int | None = 10
) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, H, W] uint8, labels [N] int64)`` of ``split`` (``"train"``/``"test"``)
    from an MNIST-format folder; a missing file raises FileNotFoundError naming them all, a
    label outside ``0..num_classes-1`` ValueError naming the file and sample (None: no check)."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = os.fspath(root)
    paths = [_find(root, name) for name in IDX_FILES[split]]
    if None in paths:
        expected = ", ".join(f"{n}[.gz]" for files in IDX_FILES.values() for n in files)
        raise FileNotFoundError(
            f"no MNIST-format {split} files in {os.path.abspath(root)!r}: expected {expected} "
            "(Debian: apt-get install dataset-fashion-mnist puts them in "
            f"{DEFAULT_FASHION_MNIST})"
        )
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} / {paths[1]}: expected images [N, H, W] and labels [N], "
            f"got {images.shape} and {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if num_classes is not None:
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(bad):
            raise ValueError(
                f"{paths[1]}: label {labels[bad[0]]} of sample {bad[0]} is outside "
                f"0..{num_classes - 1} ({len(bad)} such labels)"
            )
    return np.array(images, dtype=np.uint8), labels


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """``[N, 3, H, W]`` or ``[N, H, W, 3]`` uint8 -> ``[N, H, W]`` uint8 (ITU-R 601 luma)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[1] == 3 and rgb.ndim == 4:
        rgb = np.moveaxis(rgb, 1, -1)
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r})")
    return codecs.encode(text, "latin1")


_NUMPY_GLOBALS = {
    (f"numpy.{core}.{mod}", name)
    for core in ("core", "_core")
    for mod, name in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))
}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals a CIFAR-10 batch needs: numpy arrays and dtypes (any pickle
    protocol, numpy 1 or 2 module names) and latin-1 bytes; everything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS or (module, name) in (
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        ):
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refused global {module}.{name} (a CIFAR-10 batch holds only dicts, lists, bytes, "
            "ints and numpy arrays)"
        )


def _read_cifar_batch(path: str) -> dict:
    """One CIFAR-10 batch file as ``{"data": uint8 [N, 3072], "labels": [N]}``, checked."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise ValueError(f"{path}: not a CIFAR-10 pickle batch ({err})") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(
            f"{path}: expected keys 'data' and 'labels', got {sorted(map(str, batch))}"
        )
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected 'data' as a uint8 numpy array, got "
            f"{getattr(data, 'dtype', type(data).__name__)}"
        )
    if not isinstance(labels, (list, np.ndarray)) or not all(
        isinstance(v, (int, np.integer)) and 0 <= v < 10 for v in labels
    ):
        raise ValueError(f"{path}: expected 'labels' as a list of ints in 0..9")
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(
            f"{path}: expected data [N, 3072] and N labels, got {data.shape} and {len(labels)}"
        )
    return {"data": data, "labels": np.asarray(labels, dtype=np.int64)}


def load_cifar10(
    root: str | os.PathLike, split: str, grey: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 (python pickle batches): ``[N, 32, 32]`` grey (or ``[N, 32, 32, 3]``) uint8
    and labels ``[N]``."""
    root = os.fspath(root)
    if os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
        root = os.path.join(root, "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    missing = [n for n in names if not os.path.isfile(os.path.join(root, n))]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} batches missing in {os.path.abspath(root)!r}: {missing} (expected "
            "the python version: data_batch_1..5, test_batch, optionally inside "
            "cifar-10-batches-py/)"
        )
    xs, ys = [], []
    for name in names:
        batch = _read_cifar_batch(os.path.join(root, name))
        xs.append(batch["data"].reshape(-1, 3, 32, 32))
        ys.append(batch["labels"])
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (to_grey(x), y) if grey else (np.moveaxis(x, 1, -1).copy(), y)


def load_hf_images(name: str, split: str, grey: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """An image data set through ``datasets.load_dataset(name)`` (``NAME[:CONFIG]``); the
    first image column (``img``/``image``) and the ``label`` column."""
    import datasets

    repo, _, config = name.partition(":")
    ds = datasets.load_dataset(repo, config or None, split=split)
    image_col = next((c for c in ("img", "image") if c in ds.column_names), None)
    label_col = next((c for c in ("label", "labels", "fine_label") if c in ds.column_names), None)
    if image_col is None or label_col is None:
        raise ValueError(
            f"{name}: expected an 'img'/'image' and a 'label' column, got {ds.column_names}"
        )
    images = np.stack([np.asarray(im) for im in ds[image_col]])
    if images.ndim == 4 and grey:
        images = to_grey(images)
    return images.astype(np.uint8), np.asarray(ds[label_col], dtype=np.int64)
