"""Bounded memory and time for every input: IDX files streamed with their header checked
before anything is allocated (gzip bombs, impossible headers, no images), grey levels refused
rather than cast, and ListOps settings whose trees cannot be drawn in time refused."""

from __future__ import annotations

import contextlib
import gzip
import struct
import time

import numpy as np
import pytest

from bpsn_ext.cli import main
from bpsn_ext.data import images
from bpsn_ext.data import listops as lo
from tests.test_safety_run_folder import GLUE


def idx_bytes(shape, code=0x08, data=b""):
    return (
        struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + data
    )


def test_a_gzip_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:  # claims 4 GB, holds 8 MB of zeros
        f.write(idx_bytes((1000, 2000, 2000)))
        f.write(bytes(8 * 2**20))
    with pytest.raises(
        ValueError, match=rf"{path}: IDX header says shape \(1000, 2000, 2000\).*max_bytes"
    ):
        images.read_idx(path)


def test_trailing_data_is_not_inflated_past_the_header(tmp_path):
    path = tmp_path / "tail.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:  # 10 small images, then 64 MB more
        f.write(idx_bytes((10, 4, 4), data=bytes(160)))
        for _ in range(64):
            f.write(bytes(2**20))
    with pytest.raises(ValueError, match="the file holds more"):
        images.read_idx(path)
    assert images.read_idx(path, limit=3).shape == (3, 4, 4)  # a prefix is read, then it stops


@pytest.mark.parametrize(
    "raw, expected",
    [
        (idx_bytes((0, 28, 28)), r"shape \(0, 28, 28\): no data"),
        (idx_bytes((5, 0, 28)), "no data"),
        (b"\x00\x00\x08\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (idx_bytes((2, 2), data=b"\x01\x02\x03"), "the file holds 3 bytes"),
        (b"\x00\x00\x07\x01", "not an IDX file"),
    ],
)
def test_impossible_idx_headers_name_the_file(tmp_path, raw, expected):
    path = tmp_path / "x-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=f"{path}: .*{expected}"):
        images.read_idx(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 300.0, -5.0, 0.5])
def test_float_idx_values_outside_grey_levels_are_refused(tmp_path, value):
    pixels = np.zeros((2, 3, 3), dtype=">f4")
    pixels[1, 2, 1] = value
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes((2, 3, 3), 0x0D, pixels.tobytes()))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes((2,), 0x08, b"\x01\x02"))
    with pytest.raises(
        ValueError,
        match=r"train-images-idx3-ubyte: value .* of sample 1 \(pixel 7\) is not a grey level",
    ):
        images.load_idx_dataset(tmp_path, "train")
    pixels[1, 2, 1] = 255.0
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes((2, 3, 3), 0x0D, pixels.tobytes()))
    x, _ = images.load_idx_dataset(tmp_path, "train")
    assert x.dtype == np.uint8 and x[1, 2, 1] == 255


def test_listops_generation_is_unchanged_and_iterative():
    def recursive(rng, depth, max_depth, max_args):  # the recursive definition, as reference
        if depth >= max_depth or rng.random() < lo.LEAF_PROBABILITY:
            digit = rng.randrange(10)
            return [str(digit)], digit
        op = rng.choice(lo.OPERATORS)
        tokens, values = [op], []
        for _ in range(rng.randint(2, max_args)):
            t, v = recursive(rng, depth + 1, max_depth, max_args)
            tokens += t
            values.append(v)
        return [*tokens, "]"], lo._apply(op, values)

    import random

    for seed, max_depth, max_args in ((0, 10, 10), (1, 6, 4), (2, 12, 3), (3, 1, 10)):
        a, b = random.Random(seed), random.Random(seed)
        for _ in range(200):
            assert lo._tree(a, max_depth, max_args) == recursive(b, 1, max_depth, max_args)
    deep = lo.generate(5, min_length=2, max_length=400, max_depth=5000, max_args=2)
    assert len(deep) == 5  # no RecursionError: subcritical trees at any depth


@pytest.mark.parametrize("depth", ["30", "1000", "100000000000"])
def test_generate_listops_refuses_depths_it_cannot_draw_in_time(tmp_path, depth):
    start = time.perf_counter()
    with pytest.raises(
        SystemExit,
        match=f"generate listops: --max-depth {depth} with --max-args 10 draws trees of "
        ".* choose --max-depth 14 or less",
    ):
        main(["generate", "listops", "--max-depth", depth, "--out", str(tmp_path), "--no-progress"])
    assert time.perf_counter() - start < 60 and not list(tmp_path.iterdir())
    assert lo.expected_tokens(10, 10) <= lo.MAX_EXPECTED_TOKENS  # the default is drawn


@pytest.fixture(scope="module")
def glue_run(tmp_path_factory):
    from bpsn_ext.data.glue import write_glue_fixture

    root = tmp_path_factory.mktemp("glue")
    write_glue_fixture(root / "data", tasks=["sst2"], n=16, n_dev=8, seed=0)
    assert main([*GLUE, "--data", str(root / "data"), "--out", str(root / "run")]) == 0
    return root


def copy_folder(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"width": 2**22}, r"width 4194304.* more than the 2147483648 this program builds"),
        ({"layers": 10**7}, r"layers 10000000.*about 1\.68e\+10 parameters"),
    ],
)
def test_hostile_model_json_is_refused_before_allocating(glue_run, tmp_path, edit, expected):
    import json

    run = copy_folder(glue_run / "run", tmp_path / "run")
    saved = json.loads((run / "model.json").read_text())
    saved["config"].update(edit)
    (run / "model.json").write_text(json.dumps(saved))
    ev = ["evaluate", "glue", "--checkpoint", str(run), "--data", str(glue_run / "data")]
    with pytest.raises(ValueError, match=f"{run / 'model.json'}: .*{expected}"):
        main(ev)


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("model.json", '{"task": "sst2", "config": {"width"', "not valid JSON at line 1"),
        ("model.json", "[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
        ("model.json", '{"task": "sst2", "config": {"dropout": NaN}}', "NaN is not a JSON number"),
        ("tokenizer.json", '{"version": "1.0", "trunc', "not valid JSON"),
    ],
)
def test_truncated_or_deep_run_files_name_the_file(glue_run, tmp_path, name, text, expected):
    run = copy_folder(glue_run / "run", tmp_path / "run")
    (run / name).write_text(text)
    ev = ["evaluate", "glue", "--checkpoint", str(run), "--data", str(glue_run / "data")]
    with pytest.raises(ValueError, match=f"{run / name}: {expected}"):
        main(ev)


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"d_model": 2**22}, "d_model 4194304"),
        ({"n_layers": 10**7}, "n_layers 10000000"),
        ({"generate": True, "n_train": 10**12}, "10000000000[0-9]* generated samples"),
    ],
)
def test_hostile_lra_run_config_is_refused_before_allocating(tmp_path, edit, expected):
    import json

    run = tmp_path / "run"
    train = ["train", "lra", "--task", "digits", "--layer", "s4d", "--epochs", "1"]
    small = ["--limit-train", "32", "--limit-eval", "16", "--batch-size", "32", "--d-model", "8"]
    tail = ["--n-layers", "1", "--d-state", "4", "--no-progress", "--energy-samples", "0"]
    assert main([*train, *small, *tail, "--checkpoint-dir", str(run)]) == 0
    cfg = json.loads((run / "run_config.json").read_text())
    (run / "run_config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(ValueError, match=f"{run / 'run_config.json'}: .*{expected}"):
        main(["evaluate", "lra", "--checkpoint-dir", str(run), "--energy-samples", "0"])


def _stalled_rank_worker(rank: int, port: int, out: str) -> None:
    """Rank 1 stalls (8 s) in its third step; rank 0 waits at most 2 s."""
    import os

    import torch

    from bpsn_ext.train import TrainConfig, Trainer

    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    steps = [0]

    def loss_fn(model, batch):
        steps[0] += 1
        if rank == 1 and steps[0] == 3:
            time.sleep(8)
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    config = TrainConfig(batch_size=8, progress=False, collective_timeout_s=2, device="cpu")
    trainer = Trainer(torch.nn.Linear(4, 1), data, None, loss_fn, None, config)
    start = time.perf_counter()
    try:
        trainer.fit()
        result = "finished"
    except Exception as err:
        result = f"{type(err).__name__}: {err}"
    with open(os.path.join(out, str(rank)), "w") as f:
        f.write(f"{time.perf_counter() - start:.1f}\n{result}")


def test_a_stalled_rank_ends_the_others_with_a_clear_timeout(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with contextlib.suppress(Exception):  # rank 1 fails too, once rank 0 has gone
        mp.spawn(_stalled_rank_worker, args=(port, str(tmp_path)), nprocs=2)
    waited, message = (tmp_path / "0").read_text().split("\n", 1)
    assert message.startswith("CollectiveTimeoutError: rank 0 of 2: a collective operation")
    assert "waited more than 2 s" in message and float(waited) < 8
