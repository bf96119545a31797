"""WordNet glosses: parsing data.* lines, the seeded balanced split, the written files and the
``generate wordnet-glosses`` command, on a fixture in the data.noun format written here."""

from __future__ import annotations

import json

import pytest

from bpsn_ext.cli import main
from bpsn_ext.data.glue import load_glue
from bpsn_ext.data.wordnet import gloss_split, read_wordnet_data, write_gloss_data

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def _line(offset: int, lex: int, words: list[str], gloss: str) -> str:
    ws = " ".join(f"{w} 0" for w in words)
    return f"{offset:08d} {lex:02d} n {len(words):02x} {ws} 001 @ 00001740 n 0000 | {gloss}  \n"


def write_fixture(path, n: int = 12) -> str:
    lines = [HEADER]
    for i in range(n):
        lines.append(_line(100 + i, 5, [f"beast_{i}"], f"a furry animal number {i}"))
        lines.append(
            _line(
                200 + i, 20, [f"herb_{i}", "weed"], f'a green plant kind {i}; "it grew {i} leaves"'
            )
        )
    lines.append(_line(300, 13, ["bread"], "food made from flour"))
    lines.append(_line(301, 13, ["loaf"], "food made from flour"))  # duplicate gloss
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


def test_read_parses_fields_and_skips_the_header(tmp_path):
    syn = read_wordnet_data(write_fixture(tmp_path / "data.noun"))
    assert len(syn) == 26
    first, plant = syn[0], syn[1]
    assert first.offset == "00000100" and first.category == "noun.animal"
    assert first.words == ("beast 0",)
    assert plant.category == "noun.plant" and plant.words == ("herb 0", "weed")
    assert plant.gloss == 'a green plant kind 0; "it grew 0 leaves"'


def test_bad_lines_name_file_and_line(tmp_path):
    p = tmp_path / "data.noun"
    p.write_text(HEADER + _line(1, 5, ["a"], "ok") + "garbage line\n")
    with pytest.raises(ValueError, match=r"data.noun:3: not a WordNet data line"):
        read_wordnet_data(p)
    p.write_text(_line(1, 77, ["a"], "ok"))
    with pytest.raises(ValueError, match="file number 77"):
        read_wordnet_data(p)
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        read_wordnet_data(tmp_path / "missing")


def test_split_is_seeded_balanced_and_disjoint(tmp_path):
    syn = read_wordnet_data(write_fixture(tmp_path / "data.noun", n=20))
    train, dev = gloss_split(syn, ("noun.animal", "noun.plant"), dev_fraction=0.2, seed=1)
    assert len(dev) == 8 and len(train) == 32
    assert sorted(y for _, y in dev) == [0] * 4 + [1] * 4
    assert not {g for g, _ in train} & {g for g, _ in dev}
    assert all(("animal" in g) == (y == 0) for g, y in train + dev)
    assert (train, dev) == gloss_split(syn, ("noun.animal", "noun.plant"), dev_fraction=0.2, seed=1)
    assert dev != gloss_split(syn, ("noun.animal", "noun.plant"), dev_fraction=0.2, seed=2)[1]
    small, _ = gloss_split(syn, ("noun.animal", "noun.plant"), max_per_class=5, seed=1)
    assert len(small) == 8
    with pytest.raises(ValueError, match="binary"):
        gloss_split(syn, ("noun.animal",))
    with pytest.raises(ValueError, match="unknown category"):
        gloss_split(syn, ("noun.animal", "noun.beast"))
    with pytest.raises(ValueError, match="too few glosses"):
        gloss_split(syn, ("noun.animal", "noun.food"))


def test_generate_writes_the_sst2_layout_and_the_corpus(tmp_path, capsys):
    data = write_fixture(tmp_path / "data.noun", n=20)
    out = tmp_path / "wn"
    argv = [
        "generate",
        "wordnet-glosses",
        "--wordnet",
        data,
        "--out",
        str(out),
        "--categories",
        "noun.plant",
        "noun.animal",
        "--dev-fraction",
        "0.25",
    ]
    assert main(argv) == 0
    assert "wrote 30 train / 10 dev glosses" in capsys.readouterr().out
    train, dev = load_glue(out, "sst2", "train"), load_glue(out, "sst2", "dev")
    assert len(train) == 30 and len(dev) == 10
    assert all(("plant" in e.text_a) == (e.label == 0) for e in train + dev)
    corpus = (out / "corpus.txt").read_text().splitlines()
    assert len(corpus) == 41 - 10  # unique glosses minus the dev ones
    assert not set(corpus) & {e.text_a for e in dev}
    info = json.loads((out / "labels.json").read_text())
    assert info["labels"] == {"0": "noun.plant", "1": "noun.animal"}
    with pytest.raises(SystemExit, match="generate wordnet-glosses: .* exists; pass --overwrite"):
        main(argv)
    assert main([*argv, "--overwrite", "--seed", "3"]) == 0
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True to replace"):
        write_gloss_data([data], out)
