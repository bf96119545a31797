"""WordNet glosses as offline text: a pretraining corpus and a gloss-category task.

Princeton WordNet's database files (Debian: ``apt-get install wordnet-base``, which puts them in
``/usr/share/wordnet/data.noun``) hold one synset per line::

    00015388 05 n 01 animal 0 ... | a living organism characterized by voluntary movement

field 1 is the byte offset, field 2 the lexicographer file number (``05`` = ``noun.animal``, see
``LEXNAMES``), field 3 the part of speech, then the words and pointers; the gloss (the
definition and any quoted examples) follows ``" | "``.  Lines starting with two spaces are the
licence header.

* ``read_wordnet_data``: the synsets of one ``data.*`` file.
* ``gloss_split``: a seeded, balanced two-category train/dev split of the glosses.
* ``write_gloss_data``: ``OUT/SST-2/{train,dev}.tsv`` (the SST-2 / GLUE layout, so that
  ``train glue --task sst2 --data OUT`` reads it), ``OUT/corpus.txt`` (one gloss a line, the
  dev glosses left out) and ``OUT/labels.json``.

Example:

    synsets = read_wordnet_data("/usr/share/wordnet/data.noun")
    train, dev = gloss_split(synsets, ("noun.artifact", "noun.act"), seed=0)
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from typing import NamedTuple

from bpsn_ext.util.errors import OutputExistsError
from bpsn_ext.util.files import atomic_open

__all__ = [
    "LEXNAMES",
    "Synset",
    "read_wordnet_data",
    "gloss_split",
    "write_gloss_data",
    "DEFAULT_CATEGORIES",
]

# WordNet's lexicographer files, in file-number order (lexnames(5WN))
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
DEFAULT_CATEGORIES = ("noun.act", "noun.artifact")


class Synset(NamedTuple):
    offset: str
    category: str  # e.g. "noun.animal"
    words: tuple[str, ...]
    gloss: str


def _parse_line(line: str, where: str) -> Synset:
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 5 or not fields[0].isdigit() or not fields[1].isdigit():
        raise ValueError(
            f"{where}: not a WordNet data line (expected 'OFFSET LEX_FILENUM "
            f"POS W_CNT WORD ... | GLOSS'), got {line[:60]!r}"
        )
    lex = int(fields[1])
    if lex >= len(LEXNAMES):
        raise ValueError(
            f"{where}: lexicographer file number {fields[1]} is not in 00..{len(LEXNAMES) - 1:02d}"
        )
    try:
        n_words = int(fields[3], 16)
    except ValueError:
        raise ValueError(f"{where}: word count {fields[3]!r} is not hexadecimal") from None
    words = tuple(w.replace("_", " ") for w in fields[4 : 4 + 2 * n_words : 2])
    return Synset(fields[0], LEXNAMES[lex], words, " ".join(gloss.split()))


def read_wordnet_data(path: str | os.PathLike) -> list[Synset]:
    """The synsets of a WordNet ``data.noun`` / ``data.verb`` / ... file (licence header
    skipped).  Raises ``ValueError`` naming the file and line of a malformed row."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no WordNet data file at {os.path.abspath(path)!r}: install Debian's wordnet-base "
            "(apt-get install wordnet-base) and pass /usr/share/wordnet/data.noun"
        )
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("  ") or not line.strip():
                continue
            out.append(_parse_line(line.rstrip("\n"), f"{path}:{n}"))
    if not out:
        raise ValueError(f"{path}: no synsets found (is it a WordNet data.* file?)")
    return out


def gloss_split(
    synsets: Sequence[Synset],
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    *,
    dev_fraction: float = 0.1,
    max_per_class: int | None = None,
    seed: int = 0,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(train, dev)`` lists of ``(gloss, label)``: label ``k`` is ``categories[k]``.

    Each category is shuffled with ``seed``, cut to the size of the smallest one (balanced;
    and to ``max_per_class``), and ``dev_fraction`` of it goes to dev.  Glosses that occur in
    more than one synset are kept once (their first category).
    """
    if len(categories) != 2 or len(set(categories)) != 2:
        raise ValueError(
            f"the SST-2 layout is binary: give two different categories, got {list(categories)}"
        )
    for c in categories:
        if c not in LEXNAMES:
            raise ValueError(f"unknown category {c!r}; WordNet's are {list(LEXNAMES)}")
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    seen: set[str] = set()
    per: list[list[str]] = [[] for _ in categories]
    for s in synsets:
        if s.category in categories and s.gloss and s.gloss not in seen:
            seen.add(s.gloss)
            per[categories.index(s.category)].append(s.gloss)
    n = min(len(p) for p in per)
    if max_per_class is not None:
        n = min(n, max_per_class)
    n_dev = max(1, round(n * dev_fraction))
    if n < 2 or n_dev >= n:
        raise ValueError(
            f"too few glosses for the split: {[len(p) for p in per]} for {list(categories)}"
        )
    rng = random.Random(seed)
    train, dev = [], []
    for label, glosses in enumerate(per):
        rng.shuffle(glosses)
        dev += [(g, label) for g in glosses[:n_dev]]
        train += [(g, label) for g in glosses[n_dev:n]]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def _tsv(rows: list[tuple[str, int]]) -> str:
    lines = ["sentence\tlabel"] + [f"{g.replace(chr(9), ' ')}\t{y}" for g, y in rows]
    return "\n".join(lines) + "\n"


def _output_paths(out: str, overwrite: bool) -> dict[str, str]:
    """The four files of the data set under ``out``; `OutputExistsError` if one exists and
    not ``overwrite``."""
    paths = {
        "train": os.path.join(out, "SST-2", "train.tsv"),
        "dev": os.path.join(out, "SST-2", "dev.tsv"),
        "corpus": os.path.join(out, "corpus.txt"),
        "labels": os.path.join(out, "labels.json"),
    }
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise OutputExistsError(
            "{path} exists; pass {overwrite:True} to replace the data set, "
            "or choose another output folder",
            path=existing[0],
        )
    return paths


def _corpus(synsets: Sequence, held_out: set[str]) -> list[str]:
    """Every distinct gloss in file order, except the ``held_out`` (dev) glosses."""
    corpus, seen = [], set()
    for s in synsets:
        if s.gloss and s.gloss not in held_out and s.gloss not in seen:
            seen.add(s.gloss)
            corpus.append(s.gloss)
    return corpus


def write_gloss_data(
    data_files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    *,
    dev_fraction: float = 0.1,
    max_per_class: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write the gloss task and the corpus under ``out`` (see the module docstring).

    ``data_files``: WordNet ``data.*`` files; the task uses the glosses of ``categories``, the
    corpus every gloss of every file except the dev glosses.  Refuses to replace existing files
    unless ``overwrite``; each file is written atomically.  Returns the counts and paths.
    """
    paths = _output_paths(os.fspath(out), overwrite)
    synsets = [s for f in data_files for s in read_wordnet_data(f)]
    train, dev = gloss_split(
        synsets, categories, dev_fraction=dev_fraction, max_per_class=max_per_class, seed=seed
    )
    corpus = _corpus(synsets, held_out={g for g, _ in dev})
    os.makedirs(os.path.dirname(paths["train"]), exist_ok=True)
    info = {
        "categories": list(categories),
        "labels": {str(k): c for k, c in enumerate(categories)},
        "train": len(train),
        "dev": len(dev),
        "corpus_lines": len(corpus),
        "seed": seed,
        "dev_fraction": dev_fraction,
        "max_per_class": max_per_class,
        "sources": [os.path.abspath(os.fspath(f)) for f in data_files],
    }
    for key, text in (
        ("train", _tsv(train)),
        ("dev", _tsv(dev)),
        ("corpus", "\n".join(corpus) + "\n"),
        ("labels", json.dumps(info, indent=1) + "\n"),
    ):
        with atomic_open(paths[key], newline="\n") as f:
            f.write(text)
    return {**info, "paths": paths}
