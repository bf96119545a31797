"""Timing, peak-memory measurement, atomic JSON and table helpers."""

import json
import os
import time

import pytest
import torch

from bpsn_ext.bench.measure import (
    check_positive_ints,
    format_bytes,
    format_table,
    peak_memory_bytes,
    time_fn,
    time_fns,
    torch_threads,
    write_json_atomic,
)

MB = 10**6


def test_time_fn_statistics_and_call_count():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    stats = time_fn(fn, repeats=5, warmup=2)
    assert len(calls) == 7
    assert stats["repeats"] == 5
    assert 2.0 <= stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
    assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
    with pytest.raises(ValueError):
        time_fn(fn, repeats=0)


def test_time_fns_interleaves():
    order = []
    stats = time_fns(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1
    )
    assert order == ["a", "b"] * 4
    assert set(stats) == {"a", "b"} and stats["a"]["repeats"] == 3


def test_time_fns_gives_cheap_functions_more_rounds_still_interleaved():
    order = []
    stats = time_fns(
        {"slow": lambda: order.append("s"), "fast": lambda: order.append("f")},
        repeats={"slow": 2, "fast": 6},
        warmup={"slow": 0, "fast": 2},
    )
    assert order == ["f", "f"] + ["f", "f", "s", "f", "f", "f", "s", "f"]
    assert stats["slow"]["repeats"] == 2 and stats["fast"]["repeats"] == 6
    with pytest.raises(ValueError, match="repeats >= 1"):
        time_fns({"a": lambda: None}, repeats={"a": 0})


def test_peak_memory_of_one_large_tensor():
    def fn():
        return torch.ones(25_000_000).sum()  # 100 MB, freed before fn returns

    peak = peak_memory_bytes(fn)
    assert 100 * MB <= peak < 101 * MB


def test_peak_memory_counts_simultaneously_live_tensors():
    def fn():
        a = torch.ones(12_500_000)  # 50 MB
        b = a * 2.0  # 100 MB live
        del a
        c = b + 1.0  # b and c: 100 MB live again, never 150 MB
        return c

    assert 100 * MB <= peak_memory_bytes(fn) < 101 * MB


def test_peak_memory_ignores_memory_allocated_before():
    big = torch.ones(25_000_000)

    def fn():
        return big[:10].clone()

    assert peak_memory_bytes(fn) < 1 * MB


def test_peak_memory_of_a_training_step_grows_with_batch():
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))

    def step(batch):
        def fn():
            net.zero_grad(set_to_none=True)
            net(torch.ones(batch, 64)).sum().backward()

        return fn

    small, large = peak_memory_bytes(step(16)), peak_memory_bytes(step(4096))
    # the hidden activations alone are 4096 * 256 * 4 bytes = 4 MiB
    assert large > small and large > 4 * 2**20


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, {"a": 1.5, "b": [1, 2]})
    write_json_atomic(path, {"a": 2.5})
    assert json.loads(path.read_text()) == {"a": 2.5}
    assert os.listdir(path.parent) == ["r.json"]  # no temporary file left
    with pytest.raises(TypeError):
        write_json_atomic(path, {"x": object()})
    assert json.loads(path.read_text()) == {"a": 2.5}  # old content kept on failure
    assert os.listdir(path.parent) == ["r.json"]


def test_format_table_and_bytes():
    text = format_table(["name", "ms"], [["s3nn", 12.345], ["lif", 1234.5]])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "ms"] and set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["s3nn", "12.3"] and lines[3].split() == ["lif", "1234"]
    assert len({len(line) for line in lines}) == 1  # right-aligned numbers: equal widths
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"


def test_write_json_atomic_gives_normal_permissions(tmp_path):
    import os
    import stat

    from bpsn_ext.bench.measure import write_json_atomic

    path = tmp_path / "out.json"
    write_json_atomic(path, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_check_positive_ints_names_the_first_bad_value():
    check_positive_ints([("batch", 1), ("T", 8192)])
    with pytest.raises(ValueError, match=r"^repeats must be a positive int, got 0$"):
        check_positive_ints([("batch", 2), ("repeats", 0), ("T", -1)])
    for bad in (True, 1.0, "3", None):  # a bool is not taken for an int
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            check_positive_ints([("width", bad)])


def test_torch_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(other):
            assert torch.get_num_threads() == other
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
