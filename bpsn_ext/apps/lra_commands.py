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

from bpsn_ext.apps.lra_flags import (
    add_data_arguments,
    add_model_arguments,
    add_training_arguments,
)
from bpsn_ext.util.cli_args import flag_errors, positive_int

if TYPE_CHECKING:
    from bpsn_ext.train.lra_run import LRARunConfig

TRAIN_HELP = "train an LRAClassifier on an LRA task or sequential images"
EVALUATE_HELP = "evaluate an LRA checkpoint"

RUN_CONFIG = "run_config.json"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train lra``."""
    add_data_arguments(parser, required_task=True)
    add_model_arguments(parser)
    add_training_arguments(parser)


# ----------------------------------------------------------------------------- helpers


def _resolve(args: argparse.Namespace) -> LRARunConfig:
    """The run's settings: the task preset completed by the flags given; bad combinations and
    data sources are refused (naming the flags) before anything is written."""
    from bpsn_ext.train.lra_run import LRARunConfig

    values = {
        k: v for k, v in vars(args).items() if k not in ("handler", "command", "task_kind", "debug")
    }
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


def _prepare(cfg: LRARunConfig, command: str, source: str | None = None):
    """``(task data, model)`` of the run (sizes checked first, then threads and seed set;
    ``source``: the file ``cfg`` came from, else the command's flags)."""
    import torch

    from bpsn_ext.models.size_limits import check_lra_size

    with flag_errors(command):
        check_lra_size(cfg.to_dict(), source or f"{command} flags")
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
def _claim(cfg: LRARunConfig):
    """The run folder held for the run (`open_run_folder`): a new run refuses a folder that
    holds an earlier run, a resumed one refuses settings other than the run's own."""
    from bpsn_ext.train.run_folder import open_run_folder

    if cfg.resume and not cfg.checkpoint_dir:
        raise ValueError("train lra --resume needs --checkpoint-dir")
    return open_run_folder(
        cfg.checkpoint_dir,
        cfg.to_dict(),
        resume=cfg.resume,
        overwrite=cfg.overwrite,
        derived=("preset",),
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
        write_json_atomic(cfg.metrics_json, metrics, replace=cfg.overwrite)


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
    """Train (or ``--resume``) as the flags say, holding the run folder for the whole run."""
    from bpsn_ext.util.files import refuse_existing

    cfg = _resolve(args)
    with flag_errors("train lra"):
        cfg.train_config()  # its checks (--lr nan, ...) before anything is written
        refuse_existing(cfg.metrics_json, overwrite=cfg.overwrite)
        with _claim(cfg):
            return _run_train(cfg)


def _run_train(cfg: LRARunConfig) -> int:
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
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
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
    from bpsn_ext.util.files import read_json

    path = os.path.join(args.checkpoint_dir, RUN_CONFIG)
    if not os.path.isfile(path):
        raise SystemExit(f"evaluate lra: {path!r} is missing (not a `train lra` checkpoint folder)")
    try:
        cfg = LRARunConfig.from_dict(read_json(path))
    except (ValueError, TypeError) as err:
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
    from bpsn_ext.util.files import refuse_existing, write_json_atomic

    folder = args.checkpoint_dir
    out_path = args.out or os.path.join(folder, f"eval_{args.split}.json")
    with flag_errors("evaluate lra"):
        refuse_existing(out_path, overwrite=args.overwrite)
    cfg = _stored_config(args)
    ckpt_path = args.checkpoint or os.path.join(folder, "last.pt")
    if not os.path.isfile(ckpt_path):
        raise SystemExit(f"evaluate lra: no checkpoint at {ckpt_path!r}")
    td, model = _prepare(cfg, "evaluate lra", os.path.join(folder, RUN_CONFIG))
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
    with flag_errors("evaluate lra"):
        write_json_atomic(out_path, out, replace=args.overwrite)
    print(f"metrics: {out_path}", flush=True)
    return 0
