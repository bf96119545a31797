"""Pathfinder generator: labels against independent connectivity checks, balance, markers,
the lra_release layout round trip and S4's split."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from bpsn_ext.data import pathfinder as pf


@pytest.fixture(scope="module")
def lra32():
    return pf.generate(60, seed=3)


def _chain_components(paddles: np.ndarray, link: float) -> np.ndarray:
    """Union-find over paddles: two paddles are linked when the end of one lies within
    ``link`` of the start of the other (a gap of the same snake).  Uses geometry only."""
    parent = list(range(len(paddles)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ends, starts = paddles[:, 2:], paddles[:, :2]
    d = np.linalg.norm(ends[:, None] - starts[None], axis=-1)
    for i, j in zip(*np.nonzero(d <= link)):
        if i != j:
            parent[find(i)] = find(j)
    return np.array([find(i) for i in range(len(paddles))])


def test_labels_match_paddle_connectivity_with_lra_parameters(lra32):
    rng = np.random.default_rng(0)
    for s in lra32:
        order = rng.permutation(len(s.paddles))  # no use of the drawing order or the ids
        paddles = s.paddles[order]
        comp = _chain_components(paddles, s.margin + 1e-6)
        hits = []
        for m in s.markers:
            d = np.minimum(
                np.linalg.norm(paddles[:, :2] - m, axis=1),
                np.linalg.norm(paddles[:, 2:] - m, axis=1),
            )
            assert d.min() < 1e-9  # every marker sits on a paddle end
            hits.append(comp[d.argmin()])
        assert (hits[0] == hits[1]) == bool(s.label)
        # the chains are the snakes: their count equals the number of drawn snakes
        assert len(set(comp)) == len(set(s.snake_ids.tolist()))
        # both target snakes have the full contour length
        for snake in (0, 1):
            assert (s.snake_ids == snake).sum() == 14


def test_labels_match_connected_components_of_the_rendered_pixels():
    ndimage = pytest.importorskip("scipy.ndimage")
    # a wider clearance (a difficulty parameter) keeps distinct snakes apart at pixel level
    for s in pf.generate(25, seed=5, clearance=3.0):
        ink = s.ink > 0.05
        labels, n = ndimage.label(ink, structure=np.ones((3, 3)))
        ys, xs = np.nonzero(ink)

        def component(m, ys=ys, xs=xs, labels=labels):
            k = ((ys + 0.5 - m[0]) ** 2 + (xs + 0.5 - m[1]) ** 2).argmin()
            return labels[ys[k], xs[k]]

        assert n == len(set(s.snake_ids.tolist()))
        assert (component(s.markers[0]) == component(s.markers[1])) == bool(s.label)


def test_label_balance_markers_and_image_format(lra32):
    labels = np.array([s.label for s in lra32])
    assert 0.3 < labels.mean() < 0.7
    cfg = pf.PRESETS["pathfinder32"]
    c = np.arange(32) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    for s in lra32:
        img = s.image
        assert img.shape == (32, 32) and img.dtype == np.uint8 and img.max() == 255
        assert len(s.markers) == 2 and s.markers[0] != s.markers[1]
        for y, x in s.markers:  # a bright disc at each marker
            assert img[int(y), int(x)] >= 100
        # no bright pixel away from the paddles except at the two markers
        near = np.zeros_like(img, dtype=bool)
        for y, x in s.markers:
            near |= (yy - y) ** 2 + (xx - x) ** 2 <= (cfg.marker_radius + 1.0) ** 2
        assert np.all(img[(s.ink == 0) & ~near] == 0)
    # distractors are drawn (20 / (14 // 3) = 5 snakes of 4 paddles when they fit)
    assert np.mean([len(set(s.snake_ids.tolist())) for s in lra32]) > 4


def test_seeded_and_difficulty_parameters():
    a = pf.generate(3, seed=7)
    b = pf.generate(3, seed=7)
    assert all(np.array_equal(x.image, y.image) and x.label == y.label for x, y in zip(a, b))
    easy = pf.generate(2, seed=1, contour_length=6)
    assert all((s.snake_ids == 0).sum() == 6 for s in easy)
    assert pf.difficulty_folder(6) == "curv_baseline"
    assert pf.difficulty_folder(14) == "curv_contour_length_14"
    big = pf.generate(1, pf.PRESETS["pathfinder128"], seed=0)[0]
    assert big.image.shape == (128, 128) and big.margin in (2.0, 3.0)
    with pytest.raises(ValueError, match="paddle_length must be > 0"):
        pf.PathfinderConfig(paddle_length=0.0)


def test_lra_release_layout_round_trip_and_s4_split(tmp_path):
    samples = pf.generate(25, seed=2)
    base = pf.write_pathfinder(samples, tmp_path / "lra_release", per_folder=10)
    assert base.endswith("pathfinder32/curv_contour_length_14")
    assert sorted(
        p.name
        for p in (tmp_path / "lra_release/pathfinder32/curv_contour_length_14/metadata").iterdir()
    ) == ["0.npy", "1.npy", "2.npy"]
    line = (
        (tmp_path / "lra_release/pathfinder32/curv_contour_length_14/metadata/1.npy")
        .read_text()
        .splitlines()[0]
        .split()
    )
    assert line[:4] == ["imgs/1", "sample_0.png", "0", str(samples[10].label)]
    for root in (tmp_path, tmp_path / "lra_release", base):  # any level of the tree
        images, labels = pf.read_pathfinder(root)
        assert np.array_equal(images, np.stack([s.image for s in samples]))
        assert labels.tolist() == [s.label for s in samples]
    # the release has an empty image: it is skipped, as S4's blacklist does
    (tmp_path / "lra_release/pathfinder32/curv_contour_length_14/imgs/0/sample_3.png").write_bytes(
        b""
    )
    images, labels = pf.read_pathfinder(tmp_path)
    assert len(labels) == 24 and labels[3] == samples[4].label
    tr, va, te = pf.split_indices(100)
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    ref = torch.utils.data.random_split(
        range(100), [80, 10, 10], generator=torch.Generator().manual_seed(42)
    )
    assert [list(r) for r in ref] == [tr, va, te]


def test_reader_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="pathfinder32/curv_contour_length_14"):
        pf.read_pathfinder(tmp_path)
    pf.write_pathfinder(pf.generate(2, seed=0), tmp_path)
    meta = tmp_path / "pathfinder32/curv_contour_length_14/metadata/0.npy"
    meta.write_text(meta.read_text() + "imgs/0 sample_1.png 1 7 1.0\n")
    with pytest.raises(ValueError, match=r"0\.npy:3: expected"):
        pf.read_pathfinder(tmp_path)
    meta.write_text("imgs/0 sample_9.png 9 1\n")
    with pytest.raises(FileNotFoundError, match=r"0\.npy:1: image .*sample_9.png"):
        pf.read_pathfinder(tmp_path)


def test_png_codec_without_pil(tmp_path, monkeypatch):
    img = (np.arange(32 * 20) % 251).astype(np.uint8).reshape(20, 32)
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` -> ImportError
    pf.write_png(tmp_path / "a.png", img)
    assert np.array_equal(pf.read_png(tmp_path / "a.png"), img)
    monkeypatch.undo()
    pytest.importorskip("PIL")
    assert np.array_equal(pf.read_png(tmp_path / "a.png"), img)  # a valid PNG for PIL too
    pf.write_png(tmp_path / "b.png", img)  # PIL's encoder (filtered rows) ...
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert np.array_equal(pf.read_png(tmp_path / "b.png"), img)  # ... read by the fallback
