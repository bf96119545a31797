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
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "read_idx",
    "idx_length",
    "idx_paths",
    "load_idx_dataset",
    "load_cifar10",
    "load_hf_images",
    "IDX_FILES",
    "MAX_IDX_BYTES",
    "DEFAULT_FASHION_MNIST",
    "to_grey",
]

DEFAULT_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_IDX_BYTES = 2**30
"""The most data bytes (after decompression) `read_idx` reads: 1 GiB (MNIST's train images
are 47 MB)."""


def _idx_header(f, path: str) -> tuple[np.dtype, tuple[int, ...]]:
    """``(dtype, shape)`` from the header of an open IDX stream, checked."""
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {magic[:4]!r})")
    ndim = magic[3]
    dims = f.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", dims)
    if shape[0] == 0 or 0 in shape:
        raise ValueError(f"{path}: IDX header says shape {shape}: no data; expected N >= 1 items")
    return np.dtype(_IDX_TYPES[magic[2]]), shape


def read_idx(
    path: str | os.PathLike,
    *,
    limit: int | None = None,
    rows: Sequence[int] | None = None,
    max_bytes: int = MAX_IDX_BYTES,
) -> np.ndarray:
    """An IDX file (gzip or raw, by its magic bytes) as a numpy array of its stored shape.

    The data is read as a stream (a gzip file is never inflated whole): the header's size is
    checked against ``max_bytes`` before anything is allocated; with ``limit`` only the first
    ``limit`` items are read, with ``rows`` only the items of those indices (in that order),
    and reading stops after the last of them.  A header that does not match the data raises
    ValueError naming the file.

    Shape:
        ``[N, *dims]``; ``[min(limit, N), *dims]`` or ``[len(rows), *dims]`` when given.

    Example:
        >>> read_idx("train-images-idx3-ubyte.gz", rows=[5, 0]).shape  # doctest: +SKIP
        (2, 28, 28)
    """
    if limit is not None and rows is not None:
        raise ValueError("read_idx takes limit or rows, not both")
    path = os.fspath(path)
    if rows is None:
        return _with_idx(path, lambda f: _read_idx_stream(f, path, limit, max_bytes))
    return _with_idx(path, lambda f: _read_idx_rows(f, path, np.asarray(rows), max_bytes))


def idx_length(path: str | os.PathLike) -> int:
    """The number of items ``N`` an IDX file's header announces (only the header is read)."""
    path = os.fspath(path)
    return _with_idx(path, lambda f: _idx_header(f, path)[1][0])


def _with_idx(path: str, read: Callable):
    """``read(stream)`` on the IDX file ``path`` (gzip or raw); gzip errors name the file."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            return read(f)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path}: truncated or corrupt gzip file ({err}); expected a "
            "complete gzip-compressed IDX file"
        ) from err


def _too_big(path: str, shape: tuple[int, ...], expected: int, max_bytes: int) -> ValueError:
    return ValueError(
        f"{path}: IDX header says shape {shape} ({expected} bytes of data), more than the "
        f"{max_bytes} bytes read at most (max_bytes); not an image data set this reader takes"
    )


def _read_into(f, out: bytearray) -> int:
    """Fill ``out`` from the stream in 1 MiB reads; the number of bytes read."""
    view, got = memoryview(out), 0
    while got < len(out):
        chunk = f.readinto(view[got : got + 2**20])
        if not chunk:
            break
        got += chunk
    return got


def _read_idx_stream(f, path: str, limit: int | None, max_bytes: int) -> np.ndarray:
    dtype, shape = _idx_header(f, path)
    item = int(np.prod(shape[1:], dtype=object)) * dtype.itemsize
    expected = shape[0] * item
    n = shape[0] if limit is None else min(limit, shape[0])
    if n * item > max_bytes:
        raise _too_big(path, shape, expected, max_bytes)
    out = bytearray(n * item)
    got = _read_into(f, out)
    extra = f.read(1) if n == shape[0] else b""
    if got < len(out) or extra:
        held = f"{got} bytes" if not extra else "more"
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes of data), "
            f"the file holds {held}"
        )
    return np.frombuffer(bytes(out), dtype=dtype).reshape((n, *shape[1:]))


def _read_idx_rows(f, path: str, rows: np.ndarray, max_bytes: int) -> np.ndarray:
    """The items ``rows`` of the stream, read in blocks of about 1 MiB up to the last of them;
    only the kept items are held."""
    dtype, shape = _idx_header(f, path)
    item = int(np.prod(shape[1:], dtype=object)) * dtype.itemsize
    rows = rows.astype(np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
        bad = rows[(rows < 0) | (rows >= shape[0])][0]
        raise ValueError(f"{path}: item {bad} asked for; the header says {shape[0]} items")
    stop = int(rows.max()) + 1 if rows.size else 0
    if stop * item > max_bytes:
        raise _too_big(path, shape, shape[0] * item, max_bytes)
    order = np.argsort(rows, kind="stable")
    wanted, out = rows[order], np.empty((len(rows), item), dtype=np.uint8)
    per = max(1, 2**20 // max(item, 1))
    for start in range(0, stop, per):
        block = bytearray(min(per, stop - start) * item)
        got = _read_into(f, block)
        if got < len(block):
            raise ValueError(
                f"{path}: IDX header says shape {shape}, the file ends inside item "
                f"{start + got // item}"
            )
        lo, hi = np.searchsorted(wanted, [start, start + len(block) // item])
        items = np.frombuffer(block, dtype=np.uint8).reshape(-1, item)
        out[order[lo:hi]] = items[wanted[lo:hi] - start]
    return out.view(dtype).reshape((len(rows), *shape[1:]))


def _find(root: str, name: str) -> str | None:
    for candidate in (name + ".gz", name, name.replace("-idx", ".idx")):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    return None


def idx_paths(root: str | os.PathLike, split: str) -> tuple[str, str]:
    """The ``(images, labels)`` files of ``split`` (``"train"``/``"test"``) in an MNIST-format
    folder; a missing file raises FileNotFoundError naming them all."""
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
    return paths[0], paths[1]


def load_idx_dataset(
    root: str | os.PathLike,
    split: str,
    num_classes: int | None = 10,
    *,
    rows: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, H, W] uint8, labels [N] int64)`` of ``split`` (``"train"``/``"test"``)
    from an MNIST-format folder; a missing file raises FileNotFoundError naming them all, a
    label outside ``0..num_classes-1`` ValueError naming the file and sample (None: no check).
    With ``rows`` only those items are read (``N = len(rows)``, in that order; both files are
    read no further than the last of them)."""
    paths = idx_paths(root, split)
    if rows is not None and idx_length(paths[0]) != idx_length(paths[1]):
        raise ValueError(
            f"{paths[0]} / {paths[1]}: expected as many labels as images, the headers say "
            f"{idx_length(paths[0])} and {idx_length(paths[1])}"
        )
    images, labels = (read_idx(p, rows=rows) for p in paths)
    items = np.arange(len(images)) if rows is None else np.asarray(rows)  # for the messages
    _check_grey_levels(images, paths[0], items)
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
                f"{paths[1]}: label {labels[bad[0]]} of sample {items[bad[0]]} is outside "
                f"0..{num_classes - 1} ({len(bad)} such labels)"
            )
    return np.array(images, dtype=np.uint8), labels


def _check_grey_levels(images: np.ndarray, path: str, items: np.ndarray) -> None:
    """Refuse values that are not 8-bit grey levels (NaN, inf, fractions, outside 0..255)
    instead of casting them."""
    if images.dtype == np.uint8:
        return
    flat = images.reshape(len(images), -1)
    values = flat.astype(np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 255) | (values != np.round(values))
    if bad.any():
        sample, pixel = np.argwhere(bad)[0]
        raise ValueError(
            f"{path}: value {flat[sample, pixel]} of sample {items[sample]} (pixel {pixel}) is "
            f"not a grey level; expected integers in 0..255 ({int(bad.sum())} such values)"
        )


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
