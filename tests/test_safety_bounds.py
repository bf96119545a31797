"""Bounded memory and time for every input: IDX files streamed with their header checked
before anything is allocated (gzip bombs, impossible headers, no images), grey levels refused
rather than cast, and ListOps settings whose trees cannot be drawn in time refused."""

from __future__ import annotations

import gzip
import struct
import time

import numpy as np
import pytest

from bpsn_ext.cli import main
from bpsn_ext.data import images
from bpsn_ext.data import listops as lo


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
