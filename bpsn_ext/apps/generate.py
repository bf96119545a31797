"""``bpsn-ext generate listops|pathfinder``: write a generated data set in the ``lra_release``
layout, so that ``train lra --data OUT`` (and S4's own loaders) read it.

* ``generate listops --out DIR``: ``DIR/listops-1000/basic_{train,val,test}.tsv``.  Defaults
  are the LRA settings (96k / 2k / 2k samples, 500 < tokens < 2000, depth 10, 10 arguments).
* ``generate pathfinder --out DIR``: ``DIR/pathfinder32/curv_contour_length_14/{imgs,metadata}``
  (``--resolution 128`` for Path-X parameters, ``--contour-length 6|9|14`` for the
  difficulty).  Images go in folders of ``--per-folder`` (1000) like the release.
* ``generate wordnet-glosses --out DIR``: from WordNet's ``data.noun`` (Debian's
  ``wordnet-base``), ``DIR/SST-2/{train,dev}.tsv`` (a two-category gloss classification task in
  the SST-2 layout, for ``train glue --task sst2 --data DIR``) and ``DIR/corpus.txt`` (every
  other gloss, one a line, for ``pretrain --text DIR/corpus.txt``); see
  ``bpsn_ext.data.wordnet``.

Both refuse to replace an existing data set unless ``--overwrite`` is given.  The new data set is
written into a hidden folder beside the target (``.<name>.partial``) and swapped in only when
complete, so a run killed midway leaves the earlier data set (or none) in place, never a mix.
"""

from __future__ import annotations

import argparse
import os
import shutil

from bpsn_ext.util.cli_args import flag_errors, positive_int

GENERATE_HELP = {
    "listops": "write ListOps train/val/test TSV files (lra_release layout)",
    "pathfinder": "write Pathfinder images and metadata (lra_release layout)",
    "wordnet-glosses": "write a WordNet gloss-category task (SST-2 layout) and a gloss corpus",
}


def add_generate_arguments(parser: argparse.ArgumentParser, which: str) -> None:
    """Flags of ``generate listops`` / ``generate pathfinder``."""
    parser.add_argument("--out", required=True, help="output folder (the lra_release root)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing data set (otherwise refused); the new one is "
        "written beside it and swapped in when complete",
    )
    if which == "wordnet-glosses":
        _wordnet_arguments(parser)
    elif which == "listops":
        parser.add_argument(
            "--n-train", type=positive_int, default=96_000, help="training rows (LRA: 96000)"
        )
        parser.add_argument(
            "--n-val", type=positive_int, default=2_000, help="validation rows (LRA: 2000)"
        )
        parser.add_argument(
            "--n-test", type=positive_int, default=2_000, help="test rows (LRA: 2000)"
        )
        parser.add_argument(
            "--min-length",
            type=int,
            default=500,
            help="keep trees with more tokens than this (500)",
        )
        parser.add_argument(
            "--max-length",
            type=int,
            default=2000,
            help="keep trees with fewer tokens than this (2000)",
        )
        parser.add_argument(
            "--max-depth", type=positive_int, default=10, help="deepest operator nesting (10)"
        )
        parser.add_argument(
            "--max-args", type=int, default=10, help="most arguments of one operator (10)"
        )
    else:
        parser.add_argument(
            "--n", type=positive_int, default=200_000, help="images (LRA: 200000 per difficulty)"
        )
        parser.add_argument(
            "--resolution",
            type=int,
            choices=(32, 128),
            default=32,
            help="image side: 32 (Pathfinder) or 128 (Path-X)",
        )
        parser.add_argument(
            "--contour-length",
            type=positive_int,
            default=14,
            help="difficulty: 6 (baseline), 9, 14 (hard, default)",
        )
        parser.add_argument(
            "--per-folder",
            type=positive_int,
            default=1000,
            help="images per imgs/<i> folder, like the release (1000)",
        )
        for name, kind, help_ in (
            ("--continuity", float, "turn smoothness (1.0; 128: 1.8)"),
            ("--seed-distance", float, "distance of the two snakes' starts (7; 128: 20)"),
            ("--marker-radius", float, "marker disc radius (1.5; 128: 3)"),
            ("--thickness", float, "paddle width (0.5; 128: 1.5)"),
            ("--paddle-length", float, "paddle length (2; 128: 5 [R])"),
            ("--n-distractors", int, "distractor snakes (default 20 or 35 / their length)"),
            ("--antialias", int, "render scale (2)"),
        ):
            parser.add_argument(name, type=kind, default=None, help=help_)


def _staging(target: str, overwrite: bool, what: str) -> str:
    """A fresh hidden folder beside ``target`` to write into; refuses an existing ``target``
    without ``overwrite``.  A ``target`` lost between the two renames of an earlier swap is
    restored first."""
    parent, name = os.path.split(os.path.normpath(target))
    old = os.path.join(parent, f".{name}.old")
    if not os.path.exists(target) and os.path.isdir(old):
        os.replace(old, target)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        if not overwrite:
            raise SystemExit(
                f"generate {what}: {target} already holds a data set. Pass --overwrite to "
                "replace it (the new one is written beside it and swapped in when complete), "
                "or choose another --out."
            )
    staging = os.path.join(parent, f".{name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a run killed midway
    os.makedirs(staging)
    return staging


def _swap_in(staging: str, target: str) -> None:
    """Move the complete ``staging`` folder to ``target``; the earlier ``target`` is removed
    only after the new one is in place."""
    parent, name = os.path.split(os.path.normpath(target))
    old = os.path.join(parent, f".{name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(target):
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _wordnet_arguments(parser: argparse.ArgumentParser) -> None:
    from bpsn_ext.data.wordnet import DEFAULT_CATEGORIES

    parser.add_argument(
        "--wordnet",
        nargs="+",
        default=["/usr/share/wordnet/data.noun"],
        metavar="DATA_FILE",
        help="WordNet data.* files; the corpus takes "
        "every gloss of all of them (/usr/share/wordnet/data.noun)",
    )
    parser.add_argument(
        "--categories",
        nargs=2,
        default=list(DEFAULT_CATEGORIES),
        metavar=("LABEL0", "LABEL1"),
        help=f"the two lexicographer categories ({' '.join(DEFAULT_CATEGORIES)})",
    )
    parser.add_argument(
        "--max-per-class",
        type=positive_int,
        help="glosses per category (default: all of the smaller one)",
    )
    parser.add_argument("--dev-fraction", type=float, default=0.1, help="(0.1)")


def run_generate(args: argparse.Namespace) -> int:
    if args.task_kind == "listops":
        return _listops(args)
    if args.task_kind == "wordnet-glosses":
        return _wordnet(args)
    return _pathfinder(args)


def _wordnet(args: argparse.Namespace) -> int:
    from bpsn_ext.data.wordnet import write_gloss_data

    with flag_errors("generate wordnet-glosses"):
        info = write_gloss_data(
            args.wordnet,
            args.out,
            args.categories,
            dev_fraction=args.dev_fraction,
            max_per_class=args.max_per_class,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    print(
        f"wrote {info['train']} train / {info['dev']} dev glosses ({info['labels']}) to "
        f"{os.path.dirname(info['paths']['train'])} and {info['corpus_lines']} corpus lines "
        f"to {info['paths']['corpus']}",
        flush=True,
    )
    return 0


def _listops(args: argparse.Namespace) -> int:
    from bpsn_ext.data import listops

    total = args.n_train + args.n_val + args.n_test
    with flag_errors("generate listops"):  # settings whose trees cannot be drawn in time
        listops.check_depth(args.max_depth, args.max_args)
    print(
        f"generating {total} ListOps samples ({args.min_length} < tokens < {args.max_length}) ...",
        flush=True,
    )
    samples = listops.generate(
        total,
        seed=args.seed,
        min_length=args.min_length,
        max_length=args.max_length,
        max_depth=args.max_depth,
        max_args=args.max_args,
    )
    folder = os.path.join(args.out, "listops-1000")
    staging = _staging(folder, args.overwrite, "listops")
    bounds = {
        "train": (0, args.n_train),
        "val": (args.n_train, args.n_train + args.n_val),
        "test": (args.n_train + args.n_val, total),
    }
    for split, (lo, hi) in bounds.items():
        listops.write_tsv(samples[lo:hi], os.path.join(staging, f"basic_{split}.tsv"))
    _swap_in(staging, folder)
    for split, (lo, hi) in bounds.items():
        print(f"wrote {hi - lo} rows to {os.path.join(folder, f'basic_{split}.tsv')}", flush=True)
    return 0


def _pathfinder(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np
    from tqdm.auto import tqdm

    from bpsn_ext.data import pathfinder

    cfg = pathfinder.PRESETS[f"pathfinder{args.resolution}"]
    overrides = {"contour_length": args.contour_length}
    for key in (
        "continuity",
        "seed_distance",
        "marker_radius",
        "thickness",
        "paddle_length",
        "n_distractors",
        "antialias",
    ):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    cfg = replace(cfg, **overrides)
    target = os.path.join(
        args.out, f"pathfinder{args.resolution}", pathfinder.difficulty_folder(cfg.contour_length)
    )
    staging = _staging(target, args.overwrite, "pathfinder")
    root = os.path.join(staging, "root")  # write_pathfinder adds pathfinder<size>/<difficulty>
    rng = np.random.default_rng(args.seed)
    written = 0
    base = None
    with tqdm(total=args.n, desc="pathfinder", disable=not args.progress) as bar:
        for k, lo in enumerate(range(0, args.n, args.per_folder)):
            chunk = [
                pathfinder.generate_sample(cfg, rng)
                for _ in range(min(args.per_folder, args.n - lo))
            ]
            base = pathfinder.write_pathfinder(
                chunk, root, config=cfg, per_folder=args.per_folder, start_folder=k
            )
            written += len(chunk)
            bar.update(len(chunk))
    os.replace(base, os.path.join(staging, "complete"))
    shutil.rmtree(root)
    _swap_in(os.path.join(staging, "complete"), target)
    shutil.rmtree(staging)
    print(f"wrote {written} images and metadata under {target}", flush=True)
    return 0
