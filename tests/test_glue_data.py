"""GLUE readers (TSV layouts of every task, HF load_from_disk), tokenizer, metrics, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bpsn_ext.data.glue import (
    TASKS,
    GlueCollator,
    GlueDataset,
    GlueFormatError,
    load_glue,
    load_glue_hf,
    read_glue_tsv,
    task_dir,
    write_glue_fixture,
)
from bpsn_ext.data.glue_metrics import glue_metrics
from bpsn_ext.data.tokenizer import WordPieceTokenizer

# Hand-written rows in the real upstream layouts (made-up text): header + 2 rows per task.
# These do not go through write_glue_fixture, so a wrong column schema there cannot hide here.
REAL_LAYOUT = {
    "cola": (
        "CoLA",
        "train.tsv",
        [
            "gj04\t1\t\tThe blick sat on the dax.",
            "gj04\t0\t*\tDax the on sat blick.",
        ],
        [("The blick sat on the dax.", None, 1), ("Dax the on sat blick.", None, 0)],
    ),
    "sst2": (
        "SST-2",
        "dev.tsv",
        [
            "sentence\tlabel",
            "a wug of a film \t1",
            "dull blick\t0",
        ],
        [("a wug of a film ", None, 1), ("dull blick", None, 0)],
    ),
    "mrpc": (
        "MRPC",
        "train.tsv",
        [
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
            "1\t702876\t702977\tThe dax rose .\tThe dax went up .",
            "0\t2108705\t2108831\tA wug fell .\tNo blick was seen .",
        ],
        [("The dax rose .", "The dax went up .", 1), ("A wug fell .", "No blick was seen .", 0)],
    ),
    "qqp": (
        "QQP",
        "train.tsv",
        [
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "133273\t213221\t213222\tHow is a dax made?\tHow do I make a dax?\t1",
            "402555\t536040\t536041\tWhat is a wug?\tWho is a blick?\t0",
        ],
        [
            ("How is a dax made?", "How do I make a dax?", 1),
            ("What is a wug?", "Who is a blick?", 0),
        ],
    ),
    "stsb": (
        "STS-B",
        "dev.tsv",
        [
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
            "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA dax runs.\tA dax is running.\t"
            "5.000",
            "1\tmain-news\theadlines\t2013\t0001\tnone\tnone\tWug wins.\tBlick loses.\t0.400",
        ],
        [("A dax runs.", "A dax is running.", 5.0), ("Wug wins.", "Blick loses.", 0.4)],
    ),
    "mnli": (
        "MNLI",
        "dev_mismatched.tsv",
        [
            "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\t"
            "label4\tlabel5\tgold_label",
            "0\t75290\t75290c\tletters\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe dax is red.\t"
            "The dax is blue.\tcontradiction\tcontradiction\tneutral\tcontradiction\t"
            "contradiction\tcontradiction",
            "1\t133794\t133794e\tverbatim\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tA wug sang.\t"
            "A wug made a sound.\tentailment\tentailment\tentailment\tentailment\tentailment\t"
            "entailment",
        ],
        [("The dax is red.", "The dax is blue.", 2), ("A wug sang.", "A wug made a sound.", 0)],
    ),
    "qnli": (
        "QNLI",
        "train.tsv",
        [
            "index\tquestion\tsentence\tlabel",
            "0\tWhen did the dax sing?\tThe dax sang in 1990.\tentailment",
            "1\tWho is the wug?\tBlicks are tall.\tnot_entailment",
        ],
        [
            ("When did the dax sing?", "The dax sang in 1990.", 0),
            ("Who is the wug?", "Blicks are tall.", 1),
        ],
    ),
    "rte": (
        "RTE",
        "dev.tsv",
        [
            "index\tsentence1\tsentence2\tlabel",
            "0\tDax bought wug.\tWug was bought.\tentailment",
            "1\tBlick is here.\tBlick left.\tnot_entailment",
        ],
        [("Dax bought wug.", "Wug was bought.", 0), ("Blick is here.", "Blick left.", 1)],
    ),
}


@pytest.mark.parametrize("task", sorted(REAL_LAYOUT))
def test_real_layouts(tmp_path, task):
    dirname, fname, lines, expected = REAL_LAYOUT[task]
    (tmp_path / dirname).mkdir()
    (tmp_path / dirname / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = read_glue_tsv(tmp_path / dirname / fname, task)
    assert [tuple(e) for e in got] == expected
    assert task_dir(tmp_path, task) == str(tmp_path / dirname)
    assert task_dir(tmp_path / dirname, task) == str(tmp_path / dirname)  # a task folder


def test_byte_order_mark(tmp_path):
    # MRPC's train.tsv / dev.tsv start with a UTF-8 BOM before "Quality"
    dirname, fname, lines, expected = REAL_LAYOUT["mrpc"]
    path = tmp_path / fname
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode("utf-8"))
    assert [tuple(e) for e in read_glue_tsv(path, "mrpc")] == expected


def test_windows_line_endings(tmp_path):
    (tmp_path / "d.tsv").write_bytes(b"sentence\tlabel\r\nok wug\t1\r\n")
    assert read_glue_tsv(tmp_path / "d.tsv", "sst2") == [("ok wug", None, 1)]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_fixture_round_trip(tmp_path, task):
    write_glue_fixture(tmp_path, tasks=[task], n=12, n_dev=6, seed=3)
    t = TASKS[task]
    for split in t.files:
        examples = load_glue(tmp_path, task, split)
        assert len(examples) == (12 if split == "train" else 6)
        assert all((e.text_b is None) == (t.text_b is None) for e in examples)
        if t.is_regression:
            assert all(isinstance(e.label, float) and 0 <= e.label <= 5 for e in examples)
        else:
            assert {e.label for e in examples} == set(range(t.num_labels))  # every class
    if task == "cola":  # no header: the first line is an example
        first = (tmp_path / "CoLA" / "train.tsv").read_text().splitlines()[0]
        assert len(first.split("\t")) == 4 and load_glue(tmp_path, task)[0].text_a in first


def test_fixture_is_deterministic_and_made_up(tmp_path):
    a = write_glue_fixture(tmp_path / "a", tasks=["sst2", "rte"], n=10, seed=1)
    write_glue_fixture(tmp_path / "b", tasks=["sst2", "rte"], n=10, seed=1)
    assert sorted(a) == ["rte", "sst2"]
    for sub in ("SST-2/train.tsv", "RTE/dev.tsv"):
        assert (tmp_path / "a" / sub).read_text() == (tmp_path / "b" / sub).read_text()
    # the label is learnable from a cue word (class 0: "zib", class 1: "gorp")
    for e in load_glue(tmp_path / "a", "sst2"):
        assert ("zib" if e.label == 0 else "gorp") in e.text_a.lower()


# ---------------------------------------------------------------------------- errors
def _write(tmp_path, text, name="SST-2"):
    (tmp_path / name).mkdir(exist_ok=True)
    path = tmp_path / name / "train.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_row_names_file_and_line(tmp_path):
    path = _write(tmp_path, "sentence\tlabel\nfine\t1\nbroken row without label\nok\t0\n")
    with pytest.raises(GlueFormatError, match=r"train\.tsv:3: expected 2 tab-separated") as e:
        load_glue(tmp_path, "sst2")
    assert str(path) in str(e.value)
    assert len(load_glue(tmp_path, "sst2", skip_bad_rows=True)) == 2


@pytest.mark.parametrize(
    "text, match",
    [
        ("sentence\tlabel\nfine\t7\n", r"train\.tsv:2: label '7' is not one of"),
        ("sentence\tlabel\nfine\t1\n\n", r"train\.tsv:3: empty row"),
        ("text\tlabel\nfine\t1\n", r"train\.tsv:1: header .* lacks the column\(s\) \['sentence'\]"),
        ("", r"empty file"),
        ("sentence\tlabel\n", r"no examples"),
    ],
)
def test_bad_files(tmp_path, text, match):
    _write(tmp_path, text)
    with pytest.raises(GlueFormatError, match=match):
        load_glue(tmp_path, "sst2")


def test_bad_score_and_cola_columns(tmp_path):
    header = "\t".join(TASKS["stsb"].columns)
    _write(tmp_path, header + "\n" + "\t".join(["x"] * 9 + ["high"]) + "\n", "STS-B")
    with pytest.raises(GlueFormatError, match=r"train\.tsv:2: score 'high' is not a number"):
        load_glue(tmp_path, "stsb")
    for score in ("nan", "-1", "5.5"):  # GLUE scores lie in [0, 5]
        _write(tmp_path, header + "\n" + "\t".join(["x"] * 9 + [score]) + "\n", "STS-B")
        with pytest.raises(GlueFormatError, match=r"train\.tsv:2: score .* not in \[0, 5\]"):
            load_glue(tmp_path, "stsb")
    _write(tmp_path, "gj04\t1\tA sentence\n", "CoLA")
    with pytest.raises(GlueFormatError, match=r"train\.tsv:1: expected 4 tab-separated"):
        load_glue(tmp_path, "cola")


def test_missing_data_and_bad_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SST-2.*train\.tsv"):
        load_glue(tmp_path, "sst2")
    with pytest.raises(ValueError, match="unknown GLUE task"):
        load_glue(tmp_path, "wnli2")
    write_glue_fixture(tmp_path, tasks=["rte"], n=4)
    with pytest.raises(ValueError, match="splits"):
        load_glue(tmp_path, "rte", "dev_mismatched")


# ---------------------------------------------------------------------------- HF datasets
def test_hf_load_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "premise": ["a dax", "a wug"],
                    "hypothesis": ["no dax", "a wug"],
                    "label": [2, 0],
                    "idx": [0, 1],
                }
            ),
            "validation_mismatched": datasets.Dataset.from_dict(
                {"premise": ["p"], "hypothesis": ["h"], "label": [1], "idx": [0]}
            ),
        }
    )
    dd.save_to_disk(str(tmp_path / "mnli"))
    assert load_glue_hf(tmp_path / "mnli", "mnli", "train") == [
        ("a dax", "no dax", 2),
        ("a wug", "a wug", 0),
    ]
    assert load_glue_hf(tmp_path / "mnli", "mnli", "dev_mismatched") == [("p", "h", 1)]
    with pytest.raises(ValueError, match="validation_matched"):
        load_glue_hf(tmp_path / "mnli", "mnli", "dev")
    # one Dataset (a single split), STS-B float labels
    ds = datasets.Dataset.from_dict({"sentence1": ["x"], "sentence2": ["y"], "label": [3.2]})
    ds.save_to_disk(str(tmp_path / "stsb"))
    assert load_glue_hf(tmp_path / "stsb", "stsb", "dev") == [("x", "y", pytest.approx(3.2))]
    # wrong columns, unlabelled rows
    ds = datasets.Dataset.from_dict({"text": ["x"], "label": [1]})
    ds.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"columns \['sentence'\]"):
        load_glue_hf(tmp_path / "bad", "sst2")
    ds = datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1]})
    ds.save_to_disk(str(tmp_path / "test"))
    with pytest.raises(GlueFormatError, match="row 0: label -1"):
        load_glue_hf(tmp_path / "test", "sst2")
    ds = datasets.Dataset.from_dict({"sentence1": ["x"], "sentence2": ["y"], "label": [-1.0]})
    ds.save_to_disk(str(tmp_path / "stsb_test"))  # STS-B's unlabelled test split
    with pytest.raises(GlueFormatError, match="row 0: label -1.0"):
        load_glue_hf(tmp_path / "stsb_test", "stsb", "dev")


# ---------------------------------------------------------------------------- tokenizer
def test_tokenizer_trained_saved_and_from_vocab(tmp_path):
    write_glue_fixture(tmp_path, tasks=["mrpc"], n=40)
    ex = load_glue(tmp_path, "mrpc")
    tok = WordPieceTokenizer.train([x for e in ex for x in (e.text_a, e.text_b)], 120)
    assert tok.vocab_size <= 120
    assert tok.tokenize("Zib gorp!") == ["zib", "gorp", "!"]  # frequent words are whole
    assert tok.tokenize("kikba") == ["k", "##i", "##k", "##b", "##a"]  # unseen: characters
    hf = WordPieceTokenizer.train(["zib gorp dax"] * 5, 40, algorithm="wordpiece")
    assert hf.encode("zib")[0][0] == hf.cls_id
    with pytest.raises(ValueError, match="algorithm"):
        WordPieceTokenizer.train(["a"], 40, algorithm="bpe")
    # the same texts give the same ids every time (the trainer's own order is hash-based)
    texts = [x for e in ex for x in (e.text_a, e.text_b)]
    for _ in range(3):
        assert (
            WordPieceTokenizer.train(texts, 120).tokenizer.get_vocab() == tok.tokenizer.get_vocab()
        )
    ids, seg = tok.encode(ex[0].text_a, ex[0].text_b, max_length=64)
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id and ids.count(tok.sep_id) == 2
    assert seg == sorted(seg) and seg[0] == 0 and seg[-1] == 1
    ids8, seg8 = tok.encode("zib " * 20, "gorp " * 3, max_length=9)  # the longer text is cut
    assert len(ids8) == 9 and seg8.count(1) == 3 + 1 and ids8.count(tok.sep_id) == 2
    # BERT's rule (as transformers' longest_first): on a tie the second text loses a token
    for max_length, n_b in ((8, 2), (7, 2), (6, 1)):
        seg = tok.encode("zib " * 20, "gorp " * 3, max_length=max_length)[1]
        assert len(seg) == max_length and seg.count(1) == n_b + 1, max_length
    tok.save(tmp_path / "tok.json")
    again = WordPieceTokenizer.load(tmp_path / "tok.json")
    assert again.encode(ex[1].text_a, ex[1].text_b) == tok.encode(ex[1].text_a, ex[1].text_b)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "dax", "##es", "wug"]
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    vt = WordPieceTokenizer.from_vocab(tmp_path / "bert")
    assert vt.tokenize("The daxes blick") == ["the", "dax", "##es", "[UNK]"]
    assert vt.encode("the wug") == ([2, 5, 8, 3], [0, 0, 0, 0])
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordPieceTokenizer.from_vocab(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="special token"):
        (tmp_path / "v2.txt").write_text("a\nb\n")
        WordPieceTokenizer.from_vocab(tmp_path / "v2.txt")


def test_dataset_and_collator():
    vocab_tok = WordPieceTokenizer.train(["zib gorp flen dax wug"] * 3, 40)
    ex = [("zib dax", None, 1), ("gorp gorp flen wug dax", None, 0)]
    ds = GlueDataset(ex, vocab_tok, max_length=16)
    b = GlueCollator(vocab_tok.pad_id)([ds[0], ds[1]])
    L = len(ds[1][0])
    assert b["input_ids"].shape == (L, 2) and b["lengths"].tolist() == [len(ds[0][0]), L]
    assert (b["input_ids"][len(ds[0][0]) :, 0] == vocab_tok.pad_id).all()
    assert b["labels"].dtype == torch.long
    reg = GlueCollator(0)([([2, 3], [0, 0], 1.5), ([2, 5, 3], [0, 0, 0], 0.0)])
    assert reg["labels"].dtype == torch.float32 and reg["segment_ids"].shape == (3, 2)


# ---------------------------------------------------------------------------- metrics
def test_metrics_match_sklearn_and_scipy():
    sk = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    m = glue_metrics("mrpc", p, y)
    assert m["f1"] == pytest.approx(sk.f1_score(y, p))
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert glue_metrics("cola", p, y)["matthews"] == pytest.approx(sk.matthews_corrcoef(y, p))
    y3, p3 = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    assert glue_metrics("mnli", p3, y3)["accuracy"] == pytest.approx(sk.accuracy_score(y3, p3))
    s, t = rng.normal(size=50), np.round(rng.uniform(0, 5, 50), 1)  # ties in t
    s[:5] = s[0]
    m = glue_metrics("stsb", s, t)
    assert m["pearson"] == pytest.approx(stats.pearsonr(s, t)[0])
    assert m["spearman"] == pytest.approx(stats.spearmanr(s, t)[0])
    assert m["pearson_spearman"] == pytest.approx((m["pearson"] + m["spearman"]) / 2)
    # degenerate: a constant prediction (sklearn also gives 0 MCC, 0 F1 without positives)
    zeros = np.zeros(20, int)
    assert glue_metrics("cola", zeros, y[:20])["matthews"] == sk.matthews_corrcoef(y[:20], zeros)
    assert glue_metrics("qqp", zeros, y[:20])["f1"] == 0.0
    with pytest.raises(ValueError, match="differ in number"):
        glue_metrics("sst2", [1, 0], [1])
    with pytest.raises(ValueError, match="unknown GLUE task"):
        glue_metrics("imdb", [1], [1])
