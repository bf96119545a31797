"""Clear errors: every bad device, seed, result file or image names the argument or file and
what was expected, before anything is built or written."""

from __future__ import annotations

import numpy as np
import pytest

from bpsn_ext.cli import main
from bpsn_ext.train import TrainConfig
from bpsn_ext.train.devices import check_device
from tests.test_safety_run_folder import LRA


@pytest.mark.parametrize(
    "device, expected",
    [
        ("meta", "device 'meta' holds no data"),
        ("banana", "device must be a torch device such as 'cpu' or 'cuda:0', got 'banana'"),
        ("mps", "device 'mps': this torch build or machine lacks it"),
    ],
)
def test_devices_that_cannot_run_are_refused_before_anything_is_written(tmp_path, device, expected):
    with pytest.raises(ValueError, match=expected):
        main([*LRA, "--checkpoint-dir", str(tmp_path / "run"), "--device", device])
    assert not (tmp_path / "run").exists()


def test_cuda_without_a_gpu_is_refused():
    import torch

    if torch.cuda.is_available():
        check_device("cuda")
        with pytest.raises(ValueError, match="CUDA devices"):
            check_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="device 'cuda': no CUDA GPU is usable here"):
            check_device("cuda")


@pytest.mark.parametrize(
    "seed, expected", [("-1", ">= 0, got -1"), ("4294967296", "<= 4294967295")]
)
def test_seeds_outside_the_generators_range_are_refused(tmp_path, capsys, seed, expected):
    with pytest.raises(SystemExit):
        main([*LRA, "--checkpoint-dir", str(tmp_path / "run"), "--seed", seed])
    assert f"argument --seed: must be an integer {expected}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="seed must be"):
        TrainConfig(seed=int(seed))


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x89PNG\x00\x01\xff binary", "not UTF-8 text"),
        (b'{"config": {}, "results": [{"median_ms": NaN}]}', "NaN is not a JSON number"),
        (b'{"results": [', "not valid JSON at line 1"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_plot_names_a_bad_json_file(tmp_path, content, expected):
    source = tmp_path / "bench.json"
    source.write_bytes(content)
    with pytest.raises(ValueError, match=f"{source}: {expected}"):
        main(["plot", "bpsn", str(source), "--out", str(tmp_path / "fig.png")])
    assert not (tmp_path / "fig.png").exists()


def test_oversized_or_bomb_png_names_the_file(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    from bpsn_ext.data.pathfinder import read_png

    wide = tmp_path / "wide.png"
    Image.new("L", (5000, 4)).save(wide)
    with pytest.raises(ValueError, match=f"{wide}: a 5000 x 4 image; expected a Pathfinder"):
        read_png(wide)
    bomb = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 x 1000: Pillow's bomb error
    with pytest.raises(ValueError, match=f"{bomb}: Image size .* decompression bomb"):
        read_png(bomb)


def test_console_prints_a_key_error_without_quotes(tmp_path, capsys):
    from bpsn_ext.cli import console_main

    source = tmp_path / "bench.json"
    source.write_text('{"config": {}}')
    assert console_main(["plot", "bpsn", str(source), "--out", str(tmp_path / "f.png")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("bpsn-ext: bpsn benchmark: missing key 'results'") and "Traceback" not in err
    )
