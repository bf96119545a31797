"""``bpsn-ext train lra`` / ``bpsn-ext evaluate lra``: LRA tasks and sequential images.

Training runs on `bpsn_ext.train.Trainer` (tqdm progress, atomic checkpoints in
``--checkpoint-dir``, exact ``--resume``, ``metrics.json``, DDP under ``torchrun``).  The run's
settings go to ``<checkpoint-dir>/run_config.json`` so that ``evaluate lra --checkpoint-dir``
rebuilds the same model and data.  At the end the test split is evaluated and an energy report
(`bpsn_ext.energy.estimate`, per test sample, with per-layer firing rates) is printed
and stored in ``metrics.json`` (``"test"``, ``"energy"``).

Model and optimiser defaults come from `bpsn_ext.models.lra_classifier.LRA_PRESETS` (S4D LRA
settings; ``digits`` a small CPU preset, ``mnist``/``fashion-mnist`` the s4 ``example.py``
settings); every value is a flag.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from bpsn_ext.apps.lra_flags import add_data_arguments, add_model_arguments
from bpsn_ext.util.cli_args import flag_errors, positive_int

if TYPE_CHECKING:
    from bpsn_ext.train.lra_run import LRARunConfig

TRAIN_HELP = "train an LRAClassifier on an LRA task or sequential images"
EVALUATE_HELP = "evaluate an LRA checkpoint"

RUN_CONFIG = "run_config.json"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train lra``."""
    S = argparse.SUPPRESS
    add_data_arguments(parser, required_task=True)
    add_model_arguments(parser)
    t = parser.add_argument_group("training (defaults: the task preset)")
    t.add_argument("--epochs", type=positive_int, default=S, help="passes over the training set")
    t.add_argument("--batch-size", type=positive_int, default=S, help="global batch")
    t.add_argument("--lr", type=float, default=S, help="peak learning rate (AdamW)")
    t.add_argument(
        "--ssm-lr",
        type=float,
        default=0.001,
        help="learning rate of the SSM parameters (min with --lr; wd 0) (0.001)",
    )
    t.add_argument(
        "--weight-decay", type=float, default=S, help="AdamW weight decay (SSM parameters: 0)"
    )
    t.add_argument(
        "--scheduler",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning-rate schedule after the warm-up (cosine)",
    )
    t.add_argument(
        "--warmup-steps", type=int, default=0, help="linear learning-rate warm-up steps (0)"
    )
    t.add_argument(
        "--grad-clip", type=float, default=None, help="clip the gradient norm to this (none)"
    )
    t.add_argument("--seed", type=int, default=0, help="weights, batch order, generated data")
    t.add_argument(
        "--checkpoint-dir",
        "--out",
        dest="checkpoint_dir",
        default=None,
        help="folder for last.pt, metrics.json, run_config.json",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="also checkpoint every N steps (0: at epoch ends)",
    )
    t.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --checkpoint-dir (otherwise refused)",
    )
    t.add_argument("--metrics-json", default=None, help="also copy metrics.json here")
    t.add_argument(
        "--energy-samples",
        type=int,
        default=64,
        help="test samples of the energy report (0: no report) (64)",
    )
    t.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    t.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


# ----------------------------------------------------------------------------- helpers


def _resolve(args: argparse.Namespace) -> LRARunConfig:
    """The run's settings: the task preset completed by the flags given; bad combinations and
    data sources are refused (naming the flags) before anything is written."""
    from bpsn_ext.train.lra_run import LRARunConfig

    values = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "task_kind")}
    with flag_errors("train lra"):
        cfg = LRARunConfig.from_preset(values.pop("task"), **values)
        cfg.check_sources()
    return cfg


def _load_data(cfg: LRARunConfig, command: str):
    """`load_task` with the data settings of ``cfg``; its errors name the flags."""
    from bpsn_ext.data.lra_release import load_task

    with flag_errors(command):
        try:
            return load_task(cfg.task, **cfg.data_kwargs())
        except FileNotFoundError as err:
            if cfg.hf:
                raise
            raise FileNotFoundError(f"{err}; choose the folder with --data") from err


def _prepare(cfg: LRARunConfig, command: str):
    """``(task data, model)`` of the run (threads and seed set first)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    td = _load_data(cfg, command)
    torch.manual_seed(int(cfg.seed))
    return td, cfg.build_model(td)


def _print(*parts) -> None:
    print(*parts, flush=True)


def _format_epoch(entry: dict) -> str:
    return (
        f"epoch {entry['epoch']}: train loss {entry['train_loss']:.4f}, val loss "
        f"{entry.get('eval_loss', float('nan')):.4f}, val acc "
        f"{entry.get('eval_accuracy', float('nan')):.4f}"
    )


class _EpochPrinter:
    """Prints the trainer's end-of-epoch log records (``epoch %d: %s``) as they happen."""

    def __enter__(self):
        import logging

        class Handler(logging.Handler):
            def emit(self, record):
                if (
                    isinstance(record.args, tuple)
                    and len(record.args) == 2
                    and isinstance(record.args[1], dict)
                    and "train_loss" in record.args[1]
                ):
                    _print(_format_epoch(record.args[1]))

        self.logger = logging.getLogger("bpsn_ext.train.trainer")
        self.handler, self.level = Handler(), self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


# ----------------------------------------------------------------------------- train
def _claim(cfg: LRARunConfig) -> None:
    """Refuse a folder that holds an earlier run (unless resumed or overwritten)."""
    from bpsn_ext.train import claim_run_folder

    if cfg.checkpoint_dir:
        with flag_errors("train lra"):
            claim_run_folder(
                cfg.checkpoint_dir,
                resume=cfg.resume,
                overwrite=cfg.overwrite,
                extra=(RUN_CONFIG,),
            )


def _make_trainer(cfg: LRARunConfig, td, model):
    """``(trainer, energy)``: ``energy`` fills with `energy_summary` when the trainer reports."""
    from bpsn_ext.models.lra_energy import energy_summary
    from bpsn_ext.train import Trainer
    from bpsn_ext.train.lra_run import task_fns

    loss_fn, metrics_fn = task_fns(td.dual)
    energy: dict = {}

    def energy_fn(m):
        if cfg.energy_samples <= 0:
            return {}
        energy.update(energy_summary(m, td, cfg.energy_samples, trainer.device))
        return {k: v for k, v in energy.items() if k != "_report"}

    trainer = Trainer(
        model,
        td.train,
        td.val,
        loss_fn,
        metrics_fn,
        cfg.train_config(),
        collate_fn=td.collate,
        energy_fn=energy_fn,
    )
    return trainer, energy


def _print_test(test: dict, energy: dict) -> None:
    _print(f"test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f}")
    if "_report" in energy:
        _print(energy["_report"])
        rates = ", ".join(f"{k} {v:.3f}" for k, v in energy["firing_rates"].items())
        _print(f"firing rates: {rates or 'none (non-spiking model)'}")


def _write_metrics(cfg: LRARunConfig, metrics: dict) -> None:
    """``metrics.json`` of the run folder (keeping the trainer's wall time) and
    ``--metrics-json``."""
    from bpsn_ext.util.files import write_json_atomic

    if cfg.checkpoint_dir:
        path = os.path.join(cfg.checkpoint_dir, "metrics.json")
        with open(path, encoding="utf-8") as f:
            metrics["wall_time_s"] = json.load(f).get("wall_time_s")
        write_json_atomic(path, metrics)
    if cfg.metrics_json:
        write_json_atomic(cfg.metrics_json, metrics)


def _where_results_go(cfg: LRARunConfig) -> str:
    """One line saying which files the run writes (a run without ``--out`` writes none)."""
    paths = [cfg.metrics_json] if cfg.metrics_json else []
    if cfg.checkpoint_dir:
        names = ("last.pt", "metrics.json", RUN_CONFIG)
        paths = [os.path.join(cfg.checkpoint_dir, n) for n in names] + paths
    if not paths:
        return "no --out given: this run writes nothing (--out DIR keeps checkpoints and metrics)"
    return "results go to " + ", ".join(paths)


def run_train(args: argparse.Namespace) -> int:
    from bpsn_ext.util.files import write_json_atomic

    cfg = _resolve(args)
    _claim(cfg)
    td, model = _prepare(cfg, "train lra")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    n_params = sum(p.numel() for p in model.parameters())
    if rank0:
        _print(
            f"task {cfg.task} ({td.info.get('source', '')}): train {len(td.train)}, val "
            f"{len(td.val)}, test {len(td.test)}; layer {cfg.layer}, "
            f"{cfg.n_layers} x {cfg.d_model}, {n_params} parameters"
        )
    if rank0:
        _print(_where_results_go(cfg))
    if cfg.checkpoint_dir and rank0 and not cfg.resume:
        write_json_atomic(os.path.join(cfg.checkpoint_dir, RUN_CONFIG), cfg.to_dict())
    trainer, energy = _make_trainer(cfg, td, model)
    if not rank0:
        trainer.fit(resume=cfg.resume)
        return 0
    with _EpochPrinter():
        final = trainer.fit(resume=cfg.resume)
    test = trainer.evaluate(td.test)
    _print_test(test, energy)
    _write_metrics(
        cfg,
        {
            "task": cfg.task,
            "layer": cfg.layer,
            "parameters": n_params,
            "data": td.info,
            "run_config": cfg.to_dict(),
            "final": final,
            "test": test,
            "energy": final.get("energy"),
            "history": trainer.state.history,
            "steps": trainer.state.global_step,
            "world_size": trainer.world_size,
        },
    )
    return 0


# ----------------------------------------------------------------------------- evaluate
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate lra``."""
    parser.add_argument(
        "--checkpoint-dir",
        required=True,
        help="folder of a `train lra` run (run_config.json and last.pt)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint file (default: <checkpoint-dir>/last.pt)"
    )
    parser.add_argument(
        "--split", choices=("test", "val", "train"), default="test", help="split to evaluate"
    )
    parser.add_argument(
        "--out", default=None, help="metrics JSON (default: <checkpoint-dir>/eval_<split>.json)"
    )
    parser.add_argument(
        "--energy-samples",
        type=int,
        default=64,
        help="test samples of the energy report (0: none) (64)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="batch (default: the run's)"
    )
    parser.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    add_data_arguments(parser, required_task=False)


def _stored_config(args: argparse.Namespace) -> LRARunConfig:
    """The run's `LRARunConfig` from ``run_config.json``, with the data flags given here
    (a data source given here replaces the stored one, not only the same kind of source)."""
    from bpsn_ext.train.lra_run import DATA_FIELDS, LRARunConfig

    path = os.path.join(args.checkpoint_dir, RUN_CONFIG)
    if not os.path.isfile(path):
        raise SystemExit(f"evaluate lra: {path!r} is missing (not a `train lra` checkpoint folder)")
    with open(path, encoding="utf-8") as f:
        try:
            cfg = LRARunConfig.from_dict(json.load(f))
        except ValueError as err:
            raise SystemExit(f"evaluate lra: {path!r}: {err}") from err
    given = {key: getattr(args, key) for key in DATA_FIELDS if hasattr(args, key)}
    if hasattr(args, "generate"):
        given.update(data=None, hf=None)
    elif hasattr(args, "data") or hasattr(args, "hf"):
        given.setdefault("hf", None)
        given["generate"] = False
    return cfg.replace(**given, threads=args.threads)


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a ``train lra`` run on a split (and its energy report); writes the metrics
    JSON (``--out``, default ``<checkpoint-dir>/eval_<split>.json``)."""
    import torch

    from bpsn_ext.models.lra_energy import energy_summary
    from bpsn_ext.train import TrainConfig, Trainer, load_checkpoint
    from bpsn_ext.train.lra_run import task_fns
    from bpsn_ext.util.files import write_json_atomic

    cfg = _stored_config(args)
    ckpt_path = args.checkpoint or os.path.join(args.checkpoint_dir, "last.pt")
    if not os.path.isfile(ckpt_path):
        raise SystemExit(f"evaluate lra: no checkpoint at {ckpt_path!r}")
    td, model = _prepare(cfg, "evaluate lra")
    model.load_state_dict(load_checkpoint(ckpt_path)["model"])
    loss_fn, metrics_fn = task_fns(td.dual)
    dataset = {"test": td.test, "val": td.val, "train": td.train}[args.split]
    config = TrainConfig(
        batch_size=args.batch_size or cfg.batch_size, device=args.device, progress=False
    )
    trainer = Trainer(model, dataset, None, loss_fn, metrics_fn, config, collate_fn=td.collate)
    metrics = trainer.evaluate(dataset)
    out = {
        "task": cfg.task,
        "layer": cfg.layer,
        "split": args.split,
        "checkpoint": os.path.abspath(ckpt_path),
        "samples": len(dataset),
        **metrics,
    }
    print(
        f"{cfg.task} / {cfg.layer} / {args.split} ({len(dataset)} samples): "
        f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f}",
        flush=True,
    )
    if args.energy_samples > 0:
        e = energy_summary(trainer.model, td, args.energy_samples, torch.device(args.device))
        print(e.pop("_report"), flush=True)
        out["energy"] = e
    folder = args.checkpoint_dir
    path = args.out or os.path.join(folder, f"eval_{args.split}.json")
    write_json_atomic(path, out)
    print(f"metrics: {path}", flush=True)
    return 0
