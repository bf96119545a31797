"""GLUE readers: the TSV tree of ``download_glue_data.py`` and HF ``datasets`` the user has.

TSV layout (that of GLUE's ``download_glue_data.py``): ``<root>/<TASK>/train.tsv`` and
``dev.tsv`` (MNLI:
``dev_matched.tsv`` and ``dev_mismatched.tsv``), with each task's own column schema (the
header row's columns; then text a / text b / label):

* ``cola`` (``CoLA``): **no header**; 4 columns source, label, original label, sentence;
  sentence / - / label (0, 1).
* ``sst2`` (``SST-2``): sentence, label; sentence / - / label.
* ``mrpc`` (``MRPC``): Quality, #1 ID, #2 ID, #1 String, #2 String; #1 String / #2 String /
  Quality.
* ``qqp`` (``QQP``): id, qid1, qid2, question1, question2, is_duplicate; question1 /
  question2 / is_duplicate.
* ``stsb`` (``STS-B``): index, genre, filename, year, old_index, source1, source2, sentence1,
  sentence2, score; sentence1 / sentence2 / score (a float in [0, 5]).
* ``mnli`` (``MNLI``): index, promptID, pairID, genre, four parse columns, sentence1,
  sentence2, label1, (label2-5 in the dev files,) gold_label; sentence1 / sentence2 /
  gold_label.
* ``qnli`` (``QNLI``): index, question, sentence, label; question / sentence / label.
* ``rte`` (``RTE``): index, sentence1, sentence2, label; sentence1 / sentence2 / label.

Label ids follow HF ``datasets``' ``glue`` configs (MNLI: entailment 0, neutral 1,
contradiction 2; QNLI/RTE: entailment 0, not_entailment 1), so both readers agree.  A malformed
row raises `GlueFormatError` naming the file and line (``skip_bad_rows=True`` skips it
instead; some QQP copies have a few broken rows).

`write_glue_fixture` writes small synthetic files in this layout (made-up words, not GLUE
text) for tests, examples and docs.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Sequence
from typing import NamedTuple

import torch

from bpsn_ext.data._files import not_utf8

__all__ = [
    "TASKS",
    "GlueTask",
    "GlueExample",
    "GlueFormatError",
    "load_hf_split",
    "read_glue_tsv",
    "load_glue",
    "load_glue_hf",
    "task_dir",
    "GlueDataset",
    "GlueCollator",
    "write_glue_fixture",
]


class GlueFormatError(ValueError):
    """A GLUE file or row does not have the expected layout."""


class GlueExample(NamedTuple):
    text_a: str
    text_b: str | None
    label: int | float


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """Layout of one GLUE task (see the module docstring)."""

    name: str
    dirname: str
    columns: tuple[str, ...]  # the train.tsv schema (CoLA: names we give its 4 columns)
    text_a: str
    text_b: str | None
    label: str
    labels: tuple[str, ...] | None  # label strings in id order; None: regression
    files: dict  # split -> file name
    header: bool = True
    hf_columns: tuple[str, str | None] = ("sentence", None)
    hf_splits: dict = dataclasses.field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


_MNLI_COLS = (
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
    "label1",
    "gold_label",
)
_DEV = {"train": "train.tsv", "dev": "dev.tsv"}
_HF = {"train": "train", "dev": "validation"}

TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask(
            "cola",
            "CoLA",
            ("source", "label", "original_label", "sentence"),
            "sentence",
            None,
            "label",
            ("0", "1"),
            _DEV,
            header=False,
            hf_columns=("sentence", None),
            hf_splits=_HF,
        ),
        GlueTask(
            "sst2",
            "SST-2",
            ("sentence", "label"),
            "sentence",
            None,
            "label",
            ("0", "1"),
            _DEV,
            hf_columns=("sentence", None),
            hf_splits=_HF,
        ),
        GlueTask(
            "mrpc",
            "MRPC",
            ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
            "#1 String",
            "#2 String",
            "Quality",
            ("0", "1"),
            _DEV,
            hf_columns=("sentence1", "sentence2"),
            hf_splits=_HF,
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
            "question1",
            "question2",
            "is_duplicate",
            ("0", "1"),
            _DEV,
            hf_columns=("question1", "question2"),
            hf_splits=_HF,
        ),
        GlueTask(
            "stsb",
            "STS-B",
            (
                "index",
                "genre",
                "filename",
                "year",
                "old_index",
                "source1",
                "source2",
                "sentence1",
                "sentence2",
                "score",
            ),
            "sentence1",
            "sentence2",
            "score",
            None,
            _DEV,
            hf_columns=("sentence1", "sentence2"),
            hf_splits=_HF,
        ),
        GlueTask(
            "mnli",
            "MNLI",
            _MNLI_COLS,
            "sentence1",
            "sentence2",
            "gold_label",
            ("entailment", "neutral", "contradiction"),
            {
                "train": "train.tsv",
                "dev": "dev_matched.tsv",
                "dev_matched": "dev_matched.tsv",
                "dev_mismatched": "dev_mismatched.tsv",
            },
            hf_columns=("premise", "hypothesis"),
            hf_splits={
                "train": "train",
                "dev": "validation_matched",
                "dev_matched": "validation_matched",
                "dev_mismatched": "validation_mismatched",
            },
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("index", "question", "sentence", "label"),
            "question",
            "sentence",
            "label",
            ("entailment", "not_entailment"),
            _DEV,
            hf_columns=("question", "sentence"),
            hf_splits=_HF,
        ),
        GlueTask(
            "rte",
            "RTE",
            ("index", "sentence1", "sentence2", "label"),
            "sentence1",
            "sentence2",
            "label",
            ("entailment", "not_entailment"),
            _DEV,
            hf_columns=("sentence1", "sentence2"),
            hf_splits=_HF,
        ),
    )
}
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(task: str | GlueTask) -> GlueTask:
    """The `GlueTask` for a name (``sst2``, ``SST-2``, ``sts-b``, ...)."""
    if isinstance(task, GlueTask):
        return task
    key = str(task).lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[key]


def task_dir(root: str | os.PathLike, task: str | GlueTask) -> str:
    """The task's folder: ``root/<TASK>`` (``SST-2``, also ``sst2``), or ``root`` itself when it
    already holds ``train.tsv``."""
    t = get_task(task)
    root = os.fspath(root)
    for name in (t.dirname, t.name, t.dirname.lower(), t.name.upper()):
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    if any(os.path.isfile(os.path.join(root, f)) for f in set(t.files.values())):
        return root
    raise FileNotFoundError(
        f"no GLUE {t.name} data under {os.path.abspath(root)!r}: expected "
        f"{os.path.join(root, t.dirname, 'train.tsv')} and "
        f"{os.path.join(root, t.dirname, t.files['dev'])} (the download_glue_data.py layout)"
    )


def _parse_label(task: GlueTask, value: str, where: str) -> int | float:
    value = value.strip()
    if task.labels is None:
        try:
            score = float(value)
        except ValueError:
            raise GlueFormatError(f"{where}: score {value!r} is not a number") from None
        if not 0.0 <= score <= 5.0:  # also rejects nan
            raise GlueFormatError(f"{where}: score {value!r} is not in [0, 5]")
        return score
    if value not in task.labels:
        raise GlueFormatError(f"{where}: label {value!r} is not one of {list(task.labels)}")
    return task.labels.index(value)


def read_glue_tsv(
    path: str | os.PathLike, task: str | GlueTask, *, skip_bad_rows: bool = False
) -> list[GlueExample]:
    """Read one GLUE TSV file of ``task`` (fields split on tabs, no quoting, as GLUE's own
    readers do).  Columns are found by the header's names (CoLA: by position)."""
    t = get_task(task)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GLUE file not found: {os.path.abspath(path)!r}")
    examples: list[GlueExample] = []
    # utf-8-sig: MRPC's files begin with a byte-order mark (copied from msr_paraphrase_*.txt),
    # which would otherwise become part of the first header name ("\ufeffQuality")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from err
    if lines and lines[-1] == "":
        lines.pop()
    start = 0
    if t.header:
        if not lines:
            raise GlueFormatError(f"{path}:1: empty file, expected a header row {t.columns}")
        names = lines[0].rstrip("\r").split("\t")
        needed = [c for c in (t.text_a, t.text_b, t.label) if c is not None]
        missing = [c for c in needed if c not in names]
        if missing:
            raise GlueFormatError(
                f"{path}:1: header {names} lacks the column(s) {missing} of the {t.name} "
                f"layout {list(t.columns)}"
            )
        start = 1
    else:
        names = list(t.columns)
    index = {c: i for i, c in enumerate(names)}
    for lineno, line in enumerate(lines[start:], start=start + 1):
        line = line.rstrip("\r")
        where = f"{path}:{lineno}"
        try:
            if not line.strip():
                raise GlueFormatError(f"{where}: empty row")
            row = line.split("\t")
            if len(row) != len(names):
                raise GlueFormatError(
                    f"{where}: expected {len(names)} tab-separated columns "
                    f"({', '.join(names)}), got {len(row)}"
                )
            a = row[index[t.text_a]]
            b = None if t.text_b is None else row[index[t.text_b]]
            examples.append(GlueExample(a, b, _parse_label(t, row[index[t.label]], where)))
        except GlueFormatError:
            if not skip_bad_rows:
                raise
    if not examples:
        raise GlueFormatError(f"{path}: no examples")
    return examples


def load_glue(
    root: str | os.PathLike,
    task: str | GlueTask,
    split: str = "train",
    *,
    skip_bad_rows: bool = False,
) -> list[GlueExample]:
    """Examples of ``split`` (``train``, ``dev``; MNLI also ``dev_matched``/``dev_mismatched``)
    from a GLUE TSV tree (or a task folder)."""
    t = get_task(task)
    if split not in t.files:
        raise ValueError(f"{t.name} has the splits {sorted(t.files)}, got {split!r}")
    return read_glue_tsv(
        os.path.join(task_dir(root, t), t.files[split]), t, skip_bad_rows=skip_bad_rows
    )


def load_glue_hf(
    source: str | os.PathLike,
    task: str | GlueTask,
    split: str = "train",
    *,
    allow_download: bool = False,
) -> list[GlueExample]:
    """Examples from HF ``datasets``: a ``save_to_disk`` folder (``load_from_disk``: a
    ``DatasetDict`` with the GLUE split names, or one ``Dataset``), or a name
    ``glue:sst2`` / ``nyu-mll/glue:sst2`` / ``glue`` (config = the task) that is already in the
    local cache.  Names are loaded offline unless ``allow_download=True``."""
    t = get_task(task)
    if split not in t.hf_splits:
        raise ValueError(f"{t.name} has the splits {sorted(t.hf_splits)}, got {split!r}")
    hf_split = t.hf_splits[split]
    source = os.fspath(source)
    ds = load_hf_split(source, hf_split, t.name, allow_download=allow_download)
    a_col, b_col = t.hf_columns
    missing = [c for c in (a_col, b_col, "label") if c is not None and c not in ds.column_names]
    if missing:
        raise ValueError(
            f"the {t.name} dataset needs the columns {missing}; it has {ds.column_names}"
        )
    out = []
    for i, row in enumerate(ds):
        label = row["label"]
        bad = label is None or (
            not 0 <= float(label) <= 5 if t.is_regression else not 0 <= int(label) < len(t.labels)
        )
        if bad:  # GLUE test splits carry the label -1 (STS-B: -1.0)
            raise GlueFormatError(
                f"{source} [{hf_split}] row {i}: label {label!r} is not a "
                f"valid {t.name} label (unlabelled test split?)"
            )
        label = float(label) if t.is_regression else int(label)
        out.append(GlueExample(row[a_col], None if b_col is None else row[b_col], label))
    return out


def load_hf_split(
    source: str | os.PathLike,
    split: str,
    config: str | None = None,
    *,
    allow_download: bool = False,
):
    """One split of a HF dataset: a ``save_to_disk`` folder (a ``DatasetDict``, or one
    ``Dataset`` taken as it is) or a cached name ``name[:config]`` (``config`` fills in a
    missing one), loaded offline unless ``allow_download=True``."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover
        raise ImportError("reading a Hugging Face dataset needs the 'datasets' package") from exc
    source = os.fspath(source)
    if os.path.isdir(source):
        ds = datasets.load_from_disk(source)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{source!r} has the splits {sorted(ds)}, not {split!r}")
            ds = ds[split]
        return ds
    name, _, named_config = source.partition(":")
    return _load_named(datasets, name, named_config or config, split, allow_download)


def _load_named(datasets, name: str, config: str | None, split: str, allow_download: bool):
    if allow_download:
        return datasets.load_dataset(name, config, split=split)
    saved = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    saved_cfg = {k: getattr(datasets.config, k, None) for k in saved}
    try:
        for k in saved:
            os.environ[k] = "1"
            if hasattr(datasets.config, k):
                setattr(datasets.config, k, True)
        return datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        raise FileNotFoundError(
            f"could not load {name}:{config} [{split}] from the local HF cache (offline): {exc}. "
            "Expected a save_to_disk folder or a name in that cache (nothing is downloaded)"
        ) from exc
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
            if hasattr(datasets.config, k):
                setattr(datasets.config, k, saved_cfg[k])


# ---------------------------------------------------------------------------- tensors
class GlueDataset(torch.utils.data.Dataset):
    """Tokenised examples: item ``i`` is ``(ids, segment_ids, label)`` (lists, no padding)."""

    def __init__(self, examples: Sequence[GlueExample], tokenizer, max_length: int = 128) -> None:
        self.examples = [GlueExample(*e) for e in examples]
        self.max_length = max_length
        self.items = [
            (*tokenizer.encode(e.text_a, e.text_b, max_length), e.label) for e in self.examples
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


class GlueCollator:
    """Pads a batch to its longest sample: ``{"input_ids", "segment_ids"}`` ``[L, B]``
    (time-first), ``"lengths"`` ``[B]``, ``"labels"`` ``[B]`` (long, or float for STS-B)."""

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        L = max(len(ids) for ids, _, _ in batch)
        ids = torch.full((L, len(batch)), self.pad_id, dtype=torch.long)
        seg = torch.zeros((L, len(batch)), dtype=torch.long)
        for j, (i, s, _) in enumerate(batch):
            ids[: len(i), j] = torch.tensor(i)
            seg[: len(s), j] = torch.tensor(s)
        labels = [lab for _, _, lab in batch]
        dtype = torch.float32 if isinstance(labels[0], float) else torch.long
        return {
            "input_ids": ids,
            "segment_ids": seg,
            "lengths": torch.tensor([len(i) for i, _, _ in batch]),
            "labels": torch.tensor(labels, dtype=dtype),
        }


# ---------------------------------------------------------------------------- fixtures
_WORDS = (
    "blick dax wug fep toma lorp zav kiki bouba snarf glim yop trel mip quor vash "
    "pim dree sook nalu"
).split()
_CUES = ("zib", "gorp", "flen")  # class k is marked by _CUES[k]


def _sentence(rng: random.Random, cue: str | None, n_cues: int = 1) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 9))]
    for _ in range(n_cues if cue else 0):
        words.insert(rng.randint(0, len(words)), cue)
    return " ".join(words).capitalize() + rng.choice([".", "!", "?"])


def _rows(t: GlueTask, rng: random.Random, n: int, dev: bool) -> list[list[str]]:
    rows = []
    for i in range(n):
        if t.labels is None:
            k = rng.randint(0, 5)
            a, b = _sentence(rng, None), _sentence(rng, "zib", k)
            label = f"{float(k):.3f}"
        else:
            k = i % len(t.labels) if i < len(t.labels) else rng.randrange(len(t.labels))
            label = t.labels[k]
            a = _sentence(rng, _CUES[k] if t.text_b is None else None)
            b = _sentence(rng, _CUES[k]) if t.text_b is not None else None
        values = {t.text_a: a, t.label: label}
        if t.text_b is not None:
            values[t.text_b] = b
        row = []
        for c in t.columns:
            if c in values:
                row.append(values[c])
            elif c == "original_label":
                row.append("" if label == "1" else "*")
            elif c == "source":
                row.append("fx01")
            elif c.endswith("_parse"):
                row.append("( " + (a if c.startswith("sentence1") else b) + " )")
            elif c == "genre":
                row.append("fiction")
            elif c == "label1":
                row.append(label)
            else:
                row.append(str(i))
        if dev and t.name == "mnli":  # dev has label1..label5 before gold_label
            row = row[:-1] + [label] * 4 + row[-1:]
        rows.append(row)
    return rows


def write_glue_fixture(
    root: str | os.PathLike,
    tasks: Sequence[str] | None = None,
    n: int = 32,
    seed: int = 0,
    n_dev: int | None = None,
) -> dict[str, str]:
    """Write synthetic GLUE-layout files under ``root`` (made-up words, **not GLUE data**).

    For each task: ``<root>/<TASK>/train.tsv`` (``n`` rows) and the dev file(s) (``n_dev``,
    default ``max(8, n // 4)`` rows), with the task's real column schema (CoLA without a
    header, MNLI dev with label1..label5).  Labels are learnable: class k contains the cue word
    ``zib``/``gorp``/``flen``; the STS-B score counts ``zib`` in sentence 2.  Returns
    ``{task: folder}``.
    """
    tasks = list(TASKS) if tasks is None else [get_task(x).name for x in tasks]
    n_dev = max(8, n // 4) if n_dev is None else n_dev
    if n < 1 or n_dev < 1:
        raise ValueError(f"need n >= 1 and n_dev >= 1, got {n} and {n_dev}")
    out = {}
    for k, name in enumerate(tasks):
        t = TASKS[name]
        folder = os.path.join(os.fspath(root), t.dirname)
        os.makedirs(folder, exist_ok=True)
        rng = random.Random(seed * 1000 + k)
        for split, fname in t.files.items():
            if split == "dev_matched":
                continue  # the same file as "dev"
            dev = split != "train"
            rows = _rows(t, rng, n if not dev else n_dev, dev)
            header = list(t.columns)
            if dev and t.name == "mnli":
                header = header[:-1] + ["label2", "label3", "label4", "label5"] + header[-1:]
            lines = ([("\t".join(header))] if t.header else []) + ["\t".join(r) for r in rows]
            with open(os.path.join(folder, fname), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        out[name] = folder
    return out
