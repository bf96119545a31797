"""Text input: tokenisation memory follows max_length, not the longest line; non-UTF-8 and
oversized lines give errors naming file and line."""

from __future__ import annotations

import random

import pytest

from bpsn_ext.data.tokenizer import MAX_CHARS_PER_TOKEN, WordPieceTokenizer

pytest.importorskip("tokenizers")

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "don't",
    "café",
    "naïve",
    "東京",
    "x1y2",
    "!!",
    "a-b",
    "unbelievable",
    "supercalifragilistic",
    "...",
    "é",
    "z" * 150,
]


def text(rng: random.Random, n_words: int) -> str:
    seps = [" ", "  ", "\t", " \n "]
    return "".join(rng.choice(WORDS) + rng.choice(seps) for _ in range(n_words))


@pytest.fixture(scope="module")
def tok():
    rng = random.Random(0)
    return WordPieceTokenizer.train([text(rng, 200) for _ in range(5)], vocab_size=80)


def old_encode(tok, a, b, max_length):
    """The former implementation: the whole texts, then BERT's truncation."""
    ids_a = tok.tokenizer.encode(a, add_special_tokens=False).ids
    ids_b = [] if b is None else tok.tokenizer.encode(b, add_special_tokens=False).ids
    budget = max_length - (3 if b is not None else 2)
    while len(ids_a) + len(ids_b) > budget:
        if len(ids_a) > len(ids_b):
            ids_a.pop()
        else:
            ids_b.pop()
    ids = [tok.cls_id, *ids_a, tok.sep_id]
    return ids + ([*ids_b, tok.sep_id] if b is not None else [])


@pytest.mark.parametrize("seed", range(6))
def test_encoding_a_prefix_gives_the_tokens_of_the_whole_text(tok, seed):
    rng = random.Random(seed)
    for max_length in (8, 16, 64):
        for na, nb in ((3, None), (400, None), (400, 5), (5, 900), (300, 300), (2000, 1000)):
            a = text(rng, na)
            b = None if nb is None else text(rng, nb)
            assert tok.encode(a, b, max_length)[0] == old_encode(tok, a, b, max_length)


class _Spy:
    def __init__(self, inner):
        self.inner, self.lengths = inner, []

    def encode(self, s, **kwargs):
        self.lengths.append(len(s))
        return self.inner.encode(s, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_huge_line_is_never_tokenised_whole(tok):
    spy = _Spy(tok.tokenizer)
    tok.tokenizer = spy
    try:
        huge = "word " * 2_000_000  # 10 MB
        ids, _ = tok.encode(huge, None, 16)
        assert len(ids) == 16 and max(spy.lengths) <= MAX_CHARS_PER_TOKEN * 14
        spy.lengths.clear()
        ids, _ = tok.encode(" " * 10_000_000 + "cat", "sat " * 1_000_000, 16)  # junk prefix
        assert max(spy.lengths) <= MAX_CHARS_PER_TOKEN * 13
    finally:
        tok.tokenizer = spy.inner


def test_training_reads_only_the_first_max_chars():
    texts = ["the cat " * 10 + "zzzunseen " + "mat " * 100_000]
    vocab = WordPieceTokenizer.train(texts, vocab_size=60, max_chars=200).tokenizer.get_vocab()
    assert "zzzunseen" in vocab  # within the first 200 characters
    vocab = WordPieceTokenizer.train(texts, vocab_size=60, max_chars=50).tokenizer.get_vocab()
    assert "zzzunseen" not in vocab and "mat" not in vocab and "cat" in vocab


def test_train_glue_learns_its_vocabulary_from_a_bounded_prefix(tmp_path):
    from bpsn_ext.cli import main
    from bpsn_ext.data.glue import write_glue_fixture

    write_glue_fixture(tmp_path / "glue", tasks=["sst2"], n=16, n_dev=8, seed=0)
    train = tmp_path / "glue" / "SST-2" / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines()
    sentence, label = lines[1].split("\t")
    lines[1] = sentence + " pad" * 300_000 + " zzzbeyondthecap\t" + label  # a 1.2 MB line
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "glue",
                "--task",
                "sst2",
                "--data",
                str(tmp_path / "glue"),
                "--out",
                str(out),
                "--layers",
                "1",
                "--width",
                "16",
                "--heads",
                "2",
                "--ffn-width",
                "16",
                "--max-length",
                "12",
                "--batch-size",
                "8",
                "--vocab-size",
                "200",
                "--no-progress",
                "--epochs",
                "1",
                "--no-energy",
            ]
        )
        == 0
    )
    vocab = WordPieceTokenizer.load(out / "tokenizer.json").tokenizer.get_vocab()
    assert "pad" in vocab and "zzzbeyondthecap" not in vocab


def test_non_utf8_glue_and_listops_files_name_file_and_line(tmp_path):
    from bpsn_ext.data import listops
    from bpsn_ext.data.glue import read_glue_tsv

    glue = tmp_path / "train.tsv"
    glue.write_bytes(b"sentence\tlabel\nfine\t1\ncaf\xe9 au lait\t0\n")
    with pytest.raises(ValueError, match=f"{glue}:3: not UTF-8 text \\(byte 0xe9 at column 4\\)"):
        read_glue_tsv(glue, "sst2")
    lo = tmp_path / "basic_train.tsv"
    lo.write_bytes(b"Source\tTarget\n( [MAX 1 2 ] )\t2\n( [MIN 3 \xff ] )\t3\n")
    with pytest.raises(ValueError, match=f"{lo}:3: not UTF-8 text \\(byte 0xff at column 10\\)"):
        list(listops.read_tsv(lo))


def test_a_listops_line_over_128_kb_is_read_and_truncated(tmp_path):
    import csv

    from bpsn_ext.data import listops
    from bpsn_ext.data.lra_release import read_listops_dir

    csv.field_size_limit(131072)  # csv's default, whatever ran before in this process
    folder = tmp_path / "listops-1000"
    folder.mkdir()
    long_row = "[MAX " + "1 " * 70_000 + "]\t1\n"  # 140 kB
    for split in ("train", "val", "test"):
        (folder / f"basic_{split}.tsv").write_text("Source\tTarget\n( [MAX 1 2 ] )\t2\n" + long_row)
    rows = list(listops.read_tsv(folder / "basic_train.tsv"))
    assert len(rows[1].tokens) == 70_002
    data = read_listops_dir(tmp_path, max_length=2048)
    assert len(data["train"]) == 2
