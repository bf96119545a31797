"""Byte-level text for LRA Text (IMDB) and LRA Retrieval (AAN), read from local files.

Tokens are UTF-8 bytes shifted by one (``0`` is padding), so the vocabulary has
`BYTE_VOCAB` = 257 entries, truncated to ``max_length`` bytes (LRA: 4096 for Text,
4000 per document for Retrieval).  (S4 builds a character vocabulary from the corpus instead;
on ASCII text both are one token per character.)

* IMDB: an ``aclImdb`` folder (``<split>/pos/*.txt``, ``<split>/neg/*.txt``), or a CSV file
  with a text column (``text``/``review``/``sentence``) and a label column (``label`` 0/1, or
  ``sentiment`` ``positive``/``negative``); or ``load_hf_text(name)`` for a HF name.
* AAN: ``new_aan_pairs.{train,eval,test}.tsv`` from ``lra_release/tsv_data``: five
  tab-separated columns ``label id1 id2 text1 text2``, no header, label 0/1 (``0.0``/``1.0``
  accepted).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from bpsn_ext.data._files import lift_csv_field_limit, utf8_errors

__all__ = ["BYTE_VOCAB", "encode_bytes", "read_imdb", "read_aan_tsv", "load_hf_text", "AAN_FILES"]

BYTE_VOCAB = 257
AAN_FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
_TEXT_COLUMNS = ("text", "review", "sentence")
_LABEL_WORDS = {"positive": 1, "pos": 1, "negative": 0, "neg": 0}


def encode_bytes(text: str, max_length: int | None = None) -> np.ndarray:
    """``text`` as int16 tokens ``byte + 1`` ``[min(len, max_length)]``."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if max_length is not None:
        data = data[:max_length]
    return data.astype(np.int16) + 1


def _label(value: str, path: str, line: int) -> int:
    v = value.strip().lower()
    if v in _LABEL_WORDS:
        return _LABEL_WORDS[v]
    try:
        f = float(v)
    except ValueError:
        f = -1.0
    if f not in (0.0, 1.0):
        raise ValueError(f"{path}:{line}: expected a label 0/1, got {value!r}")
    return int(f)


def read_imdb(
    path: str | os.PathLike, split: str = "train", max_length: int | None = 4096
) -> tuple[list[np.ndarray], np.ndarray]:
    """Byte tokens and labels (1 = positive) of an ``aclImdb`` folder's ``split`` or of a CSV
    file (then ``split`` is ignored)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        root = (
            os.path.join(path, "aclImdb") if os.path.isdir(os.path.join(path, "aclImdb")) else path
        )
        seqs, labels = [], []
        for label, sub in ((0, "neg"), (1, "pos")):
            folder = os.path.join(root, split, sub)
            if not os.path.isdir(folder):
                raise FileNotFoundError(
                    f"IMDB folder {os.path.abspath(folder)!r} is missing: expected "
                    f"aclImdb/{{train,test}}/{{pos,neg}}/*.txt under {path!r}, or a CSV file"
                )
            for name in sorted(os.listdir(folder)):
                if name.endswith(".txt"):
                    file = os.path.join(folder, name)
                    with utf8_errors(file), open(file, encoding="utf-8") as f:
                        seqs.append(encode_bytes(f.read(), max_length))
                    labels.append(label)
        return seqs, np.asarray(labels, dtype=np.int64)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no IMDB data at {os.path.abspath(path)!r} (an aclImdb folder "
            "or a CSV file with text and label columns)"
        )
    lift_csv_field_limit()
    seqs, labels = [], []
    with utf8_errors(path), open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        text_col = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
        label_col = next((header.index(c) for c in ("label", "sentiment") if c in header), None)
        if text_col is None or label_col is None:
            raise ValueError(
                f"{path}:1: expected a header with a text column "
                f"({'/'.join(_TEXT_COLUMNS)}) and label/sentiment, got {header}"
            )
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            seqs.append(encode_bytes(row[text_col], max_length))
            labels.append(_label(row[label_col], path, line))
    return seqs, np.asarray(labels, dtype=np.int64)


def read_aan_tsv(
    path: str | os.PathLike, max_length: int | None = 4000
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``(docs1, docs2, labels)`` of an AAN pairs TSV; malformed rows name file and line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no AAN file at {os.path.abspath(path)!r} (expected "
            f"lra_release/tsv_data/{{{','.join(AAN_FILES.values())}}})"
        )
    lift_csv_field_limit()
    docs1, docs2, labels = [], [], []
    with utf8_errors(path), open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) != 5:
                raise ValueError(
                    f"{path}:{line}: expected 5 tab-separated fields "
                    f"'label id1 id2 text1 text2', got {len(row)}"
                )
            labels.append(_label(row[0], path, line))
            docs1.append(encode_bytes(row[3], max_length))
            docs2.append(encode_bytes(row[4], max_length))
    return docs1, docs2, np.asarray(labels, dtype=np.int64)


def load_hf_text(
    name: str, split: str, max_length: int | None = 4096
) -> tuple[list[np.ndarray], np.ndarray]:
    """A text classification set via ``datasets.load_dataset`` (``NAME[:CONFIG]``, e.g.
    ``imdb``); only when the user asks for it."""
    import datasets

    repo, _, config = name.partition(":")
    ds = datasets.load_dataset(repo, config or None, split=split)
    col = next((c for c in _TEXT_COLUMNS if c in ds.column_names), None)
    if col is None or "label" not in ds.column_names:
        raise ValueError(f"{name}: expected a text and a 'label' column, got {ds.column_names}")
    return ([encode_bytes(t, max_length) for t in ds[col]], np.asarray(ds["label"], dtype=np.int64))
