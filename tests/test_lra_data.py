"""Readers of the lra_release layout and the local image/text formats, on fixtures written here:
round trips, task datasets and collate shapes, permutations, and clear errors."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from bpsn_ext.data import images, lra_release, text
from bpsn_ext.data import listops as lo
from bpsn_ext.data.sequential import bitreversal_permutation, permutation


# ----------------------------------------------------------------------------- fixtures
def write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def idx_tree(root, gz=True, n_train=30, n_test=10, size=28):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", y, gz)
        out[split] = (x, y)
    return out


def cifar_tree(root, per_batch=4):
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        batches[name] = (data, labels)
    return batches


def aan_tsv(path, rows):
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")


# ----------------------------------------------------------------------------- ListOps
def test_listops_dir_reader_matches_the_evaluator(tmp_path):
    samples = lo.generate(30, seed=4, min_length=10, max_length=80)
    folder = tmp_path / "lra_release" / "listops-1000"
    for split in ("train", "val", "test"):
        lo.write_tsv(samples, folder / f"basic_{split}.tsv")
    # the release wraps sub-trees in parentheses: the reader drops them
    (folder / "basic_test.tsv").write_text(
        "Source\tTarget\n( ( [MAX 2 9 ) 4 ] )\t9\n[SM 5 ( [MIN 7 3 ] ) ]\t8\n"
    )
    d = lra_release.read_listops_dir(tmp_path)
    assert len(d["train"]) == 30
    for i, s in enumerate(samples):
        x, y = d["train"][i]
        tokens = [lo.VOCAB[t] for t in x.tolist()]
        assert tokens == list(s.tokens) and int(y) == lo.evaluate(tokens) == s.label
    x, y = d["test"][0]
    assert [lo.VOCAB[t] for t in x.tolist()] == ["[MAX", "2", "9", "4", "]"] and int(y) == 9
    assert int(d["test"][1][1]) == lo.evaluate([lo.VOCAB[t] for t in d["test"][1][0]]) == 8
    assert len(lra_release.read_listops_dir(tmp_path, max_length=3)["train"][0][0]) == 3
    with pytest.raises(FileNotFoundError, match="listops-1000"):
        lra_release.read_listops_dir(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- AAN
def test_aan_reader_round_trip_and_errors(tmp_path):
    rows = [
        (1, "a1", "b1", "Citation graphs", "We study ümlauts"),
        ("0.0", "a2", "b2", "x" * 50, "short"),
    ]
    aan_tsv(tmp_path / "pairs.tsv", rows)
    d1, d2, y = text.read_aan_tsv(tmp_path / "pairs.tsv", max_length=40)
    assert y.tolist() == [1, 0]
    assert bytes((d1[0] - 1).astype(np.uint8)).decode() == "Citation graphs"
    assert bytes((d2[0] - 1).astype(np.uint8)).decode("utf-8") == "We study ümlauts"
    assert len(d1[1]) == 40 and d1[0].min() >= 1  # truncated; 0 is reserved for padding
    aan_tsv(tmp_path / "bad.tsv", [rows[0], (1, "a", "b", "only four")])
    with pytest.raises(ValueError, match=r"bad\.tsv:2: expected 5 tab-separated fields"):
        text.read_aan_tsv(tmp_path / "bad.tsv")
    aan_tsv(tmp_path / "bad2.tsv", [(3, "a", "b", "c", "d")])
    with pytest.raises(ValueError, match=r"bad2\.tsv:1: expected a label 0/1"):
        text.read_aan_tsv(tmp_path / "bad2.tsv")


def test_retrieval_task_pairs_and_collate(tmp_path):
    folder = tmp_path / "lra_release" / "tsv_data"
    folder.mkdir(parents=True)
    for name in text.AAN_FILES.values():
        aan_tsv(
            folder / name,
            [(i % 2, f"a{i}", f"b{i}", "t" * (5 + i), "u" * (9 - i)) for i in range(6)],
        )
    td = lra_release.load_task("retrieval", data=str(tmp_path))
    assert td.dual and td.vocab_size == text.BYTE_VOCAB and len(td.test) == 6
    x1, l1, x2, l2, y = td.collate([td.train[i] for i in range(3)])
    assert x1.shape == (7, 3) and l1.tolist() == [5, 6, 7] and l2.tolist() == [9, 8, 7]
    assert x1.dtype == torch.long and x1[5, 0] == 0 and y.tolist() == [0, 1, 0]


# ----------------------------------------------------------------------------- IMDB
def test_imdb_csv_and_aclimdb_folder(tmp_path):
    (tmp_path / "reviews.csv").write_text(
        'review,sentiment\n"Great, film",positive\nawful,negative\n', encoding="utf-8"
    )
    seqs, labels = text.read_imdb(tmp_path / "reviews.csv")
    assert labels.tolist() == [1, 0] and bytes((seqs[0] - 1).astype(np.uint8)) == b"Great, film"
    (tmp_path / "bad.csv").write_text("text,label\nfine,1\nbroken,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: expected a label 0/1"):
        text.read_imdb(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"nohead\.csv:1: expected a header"):
        text.read_imdb(tmp_path / "nohead.csv")
    for split in ("train", "test"):
        for sub, words in (("pos", "good"), ("neg", "bad")):
            d = tmp_path / "aclImdb" / split / sub
            d.mkdir(parents=True)
            for i in range(5):
                (d / f"{i}_7.txt").write_text(f"{words} {i} " * 3)
    seqs, labels = text.read_imdb(tmp_path, "test", max_length=8)
    assert labels.tolist() == [0] * 5 + [1] * 5 and all(len(s) == 8 for s in seqs)
    td = lra_release.load_task("text", data=str(tmp_path / "aclImdb"))
    assert (len(td.train), len(td.val), len(td.test)) == (9, 1, 10)
    assert td.vocab_size == 257
    with pytest.raises(FileNotFoundError, match="aclImdb"):
        text.read_imdb(tmp_path / "aclImdb" / "train")


def test_text_readers_name_the_file_and_line_that_is_not_utf8(tmp_path):
    latin1 = "caf\xe9".encode("latin-1")  # a review saved in Latin-1
    (tmp_path / "reviews.csv").write_bytes(b"text,label\nfine,1\n" + latin1 + b",0\n")
    with pytest.raises(ValueError, match=r"reviews\.csv:3: not UTF-8 text \(byte 0xe9"):
        text.read_imdb(tmp_path / "reviews.csv")
    (tmp_path / "pairs.tsv").write_bytes(b"1\ta\tb\t" + latin1 + b"\tok\n")
    with pytest.raises(ValueError, match=r"pairs\.tsv:1: not UTF-8 text \(byte 0xe9"):
        text.read_aan_tsv(tmp_path / "pairs.tsv")
    for split in ("train", "test"):
        for sub in ("pos", "neg"):
            (tmp_path / "aclImdb" / split / sub).mkdir(parents=True)
            (tmp_path / "aclImdb" / split / sub / "0_7.txt").write_text("good")
    (tmp_path / "aclImdb" / "test" / "neg" / "1_2.txt").write_bytes(b"ok\n" + latin1)
    with pytest.raises(ValueError, match=r"1_2\.txt:2: not UTF-8 text"):
        text.read_imdb(tmp_path, "test")


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_and_sequential_tasks(tmp_path, gz):
    data = idx_tree(tmp_path, gz=gz)
    x, y = images.load_idx_dataset(tmp_path, "train")
    assert np.array_equal(x, data["train"][0]) and y.tolist() == data["train"][1].tolist()
    td = lra_release.load_task("fashion-mnist", data=str(tmp_path))
    assert (len(td.train), len(td.val), len(td.test)) == (27, 3, 10)
    xs, lengths, ys = td.collate([td.test[i] for i in range(4)])
    assert xs.shape == (784, 4, 1) and lengths.tolist() == [784] * 4
    assert torch.allclose(xs[:, 0, 0], torch.from_numpy(data["t10k"][0][0].reshape(-1)) / 255)
    perm = lra_release.load_task("mnist", data=str(tmp_path), permute="bitreversal")
    order = bitreversal_permutation(784, pad=True)
    assert torch.equal(perm.test[0][0][:, 0], td.test[0][0][order, 0])


def test_idx_errors_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[\.gz\]"):
        images.load_idx_dataset(tmp_path, "train")
    idx_tree(tmp_path)
    raw = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: IDX header says"):
        images.load_idx_dataset(tmp_path, "test")
    (tmp_path / "junk").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        images.read_idx(tmp_path / "junk")


def test_cifar_pickle_batches_grey(tmp_path):
    batches = cifar_tree(tmp_path)
    x, y = images.load_cifar10(tmp_path, "train")
    assert x.shape == (20, 32, 32) and x.dtype == np.uint8 and len(y) == 20
    rgb = batches["data_batch_2"][0][1].reshape(3, 32, 32).astype(float)
    grey = np.clip(np.rint(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]), 0, 255)
    assert np.array_equal(x[5], grey.astype(np.uint8))
    assert y[5] == batches["data_batch_2"][1][1]
    td = lra_release.load_task("image", data=str(tmp_path))
    assert (len(td.train), len(td.val), len(td.test)) == (18, 2, 4)
    seq, _ = td.test[0]
    expected = (x_test := images.load_cifar10(tmp_path, "test")[0])[0].reshape(-1) / 255.0
    assert np.allclose(seq[:, 0].numpy(), (expected - 122.6 / 255) / (61.0 / 255), atol=1e-5)
    assert x_test.shape == (4, 32, 32)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        images.load_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="needs data=CIFAR_DIR"):
        lra_release.load_task("image")


# ----------------------------------------------------------------------------- misc
def test_permutations_and_splits():
    assert bitreversal_permutation(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    p = bitreversal_permutation(6, pad=True)  # bit reversal of 8, entries < 6 in order
    assert p.tolist() == [0, 4, 2, 1, 5, 3]
    p784 = permutation(784, "bitreversal")
    assert sorted(p784.tolist()) == list(range(784)) and p784[:4].tolist() == [0, 512, 256, 768]
    assert torch.equal(permutation(50, "random", 3), permutation(50, "random", 3))
    assert not torch.equal(permutation(50, "random", 3), permutation(50, "random", 4))
    with pytest.raises(ValueError, match="permutation must be one of"):
        permutation(8, "shuffle")
    tr, va = lra_release.val_split(100)
    assert len(tr) == 90 and len(va) == 10 and sorted(tr + va) == list(range(100))
    td = lra_release.load_task("digits", permute="random", permutation_seed=1, limit_train=50)
    assert len(td.train) == 50 and td.train[0][0].shape == (64, 1)
    with pytest.raises(ValueError, match="permute applies to the image tasks"):
        lra_release.load_task("listops", generate=True, permute="random")
    with pytest.raises(ValueError, match="generate=True is for listops and pathfinder"):
        lra_release.load_task("text", generate=True)


def test_generated_listops_and_pathfinder_tasks():
    td = lra_release.load_task(
        "listops", generate=True, n_train=20, n_val=5, n_test=5, min_length=5, max_length=40, seed=1
    )
    assert td.vocab_size == len(lo.VOCAB) and len(td.train) == 20
    for i in range(20):
        x, y = td.train[i]
        assert lo.evaluate([lo.VOCAB[t] for t in x.tolist()]) == int(y)
    x, lengths, y = td.collate([td.train[i] for i in range(4)])
    assert x.shape == (int(lengths.max()), 4) and x.dtype == torch.long
    pf = lra_release.load_task("pathfinder", generate=True, n_train=4, n_val=2, n_test=2)
    seq, label = pf.train[0]
    assert seq.shape == (1024, 1) and seq.min() >= -1 and seq.max() == 1.0
    assert int(label) in (0, 1)


def test_idx_limits_read_only_the_items_the_splits_keep(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    data = idx_tree(full_dir, n_train=600, n_test=40, size=6)
    tr, va = lra_release.val_split(600)
    last = max(tr[:5] + va[:3])  # the train file's last item the limits keep
    cut_dir.mkdir()
    for split, keep in (("train", last + 1), ("t10k", 3)):  # a header that promises more
        for kind, arr in (("images-idx3", data[split][0]), ("labels-idx1", data[split][1])):
            name = f"{split}-{kind}-ubyte.gz"
            raw = gzip.decompress((full_dir / name).read_bytes())
            item = arr[0].size
            head = len(raw) - len(arr) * item
            (cut_dir / name).write_bytes(gzip.compress(raw[: head + keep * item + item // 2]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: IDX header says"):
        lra_release.load_task("mnist", data=str(cut_dir))  # all of it: the cut tail is read
    want = lra_release.load_task("mnist", data=str(full_dir))
    for source in (full_dir, cut_dir):
        got = lra_release.load_task("mnist", data=str(source), limit_train=5, limit_eval=3)
        assert (len(got.train), len(got.val), len(got.test)) == (5, 3, 3)
        for name in ("train", "val", "test"):
            ours, theirs = getattr(got, name), getattr(want, name)
            assert torch.equal(ours.seqs, theirs.seqs[: len(ours)])
            assert torch.equal(ours.labels, theirs.labels[: len(ours)])
            assert torch.equal(ours[1][0], theirs[1][0])  # the same pixel transform
    only_train = lra_release.load_task("mnist", data=str(full_dir), limit_train=5)
    assert torch.equal(only_train.val.seqs, want.val.seqs)
    assert torch.equal(only_train.test.seqs, want.test.seqs)


def test_idx_rows_are_read_in_the_order_asked(tmp_path):
    data = idx_tree(tmp_path, n_train=50, n_test=5, size=4)
    x, y = images.load_idx_dataset(tmp_path, "train", rows=[7, 0, 49, 7])
    assert np.array_equal(x, data["train"][0][[7, 0, 49, 7]])
    assert y.tolist() == data["train"][1][[7, 0, 49, 7]].tolist()
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: item 50 asked for; the"):
        images.load_idx_dataset(tmp_path, "train", rows=[50])
    with pytest.raises(ValueError, match="limit or rows, not both"):
        images.read_idx(tmp_path / "train-images-idx3-ubyte.gz", limit=2, rows=[1])
    labels = data["train"][1].copy()
    labels[30] = 11
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, gz=True)
    with pytest.raises(ValueError, match=r"label 11 of sample 30 is outside 0\.\.9"):
        images.load_idx_dataset(tmp_path, "train", rows=[2, 30])  # the file's item, not the row
