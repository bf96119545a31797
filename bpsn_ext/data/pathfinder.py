"""Pathfinder (Linsley et al. 2018, as used by the Long Range Arena), generated locally.

A re-implementation of the ``snakes2`` procedure (numpy only; PIL only to write/read PNG when it
is importable, otherwise a small zlib PNG codec here).  Images are not bit-identical to the LRA
release; the procedure and its parameters are the same:

1. Two *target snakes*, each a chain of ``contour_length`` short straight *paddles*
   (``paddle_length`` long, ``thickness`` wide) separated by gaps of ``margin``.  Their first
   paddles start ``seed_distance`` apart.  Each next paddle's direction is drawn from a circle of
   candidates with weight ``max(cos(min(continuity * |turn|, pi/2)), 0)**2`` (``continuity``
   1.0 allows turns up to 90 degrees, larger values make smoother, harder-to-confuse paths).
   A candidate must stay inside the image (``padding``) and keep a ``clearance`` from every other
   paddle (other snakes, and its own snake except the paddle it continues), so snakes never
   touch or cross.
2. ``n_distractors`` distractor snakes of ``distractor_length`` paddles, placed at random where
   they fit (skipped when they do not), and optionally ``single_paddles`` one-paddle clutter.
3. Everything is drawn at ``antialias`` times the resolution and averaged down; two disc
   *markers* (``marker_radius``) are drawn: at the start of target snake ``i`` and at the end of
   snake ``i`` (**label 1**, connected) or of the other snake (**label 0**), the label drawn with
   probability 1/2 (as snakes2).  The image is scaled to a maximum of 255 (uint8).

LRA parameters (``PATHFINDER32``, the defaults; ``PATHFINDER128`` for Path-X): see
``PRESETS``.  Difficulty is the contour length: ``curv_baseline`` 6, ``curv_contour_length_9``
9, ``curv_contour_length_14`` 14 (the *hard* split that S4 and LRA use).  Values not given by the
sources (``paddle_length`` of the 128 set, ``clearance``) are reconstructions, marked ``[R]``.

Layout (``write_pathfinder``/``read_pathfinder``): ``pathfinder32/curv_contour_length_14/
imgs/<k>/sample_<n>.png`` and ``metadata/<k>.npy``; as in the release, the ``.npy`` files are
text, one line per image: ``imgs/<k> sample_<n>.png <n> <label> <continuity> <contour_length>
<distractor_length> <paddle_length> <thickness> <margin> 1``.  `split_indices` is S4's
seeded 80/10/10 split (``torch.utils.data.random_split`` with seed 42).
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from bpsn_ext.util.files import atomic_open

__all__ = [
    "PathfinderConfig",
    "PathfinderSample",
    "PRESETS",
    "DIFFICULTIES",
    "generate_sample",
    "generate",
    "write_pathfinder",
    "read_pathfinder",
    "split_indices",
    "difficulty_folder",
    "write_png",
    "read_png",
]

DIFFICULTIES = {"easy": 6, "baseline": 6, "intermediate": 9, "medium": 9, "hard": 14}


@dataclass(frozen=True)
class PathfinderConfig:
    """Generator parameters (defaults: LRA ``pathfinder32``).  Lengths are in output pixels.

    ``margins``: gap between paddles, one drawn per image (128: (2, 3)).  ``clearance`` [R]:
    minimum centre-line distance between a new paddle and other paddles (default
    ``margin + thickness``).  ``n_distractors`` default ``round(distractor_density /
    distractor_length)`` (LRA: 20 for 32x32, 35 for 128x128); ``distractor_length`` default
    ``contour_length // 3``.
    """

    size: int = 32
    contour_length: int = 14
    paddle_length: float = 2.0
    thickness: float = 0.5
    margins: tuple[float, ...] = (1.0,)
    continuity: float = 1.0
    seed_distance: float = 7.0
    marker_radius: float = 1.5
    antialias: int = 2
    padding: int = 1
    distractor_length: int | None = None
    n_distractors: int | None = None
    distractor_density: float = 20.0
    single_paddles: int = 0
    clearance: float | None = None
    n_directions: int = 72
    max_tries: int = 50

    def __post_init__(self) -> None:
        if self.size < 8 or self.contour_length < 1 or self.antialias < 1:
            raise ValueError(
                f"need size >= 8, contour_length >= 1, antialias >= 1; got "
                f"{self.size}, {self.contour_length}, {self.antialias}"
            )
        for name in ("paddle_length", "thickness", "continuity", "seed_distance", "marker_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.margins or min(self.margins) < 0:
            raise ValueError(
                f"margins must be a non-empty tuple of values >= 0, got {self.margins!r}"
            )

    @property
    def d_length(self) -> int:
        return self.distractor_length or max(1, self.contour_length // 3)

    @property
    def n_distractor_snakes(self) -> int:
        if self.n_distractors is not None:
            return self.n_distractors
        return int(round(self.distractor_density / self.d_length))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["margins"] = list(self.margins)
        return d


#: LRA settings (lra_benchmarks/data/pathfinder.py, papers/anchors §3b).
PRESETS = {
    "pathfinder32": PathfinderConfig(),
    "pathfinder128": PathfinderConfig(
        size=128,
        paddle_length=5.0,
        thickness=1.5,
        margins=(2.0, 3.0),
        continuity=1.8,
        seed_distance=20.0,
        marker_radius=3.0,
        distractor_density=35.0,
        padding=1,
    ),
}


@dataclass
class PathfinderSample:
    """One image: ``image`` uint8 ``[size, size]``, ``label`` (1 = the markers are on the same
    snake), ``markers`` ``[(y, x), (y, x)]``, ``paddles`` float ``[P, 4]`` (y0, x0, y1, x1 of
    every paddle, in drawing order), ``snake_ids`` ``[P]`` (0 and 1 targets, 2.. distractors),
    ``ink`` float ``[size, size]`` (the paddles before the markers, in [0, 1])."""

    image: np.ndarray
    label: int
    markers: list
    paddles: np.ndarray
    snake_ids: np.ndarray
    margin: float
    ink: np.ndarray = field(repr=False, default=None)


def difficulty_folder(contour_length: int) -> str:
    """``curv_baseline`` (6) or ``curv_contour_length_<n>``."""
    return "curv_baseline" if contour_length == 6 else f"curv_contour_length_{contour_length}"


# ----------------------------------------------------------------------------- geometry
def _point_segment_distance(p: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Distances ``[..., S]`` from points ``p [..., 2]`` to segments ``segs [S, 4]``."""
    a, b = segs[:, :2], segs[:, 2:]
    ab = b - a
    denom = np.maximum((ab * ab).sum(-1), 1e-12)
    ap = p[..., None, :] - a
    t = np.clip((ap * ab).sum(-1) / denom, 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.sqrt(((p[..., None, :] - closest) ** 2).sum(-1))


def _segment_clear(cands: np.ndarray, others: np.ndarray, clearance: float) -> np.ndarray:
    """``[K]`` bool: candidate segments ``[K, 4]`` keep ``clearance`` from all ``others``."""
    if len(others) == 0:
        return np.ones(len(cands), dtype=bool)
    ts = np.linspace(0.0, 1.0, 7)
    pts = cands[:, None, :2] + ts[None, :, None] * (cands[:, None, 2:] - cands[:, None, :2])
    d1 = _point_segment_distance(pts, others).min(axis=(1, 2))
    # and the other way round (the others' points against the candidates) for short overlaps
    opts = others[:, None, :2] + ts[None, :, None] * (others[:, None, 2:] - others[:, None, :2])
    d2 = _point_segment_distance(opts.reshape(-1, 2), cands).min(axis=0)
    return np.minimum(d1, d2) >= clearance


class _Canvas:
    """Paddles placed so far, with their snake ids."""

    def __init__(self, cfg: PathfinderConfig, margin: float, rng: np.random.Generator) -> None:
        self.cfg, self.margin, self.rng = cfg, margin, rng
        self.clearance = cfg.clearance if cfg.clearance is not None else margin + cfg.thickness
        self.segs: list[np.ndarray] = []
        self.ids: list[int] = []
        self.angles = np.arange(cfg.n_directions) * (2 * math.pi / cfg.n_directions)

    def inside(self, segs: np.ndarray) -> np.ndarray:
        lo, hi = float(self.cfg.padding), float(self.cfg.size - self.cfg.padding)
        return np.all((segs >= lo) & (segs <= hi), axis=-1)

    def _others(self, exclude_last_of: int | None = None) -> np.ndarray:
        if not self.segs:
            return np.zeros((0, 4))
        arr = np.asarray(self.segs)
        if exclude_last_of is not None:
            own = [i for i, s in enumerate(self.ids) if s == exclude_last_of]
            if own:
                arr = np.delete(arr, own[-1], axis=0)
        return arr

    def seed(self, start: np.ndarray | None, snake: int) -> np.ndarray | None:
        """Place a first paddle (at ``start`` when given, else anywhere free)."""
        L = self.cfg.paddle_length
        for _ in range(self.cfg.max_tries):
            if start is None:
                p = self.rng.uniform(self.cfg.padding, self.cfg.size - self.cfg.padding, size=2)
            else:
                p = np.asarray(start, dtype=float)
            theta = self.rng.uniform(-math.pi, math.pi)
            seg = np.concatenate([p, p + L * np.array([math.sin(theta), math.cos(theta)])])
            if (
                self.inside(seg[None])[0]
                and _segment_clear(seg[None], self._others(), self.clearance)[0]
            ):
                self.segs.append(seg)
                self.ids.append(snake)
                return seg
            if start is not None and _ > self.cfg.max_tries // 2:
                return None
        return None

    def extend(self, snake: int) -> bool:
        """Add one paddle after the last paddle of ``snake``; False at a dead end."""
        cfg = self.cfg
        last = next(s for s, i in zip(reversed(self.segs), reversed(self.ids)) if i == snake)
        end = last[2:]
        heading = math.atan2(last[2] - last[0], last[3] - last[1])
        dirs = np.stack([np.sin(self.angles), np.cos(self.angles)], axis=1)
        a = end + self.margin * dirs
        b = a + cfg.paddle_length * dirs
        cands = np.concatenate([a, b], axis=1)
        turn = np.abs((self.angles - heading + math.pi) % (2 * math.pi) - math.pi)
        weight = np.maximum(np.cos(np.minimum(turn * cfg.continuity, math.pi / 2)), 0.0) ** 2
        ok = (weight > 1e-9) & self.inside(cands)
        if ok.any():
            idx = np.flatnonzero(ok)
            ok[idx] = _segment_clear(
                cands[idx], self._others(exclude_last_of=snake), self.clearance
            )
        if not ok.any():
            return False
        w = np.where(ok, weight, 0.0)
        k = self.rng.choice(len(w), p=w / w.sum())
        self.segs.append(cands[k])
        self.ids.append(snake)
        return True

    def remove_snake(self, snake: int) -> None:
        keep = [i for i, s in enumerate(self.ids) if s != snake]
        self.segs = [self.segs[i] for i in keep]
        self.ids = [self.ids[i] for i in keep]

    def snake(self, start: np.ndarray | None, n: int, snake: int) -> bool:
        if self.seed(start, snake) is None:
            return False
        for _ in range(n - 1):
            if not self.extend(snake):
                self.remove_snake(snake)
                return False
        return True


# ----------------------------------------------------------------------------- rendering
def _render(segs: np.ndarray, cfg: PathfinderConfig) -> np.ndarray:
    """Anti-aliased paddles ``[size, size]`` in [0, 1]."""
    aa, n = cfg.antialias, cfg.size
    c = (np.arange(n * aa) + 0.5) / aa
    grid = np.stack(np.meshgrid(c, c, indexing="ij"), axis=-1)  # [n*aa, n*aa, 2] (y, x)
    if len(segs) == 0:
        return np.zeros((n, n))
    half = max(cfg.thickness, 1.0 / aa) / 2
    d = np.full(grid.shape[:2], np.inf)
    for chunk in range(0, len(segs), 16):
        d = np.minimum(d, _point_segment_distance(grid, segs[chunk : chunk + 16]).min(-1))
    fine = np.clip((half - d) * aa + 0.5, 0.0, 1.0)
    return fine.reshape(n, aa, n, aa).mean(axis=(1, 3))


def _disc(center, radius: float, cfg: PathfinderConfig) -> np.ndarray:
    aa, n = cfg.antialias, cfg.size
    c = (np.arange(n * aa) + 0.5) / aa
    yy, xx = np.meshgrid(c, c, indexing="ij")
    fine = ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2).astype(float)
    return fine.reshape(n, aa, n, aa).mean(axis=(1, 3))


def generate_sample(
    cfg: PathfinderConfig, rng: np.random.Generator, label: int | None = None
) -> PathfinderSample:
    """One image (the label is drawn with probability 1/2 unless given)."""
    if label is None:
        label = int(rng.integers(2))
    for _ in range(100 * cfg.max_tries):
        margin = float(cfg.margins[rng.integers(len(cfg.margins))])
        canvas = _Canvas(cfg, margin, rng)
        if not canvas.snake(None, cfg.contour_length, 0):
            continue
        first = canvas.segs[0][:2]
        phi = rng.uniform(0, 2 * math.pi)
        start2 = first + cfg.seed_distance * np.array([math.sin(phi), math.cos(phi)])
        if not canvas.snake(start2, cfg.contour_length, 1):
            continue
        break
    else:
        raise RuntimeError(
            f"could not place two target snakes with {cfg}; lower "
            "contour_length / seed_distance or raise size"
        )
    for d in range(cfg.n_distractor_snakes):
        for _ in range(cfg.max_tries // 10 + 1):
            if canvas.snake(None, cfg.d_length, 2 + d):
                break
    next_id = 2 + cfg.n_distractor_snakes
    for k in range(cfg.single_paddles):
        canvas.seed(None, next_id + k)
    segs = np.asarray(canvas.segs)
    ids = np.asarray(canvas.ids)
    tips = []
    for s in (0, 1):
        own = segs[ids == s]
        tips.append((own[0][:2], own[-1][2:]))
    origin = int(rng.integers(2))
    terminal = origin if label == 1 else 1 - origin
    markers = [tips[origin][0], tips[terminal][1]]
    ink = _render(segs, cfg)
    mark = np.maximum(
        _disc(markers[0], cfg.marker_radius, cfg), _disc(markers[1], cfg.marker_radius, cfg)
    )
    image = np.maximum(ink, mark)
    image = np.rint(255.0 * image / max(image.max(), 1e-12)).astype(np.uint8)
    return PathfinderSample(
        image, label, [tuple(map(float, m)) for m in markers], segs, ids, margin, ink
    )


def generate(
    n: int, config: PathfinderConfig | None = None, *, seed: int = 0, **overrides
) -> list[PathfinderSample]:
    """``n`` samples from ``config`` (default ``pathfinder32``; ``overrides`` replace fields,
    e.g. ``contour_length=6``), seeded."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    cfg = replace(config or PRESETS["pathfinder32"], **overrides)
    rng = np.random.default_rng(seed)
    return [generate_sample(cfg, rng) for _ in range(n)]


# ----------------------------------------------------------------------------- PNG
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """8-bit greyscale PNG (PIL when importable, else zlib), written atomically."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 2:
        raise ValueError(f"write_png expects a [H, W] uint8 image, got shape {image.shape}")
    try:
        from PIL import Image
    except ImportError:
        Image = None
    with atomic_open(path, binary=True) as f:
        if Image is not None:
            Image.fromarray(image, mode="L").save(f, format="PNG")
            return
        h, w = image.shape
        raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))
        f.write(
            b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b"")
        )


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _decode_png(data: bytes, path: str) -> np.ndarray:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    if hdr is None or hdr[2] != 8 or hdr[3] not in (0, 4) or hdr[6] != 0:
        raise ValueError(
            f"{path}: only 8-bit greyscale non-interlaced PNGs are read without "
            f"PIL (header {hdr}); install Pillow"
        )
    w, h, bpp = hdr[0], hdr[1], 1 if hdr[3] == 0 else 2
    _check_png_size(w, h, path)
    inflate = zlib.decompressobj()  # never more than the image needs
    raw = inflate.decompress(idat, h * (w * bpp + 1))
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = [0] * stride
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = list(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[ftype]
            line[i] = (line[i] + pred) & 0xFF
        out[y] = line
        prev = line
    return out[:, ::bpp]


MAX_PNG_SIDE = 4096
"""The widest / tallest PNG `read_png` decodes (Pathfinder images are 32 to 256 pixels)."""


def _check_png_size(width: int, height: int, path: str) -> None:
    """Refuse an image header larger than `MAX_PNG_SIDE` before decoding it."""
    if not (0 < width <= MAX_PNG_SIDE and 0 < height <= MAX_PNG_SIDE):
        raise ValueError(
            f"{path}: a {width} x {height} image; expected a Pathfinder image of at most "
            f"{MAX_PNG_SIDE} x {MAX_PNG_SIDE} pixels"
        )


def read_png(path: str | os.PathLike) -> np.ndarray:
    """A PNG as a greyscale uint8 ``[H, W]`` array; a truncated or corrupt file raises
    ValueError naming it."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        try:
            from PIL import Image
        except ImportError:
            return _decode_png(data, path)
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise ValueError(f"{path}: {err}; expected a Pathfinder image") from None
        with im:
            _check_png_size(*im.size, path)
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, struct.error, zlib.error, IndexError) as err:
        detail = "unreadable header" if "cannot identify" in str(err) else str(err)
        raise ValueError(
            f"{path}: truncated or corrupt PNG ({len(data)} bytes; {detail}); "
            "expected a complete 8-bit greyscale PNG image"
        ) from err


# ----------------------------------------------------------------------------- layout
def write_pathfinder(
    samples: list[PathfinderSample],
    root: str | os.PathLike,
    *,
    config: PathfinderConfig | None = None,
    per_folder: int = 1000,
    start_folder: int = 0,
    progress: bool = False,
) -> str:
    """Write ``samples`` under ``root/pathfinder<size>/<difficulty>/`` (images in folders of
    ``per_folder``, one metadata file per folder).  Returns the difficulty folder."""
    if not samples:
        raise ValueError("write_pathfinder: no samples")
    cfg = config or PRESETS["pathfinder32"]
    size = samples[0].image.shape[0]
    base = os.path.join(os.fspath(root), f"pathfinder{size}", difficulty_folder(cfg.contour_length))
    chunks = range(0, len(samples), per_folder)
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(samples), desc="writing", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None
    for j, lo in enumerate(chunks):
        k = start_folder + j
        lines = []
        for n, s in enumerate(samples[lo : lo + per_folder]):
            name = f"sample_{n}.png"
            write_png(os.path.join(base, "imgs", str(k), name), s.image)
            lines.append(
                f"imgs/{k} {name} {n} {s.label} {cfg.continuity} {cfg.contour_length} "
                f"{cfg.d_length} {cfg.paddle_length} {cfg.thickness} {s.margin} 1"
            )
            if bar is not None:
                bar.update(1)
        with atomic_open(os.path.join(base, "metadata", f"{k}.npy")) as f:
            f.write("\n".join(lines) + "\n")
    if bar is not None:
        bar.close()
    return base


def _resolve_root(root: str, resolution: int, difficulty: str) -> str:
    folder = (
        difficulty_folder(DIFFICULTIES[difficulty]) if difficulty in DIFFICULTIES else difficulty
    )
    for cand in (
        root,
        os.path.join(root, folder),
        os.path.join(root, f"pathfinder{resolution}", folder),
        os.path.join(root, "lra_release", f"pathfinder{resolution}", folder),
    ):
        if os.path.isdir(os.path.join(cand, "metadata")):
            return cand
    raise FileNotFoundError(
        f"no Pathfinder data under {os.path.abspath(root)!r}: expected "
        f"[lra_release/]pathfinder{resolution}/{folder}/metadata/<k>.npy and imgs/<k>/"
        "sample_<n>.png (generate it with `bpsn-ext generate pathfinder`)"
    )


def _metadata_lines(path: str) -> list[list[str]]:
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\x93NUMPY"):
        arr = np.load(path, allow_pickle=False)
        return [[str(v) for v in row] for row in np.atleast_2d(arr)]
    return [line.split() for line in data.decode("utf-8").splitlines() if line.strip()]


def read_pathfinder(
    root: str | os.PathLike, *, resolution: int = 32, difficulty: str = "hard"
) -> tuple[np.ndarray, np.ndarray]:
    """All images ``[N, S, S]`` uint8 and labels ``[N]`` of a Pathfinder tree, in S4's order
    (metadata files sorted by number, lines in order).  ``root`` may be the ``lra_release``
    folder, ``pathfinder32`` or the difficulty folder itself; ``difficulty`` is ``hard``
    (``curv_contour_length_14``), ``intermediate``, ``easy`` or a folder name.  Empty image
    files (the release has one) are skipped, as S4's blacklist does."""
    base = _resolve_root(os.fspath(root), resolution, difficulty)
    meta = os.path.join(base, "metadata")
    files = [f for f in os.listdir(meta) if f.endswith(".npy")]
    try:
        files.sort(key=lambda f: int(os.path.splitext(f)[0]))
    except ValueError as err:
        raise ValueError(f"{meta}: metadata files must be named <k>.npy ({err})") from err
    images, labels = [], []
    for name in files:
        path = os.path.join(meta, name)
        for line, row in enumerate(_metadata_lines(path), start=1):
            if len(row) < 4 or not row[3].lstrip("-").isdigit() or int(row[3]) not in (0, 1):
                raise ValueError(
                    f"{path}:{line}: expected 'imgs/<k> sample_<n>.png <n> "
                    f"<label 0/1> ...', got {' '.join(row)!r}"
                )
            img_path = os.path.join(base, row[0], row[1])
            if not os.path.isfile(img_path):
                raise FileNotFoundError(f"{path}:{line}: image {img_path!r} is missing")
            if os.path.getsize(img_path) == 0:
                continue
            img = read_png(img_path)
            if img.shape != (resolution, resolution):
                raise ValueError(f"{img_path}: expected {resolution}x{resolution}, got {img.shape}")
            images.append(img)
            labels.append(int(row[3]))
    if not images:
        raise ValueError(f"{base}: the metadata lists no images")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def split_indices(n: int, seed: int = 42, fraction: float = 0.1) -> tuple[list, list, list]:
    """S4's split: ``random_split(ds, [n - 2m, m, m], torch.Generator().manual_seed(seed))``
    with ``m = int(fraction * n)``; returns (train, val, test) index lists."""
    import torch

    m = int(fraction * n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - 2 * m], perm[n - 2 * m : n - m], perm[n - m :]
