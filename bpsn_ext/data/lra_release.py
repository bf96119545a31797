"""LRA and sequential-image tasks as torch datasets: readers for the ``lra_release`` layout,
local generators, and the padding collate functions used by ``bpsn-ext train lra``.

``load_task(task, ...)`` returns a `TaskData` with train / val / test datasets.  Sources:
``hf=NAME`` (``datasets.load_dataset``, only when asked; text, image, mnist, fashion-mnist; it
wins over ``data``), ``data=PATH`` (a local file tree), ``generate=True`` (ListOps, Pathfinder;
not together with ``data``/``hf``), else the task's default.

=============== ========================================================================
task            data
=============== ========================================================================
``digits``      scikit-learn 8x8 digits, 64 steps x 1 (bundled; val: 10 % of train)
``mnist``,      IDX files (``data``, default ``/usr/share/datasets/fashion-mnist``),
``fashion-      784 steps x 1, pixels / 255; val: 10 % of train (seed 42)
mnist``
``listops``     ``<data>/[lra_release/]listops-1000/basic_{train,val,test}.tsv`` or generated
``pathfinder``  ``<data>/[lra_release/]pathfinder32/curv_contour_length_14`` or generated;
                1024 steps, pixels scaled to [-1, 1]; S4's seeded 80/10/10 split
``text``        IMDB bytes (``aclImdb`` folder, CSV files or a HF name), 4096 tokens
``retrieval``   ``<data>/[lra_release/]tsv_data/new_aan_pairs.{train,eval,test}.tsv``
``image``       CIFAR-10 grey (python batches folder or a HF name), 1024 steps,
                normalised with mean 122.6/255, std 61.0/255; val: 10 % of train
=============== ========================================================================

Image tasks take ``permute`` (``none``/``bitreversal``/``random``, seeded by
``permutation_seed``; see `bpsn_ext.data.sequential`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch.utils.data import Dataset

from bpsn_ext.data import listops, pathfinder
from bpsn_ext.data.images import (
    DEFAULT_FASHION_MNIST,
    idx_length,
    idx_paths,
    load_cifar10,
    load_hf_images,
    load_idx_dataset,
)
from bpsn_ext.data.sequential import permutation as make_permutation
from bpsn_ext.data.text import AAN_FILES, BYTE_VOCAB, load_hf_text, read_aan_tsv, read_imdb
from bpsn_ext.util.errors import DataSourceError

__all__ = [
    "TASKS",
    "TaskData",
    "SequenceDataset",
    "PairDataset",
    "collate_sequences",
    "collate_pairs",
    "check_sources",
    "load_task",
    "val_split",
    "read_listops_dir",
    "LISTOPS_FILES",
]

TASKS = ("digits", "mnist", "fashion-mnist", "listops", "pathfinder", "text", "retrieval", "image")
LISTOPS_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
LISTOPS_INDEX = {tok: i for i, tok in enumerate(listops.VOCAB)}
CIFAR_MEAN, CIFAR_STD = 122.6 / 255, 61.0 / 255


class SequenceDataset(Dataset):
    """Variable-length sequences and labels.  ``seqs``: a list of ``[L_i]`` token tensors or
    ``[L_i, C]`` features, or one ``[N, L(, C)]`` tensor; ``transform`` maps a stored
    sequence to the model input (e.g. uint8 pixels -> normalised float ``[L, 1]``)."""

    def __init__(self, seqs, labels, transform=None) -> None:
        if len(seqs) != len(labels):
            raise ValueError(f"{len(seqs)} sequences but {len(labels)} labels")
        self.seqs, self.labels, self.transform = seqs, torch.as_tensor(labels), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = torch.as_tensor(self.seqs[i])
        return (self.transform(x) if self.transform else x), self.labels[i]

    def subset(self, idx) -> SequenceDataset:
        idx = list(idx)
        seqs = (
            self.seqs[torch.as_tensor(idx)]
            if isinstance(self.seqs, torch.Tensor)
            else [self.seqs[i] for i in idx]
        )
        return SequenceDataset(
            seqs, self.labels[torch.as_tensor(idx, dtype=torch.long)], self.transform
        )


class PairDataset(Dataset):
    """Two token sequences per sample (AAN retrieval)."""

    def __init__(self, first, second, labels) -> None:
        if not len(first) == len(second) == len(labels):
            raise ValueError("first, second and labels must have the same length")
        self.first, self.second, self.labels = first, second, torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return torch.as_tensor(self.first[i]), torch.as_tensor(self.second[i]), self.labels[i]

    def subset(self, idx) -> PairDataset:
        idx = list(idx)
        return PairDataset(
            [self.first[i] for i in idx],
            [self.second[i] for i in idx],
            self.labels[torch.as_tensor(idx, dtype=torch.long)],
        )


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-first padded batch ``[T, N(, C)]`` (zeros) and lengths ``[N]``."""
    lengths = torch.tensor([len(s) for s in seqs])
    T = int(lengths.max())
    out = seqs[0].new_zeros((T, len(seqs), *seqs[0].shape[1:]))
    for n, s in enumerate(seqs):
        out[: len(s), n] = s
    if not out.is_floating_point():
        out = out.long()
    return out, lengths


def collate_sequences(batch):
    """``[(x, y), ...]`` -> ``(x [T, N(, C)], lengths [N], y [N])``."""
    xs, ys = zip(*batch)
    x, lengths = _pad(list(xs))
    return x, lengths, torch.stack([torch.as_tensor(y) for y in ys])


def collate_pairs(batch):
    """``[(x1, x2, y), ...]`` -> ``(x1, lengths1, x2, lengths2, y)``."""
    a, b, ys = zip(*batch)
    x1, l1 = _pad(list(a))
    x2, l2 = _pad(list(b))
    return x1, l1, x2, l2, torch.stack([torch.as_tensor(y) for y in ys])


@dataclass
class TaskData:
    """Datasets and input description of one task."""

    train: Dataset
    val: Dataset
    test: Dataset
    n_classes: int
    d_input: int = 1
    vocab_size: int | None = None
    dual: bool = False
    info: dict = field(default_factory=dict)

    @property
    def collate(self):
        return collate_pairs if self.dual else collate_sequences


def val_split(n: int, fraction: float = 0.1, seed: int = 42) -> tuple[list, list]:
    """Seeded ``(train, val)`` index lists: ``random_split(.., [n - m, m], seed 42)``,
    ``m = int(fraction * n)`` (S4's convention for the sequential-image tasks)."""
    m = int(fraction * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - m], perm[n - m :]


def _find_dir(root: str, *names: str) -> str | None:
    for name in names:
        for cand in (os.path.join(root, name), os.path.join(root, "lra_release", name)):
            if os.path.isdir(cand):
                return cand
    return None


def _listops_tokens(sample: listops.ListOpsSample, path: str, max_length: int | None):
    try:
        ids = [LISTOPS_INDEX[t] for t in sample.tokens]
    except KeyError as err:
        raise ValueError(f"{path}: unknown ListOps token {err.args[0]!r}") from err
    return torch.tensor(ids[:max_length] if max_length else ids, dtype=torch.uint8)


def read_listops_dir(
    root: str | os.PathLike, max_length: int | None = 2048
) -> dict[str, SequenceDataset]:
    """The three ListOps TSV files of ``root`` (``lra_release``, or ``listops-1000``, or the
    folder holding ``basic_*.tsv``) as token datasets (ids: `listops.VOCAB`)."""
    root = os.fspath(root)
    folder = (
        root
        if os.path.isfile(os.path.join(root, LISTOPS_FILES["train"]))
        else _find_dir(root, "listops-1000", "listops")
    )
    if folder is None:
        raise FileNotFoundError(
            f"no ListOps files under {os.path.abspath(root)!r}: expected [lra_release/]"
            f"listops-1000/{{{','.join(LISTOPS_FILES.values())}}}"
        )
    out = {}
    for split, name in LISTOPS_FILES.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ListOps file {path!r} is missing")
        samples = list(listops.read_tsv(path))
        out[split] = SequenceDataset(
            [_listops_tokens(s, path, max_length) for s in samples], [s.label for s in samples]
        )
    return out


def _listops_generated(n_train, n_val, n_test, seed, min_length, max_length, max_depth, max_args):
    samples = listops.generate(
        n_train + n_val + n_test,
        seed=seed,
        min_length=min_length,
        max_length=max_length,
        max_depth=max_depth,
        max_args=max_args,
    )
    ds = SequenceDataset(
        [_listops_tokens(s, "generated", None) for s in samples], [s.label for s in samples]
    )
    n = n_train + n_val
    return ds.subset(range(n_train)), ds.subset(range(n_train, n)), ds.subset(range(n, n + n_test))


def _pixels(order: torch.Tensor, scale: float, shift: float):
    """uint8 ``[L]`` -> float ``[L, 1]``: ``x[order] * scale + shift``."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        return (x[order].to(torch.float32) * scale + shift).unsqueeze(-1)

    return transform


def _image_task(
    x_train,
    y_train,
    x_test,
    y_test,
    scale,
    shift,
    permute,
    permutation_seed,
    n_classes=10,
    info=None,
    split=None,
) -> TaskData:
    flat_train = torch.from_numpy(np.ascontiguousarray(x_train.reshape(len(x_train), -1)))
    flat_test = torch.from_numpy(np.ascontiguousarray(x_test.reshape(len(x_test), -1)))
    L = flat_train.shape[1]
    order = make_permutation(L, permute, permutation_seed)
    tf = _pixels(order, scale, shift)
    full = SequenceDataset(flat_train, torch.from_numpy(np.asarray(y_train)), tf)
    tr, va = val_split(len(full)) if split is None else split
    test = SequenceDataset(flat_test, torch.from_numpy(np.asarray(y_test)), tf)
    info = dict(info or {}, length=L, permute=permute or "none", permutation_seed=permutation_seed)
    return TaskData(full.subset(tr), full.subset(va), test, n_classes, 1, None, False, info)


def _limit(ds: Dataset, n: int | None) -> Dataset:
    return ds if n is None or n >= len(ds) else ds.subset(range(n))


@dataclass(frozen=True)
class _Request:
    """The arguments of `load_task` that its per-task loaders read (the limits only to read no
    more than they keep; `load_task` applies them to every task)."""

    task: str
    data: str | None
    hf: str | None
    generate: bool
    seed: int
    n_train: int
    n_val: int
    n_test: int
    min_length: int
    max_length: int
    max_depth: int
    max_args: int
    contour_length: int
    resolution: int
    permute: str | None
    permutation_seed: int
    truncate: int | None
    limit_train: int | None
    limit_eval: int | None


def _hf_image_splits(hf: str) -> tuple:
    """``(x_train, y_train, x_test, y_test)`` of a HF image dataset."""
    return (*load_hf_images(hf, "train"), *load_hf_images(hf, "test"))


def _load_digits(r: _Request) -> TaskData:
    from bpsn_ext.data.digits import load_digits

    x_tr, y_tr, x_te, y_te = load_digits(seed=r.seed)
    return _image_task(
        (x_tr * 16).round().to(torch.uint8).numpy(),
        y_tr.numpy(),
        (x_te * 16).round().to(torch.uint8).numpy(),
        y_te.numpy(),
        1 / 16,
        0.0,
        r.permute,
        r.permutation_seed,
        info={"source": "sklearn"},
    )


def _load_idx(r: _Request) -> TaskData:
    """MNIST / Fashion-MNIST: a HF name, an IDX folder, or the Debian package's folder."""
    if r.hf:
        splits, source = _hf_image_splits(r.hf), f"hf:{r.hf}"
    else:
        root = r.data or DEFAULT_FASHION_MNIST
        *splits, split = _idx_splits(root, r.limit_train, r.limit_eval)
        source = os.path.abspath(root)
    return _image_task(
        *splits, 1 / 255, 0.0, r.permute, r.permutation_seed, info={"source": source}, split=split
    )


def _idx_splits(root: str, limit_train: int | None, limit_eval: int | None) -> tuple:
    """``(x_train, y_train, x_test, y_test, split)`` from IDX files, reading only the items the
    limits keep: the first ``limit_train`` / ``limit_eval`` of the seeded train / val split of the
    train file, the first ``limit_eval`` of the test file.  ``split``: the ``(train, val)``
    indices into ``x_train`` (None: `val_split` of all of it)."""
    if limit_train is None and limit_eval is None:
        return (*load_idx_dataset(root, "train"), *load_idx_dataset(root, "test"), None)
    tr, va = val_split(idx_length(idx_paths(root, "train")[0]))
    tr, va = tr[:limit_train], va[:limit_eval]
    x_train, y_train = load_idx_dataset(root, "train", rows=tr + va)
    test_rows = None
    if limit_eval is not None:
        test_rows = range(min(limit_eval, idx_length(idx_paths(root, "test")[0])))
    split = (range(len(tr)), range(len(tr), len(tr) + len(va)))
    return (x_train, y_train, *load_idx_dataset(root, "test", rows=test_rows), split)


def _load_cifar(r: _Request) -> TaskData:
    """CIFAR-10 in grey: a HF name or a folder of python batches."""
    if r.hf:
        splits, source = _hf_image_splits(r.hf), f"hf:{r.hf}"
    else:
        splits = (*load_cifar10(r.data, "train"), *load_cifar10(r.data, "test"))
        source = os.path.abspath(r.data)
    return _image_task(
        *splits,
        1 / (255 * CIFAR_STD),
        -CIFAR_MEAN / CIFAR_STD,
        r.permute,
        r.permutation_seed,
        info={"source": source},
    )


def _load_listops(r: _Request) -> TaskData:
    info: dict = {"task": r.task}
    if r.generate:
        tr, va, te = _listops_generated(
            r.n_train,
            r.n_val,
            r.n_test,
            r.seed,
            r.min_length,
            r.max_length,
            r.max_depth,
            r.max_args,
        )
        info.update(
            source="generated",
            seed=r.seed,
            min_length=r.min_length,
            max_length=r.max_length,
            max_depth=r.max_depth,
            max_args=r.max_args,
        )
    else:
        d = read_listops_dir(r.data, r.truncate or 2048)
        tr, va, te = d["train"], d["val"], d["test"]
        info["source"] = os.path.abspath(r.data)
    return TaskData(tr, va, te, 10, 1, len(listops.VOCAB), False, info)


def _pathfinder_generated(r: _Request):
    """Seeded images, labels and ``(train, val, test)`` index ranges of generated data."""
    name = f"pathfinder{r.resolution}"
    preset = pathfinder.PRESETS.get(name, pathfinder.PRESETS["pathfinder32"])
    samples = pathfinder.generate(
        r.n_train + r.n_val + r.n_test,
        preset,
        seed=r.seed,
        contour_length=r.contour_length,
        size=r.resolution,
    )
    n = r.n_train + r.n_val
    idx = (range(r.n_train), range(r.n_train, n), range(n, n + r.n_test))
    return np.stack([s.image for s in samples]), np.asarray([s.label for s in samples]), idx


def _load_pathfinder(r: _Request) -> TaskData:
    info: dict = {"task": r.task}
    if r.generate:
        images, labels, idx = _pathfinder_generated(r)
        info.update(source="generated", seed=r.seed, contour_length=r.contour_length)
    else:
        difficulty = {6: "easy", 9: "intermediate", 14: "hard"}.get(
            r.contour_length, f"curv_contour_length_{r.contour_length}"
        )
        images, labels = pathfinder.read_pathfinder(
            r.data, resolution=r.resolution, difficulty=difficulty
        )
        idx = pathfinder.split_indices(len(labels))
        info["source"] = os.path.abspath(r.data)
    flat = torch.from_numpy(images.reshape(len(images), -1).copy())
    full = SequenceDataset(
        flat, torch.from_numpy(labels), _pixels(torch.arange(flat.shape[1]), 2 / 255, -1.0)
    )
    info["length"] = flat.shape[1]
    return TaskData(*(full.subset(i) for i in idx), 2, 1, None, False, info)


def _load_text(r: _Request) -> TaskData:
    cap = r.truncate or 4096
    if r.hf:
        seqs, labels = load_hf_text(r.hf, "train", cap)
        te_seqs, te_labels = load_hf_text(r.hf, "test", cap)
        source = f"hf:{r.hf}"
    else:
        seqs, labels, te_seqs, te_labels = _imdb_local(r.data, cap)
        source = os.path.abspath(r.data)
    full = SequenceDataset([torch.from_numpy(s) for s in seqs], labels)
    tr, va = val_split(len(full))
    te = SequenceDataset([torch.from_numpy(s) for s in te_seqs], te_labels)
    return TaskData(
        full.subset(tr),
        full.subset(va),
        te,
        2,
        1,
        BYTE_VOCAB,
        False,
        {"task": r.task, "source": source},
    )


def _load_retrieval(r: _Request) -> TaskData:
    folder = (
        r.data
        if os.path.isfile(os.path.join(r.data, AAN_FILES["train"]))
        else _find_dir(r.data, "tsv_data")
    )
    if folder is None:
        raise FileNotFoundError(
            f"no AAN files under {os.path.abspath(r.data)!r}: expected [lra_release/]tsv_data/"
            f"{{{','.join(AAN_FILES.values())}}}"
        )
    splits = []
    for name in AAN_FILES.values():
        a, b, y = read_aan_tsv(os.path.join(folder, name), r.truncate or 4000)
        splits.append(
            PairDataset([torch.from_numpy(s) for s in a], [torch.from_numpy(s) for s in b], y)
        )
    return TaskData(
        *splits, 2, 1, BYTE_VOCAB, True, {"task": r.task, "source": os.path.abspath(folder)}
    )


@dataclass(frozen=True)
class _Loader:
    """How one task is read: the loader, the data sources it takes (of ``data``, ``hf``,
    ``generate``) and, when it has no default source, what it needs (a `DataSourceError`
    template)."""

    load: Callable[[_Request], TaskData]
    sources: tuple[str, ...]
    needs: str = ""


_LOADERS = {
    "digits": _Loader(_load_digits, ()),
    "mnist": _Loader(_load_idx, ("data", "hf")),
    "fashion-mnist": _Loader(_load_idx, ("data", "hf")),
    "listops": _Loader(_load_listops, ("data", "generate"), "{data:LRA_DIR} or {generate:True}"),
    "pathfinder": _Loader(
        _load_pathfinder, ("data", "generate"), "{data:LRA_DIR} or {generate:True}"
    ),
    "text": _Loader(
        _load_text,
        ("data", "hf"),
        "{data:PATH} (aclImdb folder or CSV files) or {hf:imdb}; nothing is downloaded",
    ),
    "retrieval": _Loader(_load_retrieval, ("data",), "{data:LRA_DIR} (tsv_data/new_aan_pairs.*)"),
    "image": _Loader(
        _load_cifar,
        ("data", "hf"),
        "{data:CIFAR_DIR} (python batches) or {hf:NAME} (e.g. uoft-cs/cifar10); "
        "nothing is downloaded",
    ),
}
_IMAGE_TASKS = ("digits", "mnist", "fashion-mnist", "image")


def _tasks_taking(source: str) -> tuple[str, ...]:
    return tuple(t for t in TASKS if source in _LOADERS[t].sources)


def check_sources(
    task: str,
    *,
    data: str | None = None,
    hf: str | None = None,
    generate: bool = False,
    permute: str | None = None,
) -> None:
    """Refuse data sources that `load_task` would not read for ``task`` (before any reading).

    Raises:
        DataSourceError: a source the task does not take, ``generate`` with ``data``/``hf``,
            or no source for a task without a default; the message names the arguments.
        ValueError: an unknown task, or ``permute`` for a task that is not an image task.

    Example:
        >>> check_sources("listops", generate=True)  # no error
        >>> check_sources("listops")
        Traceback (most recent call last):
        bpsn_ext.util.errors.DataSourceError: task listops needs data=LRA_DIR or generate=True
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    loader = _LOADERS[task]
    if generate and "generate" not in loader.sources:
        raise DataSourceError(
            "{generate:True} is for listops and pathfinder, not {task!r}", task=task
        )
    if generate and (data or hf):
        raise DataSourceError(
            "task {task!r}: pass one data source, {data:PATH}/{hf:NAME} or "
            "{generate:True}, not both",
            task=task,
        )
    if hf and "hf" not in loader.sources:
        raise DataSourceError(
            "{hf:NAME} applies to the tasks {tasks}, not {task!r}",
            tasks=_tasks_taking("hf"),
            task=task,
        )
    if data and "data" not in loader.sources:  # digits
        raise DataSourceError(
            "task {task} uses the bundled scikit-learn digits; it takes no {data:PATH}", task=task
        )
    if permute not in (None, "none") and task not in _IMAGE_TASKS:
        raise ValueError(f"permute applies to the image tasks {_IMAGE_TASKS}, not {task!r}")
    if loader.needs and not (data or hf or generate):
        raise DataSourceError("task {task} needs " + loader.needs, task=task)


def _finish(td: TaskData, limit_train: int | None, limit_eval: int | None) -> TaskData:
    """Keep the first ``limit_train`` / ``limit_eval`` samples; record the split sizes."""
    td.train = _limit(td.train, limit_train)
    td.val = _limit(td.val, limit_eval)
    td.test = _limit(td.test, limit_eval)
    td.info.update(n_train=len(td.train), n_val=len(td.val), n_test=len(td.test))
    return td


def load_task(
    task: str,
    *,
    data: str | None = None,
    hf: str | None = None,
    generate: bool = False,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 200,
    min_length: int = 500,
    max_length: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
    contour_length: int = 14,
    resolution: int = 32,
    permute: str | None = None,
    permutation_seed: int = 0,
    truncate: int | None = None,
    limit_train: int | None = None,
    limit_eval: int | None = None,
) -> TaskData:
    """The train / val / test datasets of ``task`` (see the module docstring).

    Generation (``generate=True``): ListOps ``n_train + n_val + n_test`` distinct samples with
    ``min_length < tokens < max_length`` (seeded); Pathfinder the same counts at
    ``resolution`` and ``contour_length``.  ``truncate`` caps token sequences (LRA: 2048
    ListOps, 4096 Text, 4000 Retrieval).  ``limit_train``/``limit_eval`` keep the first
    samples of train / val and test (quick runs); from IDX files only those items are read,
    and each file no further than the last of them.  Bad sources raise `DataSourceError` (see
    `check_sources`).
    """
    arguments = locals()  # the signature, once
    check_sources(task, data=data, hf=hf, generate=generate, permute=permute)
    request = _Request(**{f.name: arguments[f.name] for f in fields(_Request)})
    return _finish(_LOADERS[task].load(request), limit_train, limit_eval)


def _imdb_local(path: str, cap: int):
    """aclImdb folder, a folder with ``train.csv``/``test.csv``, or one CSV (seeded 80/20)."""
    if os.path.isdir(path):
        csvs = [os.path.join(path, f"{s}.csv") for s in ("train", "test")]
        if all(os.path.isfile(c) for c in csvs):
            tr = read_imdb(csvs[0], max_length=cap)
            te = read_imdb(csvs[1], max_length=cap)
        else:
            tr = read_imdb(path, "train", cap)
            te = read_imdb(path, "test", cap)
        return tr[0], tr[1], te[0], te[1]
    seqs, labels = read_imdb(path, max_length=cap)
    keep, test = val_split(len(seqs), fraction=0.2)
    return ([seqs[i] for i in keep], labels[keep], [seqs[i] for i in test], labels[test])
